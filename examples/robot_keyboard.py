"""Drive a robot from the keyboard: each key becomes a motor command for the sketch in examples/arduino.

    python examples/robot_keyboard.py --sim                    # a simulated Arduino, no hardware
    python examples/robot_keyboard.py --port /dev/rtcbot/arduino

Keys: w forward, s back, a left, d right, space stop, q quit. On a terminal each key acts at once; keys
can also be piped in (`echo wwd | python examples/robot_keyboard.py --sim --seconds 2`). The Arduino's
readings (speeds applied, analog inputs) are printed twice a second.
"""
import argparse
import asyncio
import contextlib
import os
import sys
import termios
import tty

from rtcbot import SerialConnection
from rtcbot.devices.arduino_sim import SERIAL_OPTIONS, SimulatedArduino

SPEED = 150
MOVES = {"w": (SPEED, SPEED), "s": (-SPEED, -SPEED), "a": (-SPEED, SPEED), "d": (SPEED, -SPEED), " ": (0, 0)}
RESEND = 0.2  # seconds: the sketch stops the motors after 0.5 s without a command (its watchdog)


@contextlib.contextmanager
def keys_from_stdin(keys: asyncio.Queue):
    """Put each character typed (or piped) on stdin into ``keys``; None when stdin ends."""
    loop = asyncio.get_running_loop()
    fd = sys.stdin.fileno()
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


async def main(args: argparse.Namespace) -> None:
    # --sim: a simulated Arduino serving the sketch's protocol on a pty, opened like the real board.
    with SimulatedArduino() if args.sim else contextlib.nullcontext() as sim:
        port = sim.port if sim else args.port
        keys: asyncio.Queue = asyncio.Queue()
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
    parser.add_argument("--seconds", type=float, help="stop after this many seconds (default: until q)")
    try:
        asyncio.run(main(parser.parse_args()))
    except KeyboardInterrupt:
        pass
