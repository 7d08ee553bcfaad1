"""Drive a robot from the keyboard: each key becomes a motor command for the sketch in examples/arduino.

    python examples/robot_keyboard.py --sim                    # a simulated Arduino, no hardware
    python examples/robot_keyboard.py --port /dev/rtcbot/arduino

Keys: w forward, s back, a left, d right, space stop, q quit. On a terminal each key acts at once; keys
can also be piped in (`echo wwd | python examples/robot_keyboard.py --sim --seconds 2`) or read from a file.
When the keys end the robot stops, unless --seconds says how long to run: under nohup or systemd (stdin is
/dev/null) give --seconds. SIGTERM stops it like q. The Arduino's readings (speeds applied, analog inputs)
are printed twice a second.
"""
import argparse
import asyncio
import contextlib
import os
import signal
import stat
import sys
import termios
import tty

from rtcbot import RtcbotError, SerialConnection
from rtcbot.cli.options import positive_float
from rtcbot.devices.arduino_sim import SERIAL_OPTIONS, SimulatedArduino

SPEED = 150
MOVES = {"w": (SPEED, SPEED), "s": (-SPEED, -SPEED), "a": (-SPEED, SPEED), "d": (SPEED, -SPEED), " ": (0, 0)}
RESEND = 0.2  # seconds: the sketch stops the motors after 0.5 s without a command (its watchdog)


@contextlib.contextmanager
def keys_from_stdin(keys: asyncio.Queue):
    """Put each character typed (or piped) on stdin into ``keys``; None when stdin ends."""
    loop = asyncio.get_running_loop()
    fd = sys.stdin.fileno()
    if not _can_watch(fd):
        # A file or /dev/null (nohup, systemd): the event loop cannot watch these, and reading them never
        # blocks, so all their keys are there now.
        for key in _read_all(fd).decode(errors="ignore").lower():
            keys.put_nowait(key)
        keys.put_nowait(None)
        yield
        return
    saved = termios.tcgetattr(fd) if os.isatty(fd) else None
    if saved is not None:
        tty.setcbreak(fd)  # keys arrive as they are pressed, without Enter

    def readable() -> None:
        data = os.read(fd, 64)
        if not data:
            loop.remove_reader(fd)
            keys.put_nowait(None)
        for key in data.decode(errors="ignore").lower():
            keys.put_nowait(key)

    loop.add_reader(fd, readable)
    try:
        yield
    finally:
        loop.remove_reader(fd)
        if saved is not None:
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _can_watch(fd: int) -> bool:
    """Whether the event loop can wait for ``fd`` to be readable: a terminal, a pipe or a socket."""
    try:
        mode = os.fstat(fd).st_mode
    except OSError:  # stdin closed
        return False
    return os.isatty(fd) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def _read_all(fd: int) -> bytes:
    try:
        chunks = []
        while chunk := os.read(fd, 4096):
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError:  # stdin closed
        return b""


async def main(args: argparse.Namespace) -> None:
    # --sim: a simulated Arduino serving the sketch's protocol on a pty, opened like the real board.
    with SimulatedArduino() if args.sim else contextlib.nullcontext() as sim:
        port = sim.port if sim else args.port
        keys: asyncio.Queue = asyncio.Queue()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, keys.put_nowait, "q")  # stop like q
        with SerialConnection(port, **SERIAL_OPTIONS) as motors, keys_from_stdin(keys):
            last_shown = [0]

            @motors.subscribe
            def show(reading):  # readings arrive every 50 ms: print one every 500 ms
                if reading["millis"] - last_shown[0] >= 500:
                    last_shown[0] = reading["millis"]
                    print("reading: left={left} right={right} a0={a0} a1={a1}".format(**reading), flush=True)

            print("keys: w forward, s back, a left, d right, space stop, q quit", flush=True)
            loop = asyncio.get_running_loop()
            stop_at = loop.time() + args.seconds if args.seconds else float("inf")
            left = right = 0
            while loop.time() < stop_at:
                try:
                    key = await asyncio.wait_for(keys.get(), min(RESEND, stop_at - loop.time()))
                except asyncio.TimeoutError:
                    key = ""  # no key: send the same command again to keep the watchdog happy
                if key is None and not args.seconds:  # piped keys ended: stop (else run to --seconds)
                    break
                if key == "q":
                    break
                if key in MOVES:
                    left, right = MOVES[key]
                    print(f"key {key!r}: left={left} right={right}", flush=True)
                motors.put_nowait({"left": left, "right": right})
            motors.put_nowait({"left": 0, "right": 0})  # stop before leaving (the watchdog would too)
            print("stopped", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sim", action="store_true", help="use a simulated Arduino (no hardware)")
    parser.add_argument("--port", default="/dev/ttyACM0", help="the Arduino's serial port")
    parser.add_argument("--seconds", type=positive_float, help="stop after this many seconds (default: until q)")
    try:
        asyncio.run(main(parser.parse_args()))
    except KeyboardInterrupt:
        pass
    except RtcbotError as e:  # e.g. the port does not exist: the message says what to check
        sys.exit(f"{parser.prog}: {e}")
