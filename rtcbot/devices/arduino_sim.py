"""A simulated Arduino on a pseudo-terminal, speaking the protocol of ``examples/arduino/rtcbot_motors.ino``.

For writing and testing robot code without the robot: :class:`SimulatedArduino` opens a pty pair, serves
the sketch's framed protocol on the master end in a background thread, and gives you ``.port``, the path
any serial program (rtcbot's :class:`~rtcbot.SerialConnection`, pyserial, ``screen``) opens like a USB
Arduino::

    from rtcbot import SerialConnection
    from rtcbot.devices.arduino_sim import SimulatedArduino, SERIAL_OPTIONS

    with SimulatedArduino() as arduino:
        with SerialConnection(arduino.port, **SERIAL_OPTIONS) as conn:
            conn.put_nowait({"left": 100, "right": -100})
            reading = await conn.get()    # {"millis": ..., "left": 100, "right": -100, "a0": ..., "a1": ...}

The protocol (the same bytes on the real board; ``examples/arduino/README.md`` has the byte layout): every
message is a frame ``A5 5A | len | payload | crc16`` (see :mod:`rtcbot.devices.framing`).

- host -> board, a motor command, payload ``<hh``: ``left``, ``right`` in -255..255 (clamped by the board).
  The board applies it and answers at once with a sensor reading.
- board -> host, a sensor reading, payload ``<IhhHH``: ``millis`` (time since boot), ``left`` and ``right``
  (the speeds applied now), ``a0`` and ``a1`` (analog inputs, 0..1023), every ``period`` seconds (50 ms)
  and after each command.
- Safety: with no command for ``watchdog`` seconds (0.5 s) the board stops both motors.

:class:`PtyDevice` is the reusable part (the pty, the serving thread, unplug/replug) for simulating other
devices. ``python -m rtcbot.devices.arduino_sim`` (later ``rtcbot sim-serial``) serves one until Ctrl+C.
"""
from __future__ import annotations

import argparse
import logging
import math
import os
import select
import struct
import threading
import time
import tty
import weakref
from typing import Any, Dict, List, Optional, Tuple

from .framing import FramedDecoder, encode_frame

__all__ = [
    "COMMAND_FORMAT",
    "COMMAND_KEYS",
    "READING_FORMAT",
    "READING_KEYS",
    "SERIAL_OPTIONS",
    "PtyDevice",
    "SimulatedArduino",
    "main",
]

log = logging.getLogger("rtcbot.devices.arduino_sim")

COMMAND_FORMAT = "<hh"
COMMAND_KEYS = ("left", "right")
READING_FORMAT = "<IhhHH"
READING_KEYS = ("millis", "left", "right", "a0", "a1")
MOTOR_LIMIT = 255

SERIAL_OPTIONS: Dict[str, Any] = {
    "framed": True,
    "readFormat": READING_FORMAT,
    "readKeys": READING_KEYS,
    "writeFormat": COMMAND_FORMAT,
    "writeKeys": COMMAND_KEYS,
    "baudrate": 115200,
}
"""The SerialConnection keyword arguments that speak the example sketch's protocol."""


_live_devices: weakref.WeakSet[PtyDevice] = weakref.WeakSet()


def _close_device_ends_after_fork() -> None:
    # A process forked while a simulated device runs (a process device's worker, under the "fork" start
    # method) must not keep the device's end of the pty open: unplug() could not close the pty then.
    # Only descriptors the device still owns: a closed device's old numbers may belong to someone else now
    # (closing them here once broke a subprocess's pipes in its child: EBADF before exec).
    for device in list(_live_devices):
        if device._closed:
            continue
        for fd in (device._master, device._slave, device._wake_r, device._wake_w):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        device._master = device._slave = device._wake_r = device._wake_w = None
        device._closed = True


os.register_at_fork(after_in_child=_close_device_ends_after_fork)


class PtyDevice:
    """A device simulated on the master end of a pty pair; ``.port`` is the path programs open.

    Subclasses override :meth:`on_data` (bytes the program wrote), :meth:`on_tick` (called at least every
    :meth:`next_tick` seconds) and call :meth:`write` to send bytes to the program. Everything runs in one
    background thread, started at construction::

        class Echo(PtyDevice):
            def on_data(self, data):
                self.write(data)

        with Echo() as dev:
            serial.Serial(dev.port).write(b"hi")   # reads back b"hi"

    With ``link`` (a path), ``.port`` is a symlink to the pty, like a udev ``/dev/rtcbot/...`` name:
    :meth:`unplug` closes the pty and removes the link (the program sees the device vanish), :meth:`replug`
    opens a new pty and points the link at it.
    """

    def __init__(self, link: Optional[str] = None) -> None:
        self._link = link
        self._lock = threading.Lock()
        self._out = bytearray()
        self._master: Optional[int] = None
        self._slave: Optional[int] = None
        self._slave_name = ""
        self._thread: Optional[threading.Thread] = None
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        self._wake_r: Optional[int] = wake_r
        self._wake_w: Optional[int] = wake_w
        self._stopping = threading.Event()
        self._reading = True
        self._closed = False
        self.error: Optional[BaseException] = None
        self.plugged = threading.Event()
        _live_devices.add(self)
        self._plug()

    # -- the pty ----------------------------------------------------------------------------------------
    @property
    def port(self) -> str:
        """The path to open: the link if one was given, else the pty's slave device (``/dev/pts/N``)."""
        return self._link if self._link is not None else self._slave_name

    @property
    def pty_path(self) -> str:
        """The current pty slave device, whatever ``port`` is."""
        return self._slave_name

    def _plug(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        self._slave_name = os.ttyname(slave)
        if self._link is not None:
            tmp = f"{self._link}.{os.getpid()}.tmp"
            os.symlink(self._slave_name, tmp)
            os.replace(tmp, self._link)  # atomic: the link always points somewhere valid or nowhere
        with self._lock:
            self._out.clear()
        self._stopping.clear()
        self.on_plug()
        self._thread = threading.Thread(target=self._serve, name=f"rtcbot-{type(self).__name__}", daemon=True)
        self._thread.start()
        self.plugged.set()

    def _unplug(self) -> None:
        self.plugged.clear()
        self._stopping.set()
        self._wake()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(5.0)
        self._thread = None
        if self._link is not None:
            try:
                if os.path.islink(self._link) and os.readlink(self._link) == self._slave_name:
                    os.unlink(self._link)
            except OSError as e:
                log.debug("could not remove %s: %s", self._link, e)
        for fd in (self._master, self._slave):
            if fd is not None:
                os.close(fd)
        self._master = self._slave = None

    def unplug(self) -> None:
        """Simulate pulling the cable: the pty closes (the program's reads fail) and the link goes."""
        if self._master is not None:
            self._unplug()

    def replug(self) -> None:
        """Simulate plugging it back in: a new pty, and the link (if any) points at it."""
        if self._closed:
            raise RuntimeError(f"{type(self).__name__} is closed")
        self.unplug()
        self._plug()

    def pause_reading(self) -> None:
        """Stop reading what the program writes (a board busy elsewhere): once the pty's buffer is full, the
        program's writes block, as they would on a stalled device. :meth:`resume_reading` undoes it."""
        self._reading = False
        self._wake()

    def resume_reading(self) -> None:
        """Read what the program writes again (see :meth:`pause_reading`)."""
        self._reading = True
        self._wake()

    # -- serving ----------------------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        """Queue bytes for the program to read (any thread)."""
        with self._lock:
            self._out += data
        self._wake()

    @property
    def pending(self) -> int:
        """Bytes written by the device and not yet taken by the pty."""
        with self._lock:
            return len(self._out)

    def _wake(self) -> None:
        fd = self._wake_w
        if fd is None:
            return  # closed: nobody to wake
        try:
            os.write(fd, b"\0")
        except BlockingIOError:
            pass  # already awake

    def _serve(self) -> None:
        master, wake = self._master, self._wake_r
        assert master is not None and wake is not None
        try:
            while not self._stopping.is_set():
                with self._lock:
                    pending = bool(self._out)
                timeout = self.next_tick()
                readable, writable, _ = select.select(
                    [master, wake] if self._reading else [wake],
                    [master] if pending else [],
                    [],
                    timeout,
                )
                if wake in readable:
                    try:
                        os.read(wake, 4096)
                    except BlockingIOError:
                        pass
                if master in readable:
                    try:
                        data = os.read(master, 65536)
                    except (BlockingIOError, InterruptedError):
                        data = None
                    if data:
                        self.on_data(data)
                if master in writable:
                    with self._lock:
                        chunk = bytes(self._out[:65536])
                    try:
                        n = os.write(master, chunk)
                    except BlockingIOError:
                        n = 0
                    with self._lock:
                        del self._out[:n]
                self.on_tick(time.monotonic())
        except Exception as e:
            self.error = e
            log.error("%s: serving thread failed: %s", type(self).__name__, e, exc_info=True)

    # -- for subclasses ---------------------------------------------------------------------------------
    def on_plug(self) -> None:
        """Called when a new pty opens (at start and on replug), before serving: the device boots."""

    def on_data(self, data: bytes) -> None:
        """Called in the serving thread with bytes the program wrote."""

    def on_tick(self, now: float) -> None:
        """Called in the serving thread after every wake-up, with ``time.monotonic()``."""

    def next_tick(self) -> Optional[float]:
        """Seconds until :meth:`on_tick` must run next (None: only when data arrives)."""
        return None

    # -- lifetime ---------------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop serving and close the pty (and remove the link). Idempotent."""
        if self._closed:
            return
        self.unplug()
        self._closed = True  # after unplug: a fork meanwhile still closes the pty in its child
        _live_devices.discard(self)
        wake_r, wake_w = self._wake_r, self._wake_w
        self._wake_r = self._wake_w = None
        for fd in (wake_r, wake_w):
            if fd is not None:
                os.close(fd)

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            self.close()


class SimulatedArduino(PtyDevice):
    """The example sketch (``examples/arduino/``) simulated on a pty: motor commands in, readings out.

    ``period``: seconds between periodic sensor readings (None: only in answer to commands).
    ``watchdog``: seconds without a command after which the motors stop (None: never).
    ``link``: make ``.port`` a symlink at this path (and allow :meth:`unplug` / :meth:`replug`).

    ``commands`` lists every motor command received as ``(left, right)`` after clamping; ``left`` and
    ``right`` are the speeds applied now::

        with SimulatedArduino(period=None) as arduino:
            ...
            assert arduino.commands[-1] == (100, -100)
    """

    def __init__(
        self, period: Optional[float] = 0.05, watchdog: Optional[float] = 0.5, link: Optional[str] = None
    ) -> None:
        self.period = period
        self.watchdog = watchdog
        self.left = 0
        self.right = 0
        self.commands: List[Tuple[int, int]] = []
        self.rejected = 0  # frames that failed the checksum or had the wrong size
        self._decoder = FramedDecoder(COMMAND_FORMAT)
        self._boot = time.monotonic()
        self._next_reading = self._boot
        self._last_command = self._boot
        super().__init__(link=link)

    def on_plug(self) -> None:
        # Opening the port resets a real Arduino: it boots with motors stopped and millis from zero.
        self._decoder = FramedDecoder(COMMAND_FORMAT)
        self._boot = self._last_command = self._next_reading = time.monotonic()
        self.left = self.right = 0

    def reading(self, now: Optional[float] = None) -> Tuple[int, int, int, int, int]:
        """The sensor reading the board would send now: (millis, left, right, a0, a1)."""
        now = time.monotonic() if now is None else now
        t = now - self._boot
        millis = int(t * 1000) & 0xFFFFFFFF
        a0 = int(512 + 400 * math.sin(2 * math.pi * t / 2.0))  # a slow sine, like a potentiometer sweep
        a1 = min(1023, 2 * (abs(self.left) + abs(self.right)))  # motor current: grows with the speeds
        return (millis, self.left, self.right, a0, a1)

    def _send_reading(self, now: float) -> None:
        if self.pending > 4096:
            return  # nobody is reading the port: like a USB serial chip, drop instead of piling up
        self.write(encode_frame(struct.pack(READING_FORMAT, *self.reading(now))))

    def on_data(self, data: bytes) -> None:
        before = self._decoder.dropped
        for left, right in self._decoder.feed(data):
            self.left = max(-MOTOR_LIMIT, min(MOTOR_LIMIT, left))
            self.right = max(-MOTOR_LIMIT, min(MOTOR_LIMIT, right))
            self.commands.append((self.left, self.right))
            now = time.monotonic()
            self._last_command = now
            self._send_reading(now)
        self.rejected += self._decoder.dropped - before

    def on_tick(self, now: float) -> None:
        moving = self.left or self.right
        if moving and self.watchdog is not None and now - self._last_command >= self.watchdog:
            log.debug("no command for %.2f s: stopping the motors", self.watchdog)
            self.left = self.right = 0
        if self.period is not None and now >= self._next_reading:
            self._send_reading(now)
            self._next_reading = max(self._next_reading + self.period, now)

    def next_tick(self) -> Optional[float]:
        now = time.monotonic()
        waits = []
        if self.period is not None:
            waits.append(self._next_reading - now)
        if self.watchdog is not None and (self.left or self.right):
            waits.append(self._last_command + self.watchdog - now)
        return max(0.0, min(waits)) if waits else None


def main(argv: Optional[List[str]] = None) -> int:
    """Serve a simulated Arduino until Ctrl+C, printing the port to open (``rtcbot sim-serial``)."""
    parser = argparse.ArgumentParser(
        prog="rtcbot sim-serial",
        description="Serve a simulated Arduino (examples/arduino's protocol) on a pseudo-terminal.",
    )
    parser.add_argument("--link", help="also make this path a symlink to the port (e.g. /tmp/arduino)")
    parser.add_argument("--period", type=float, default=0.05, help="seconds between sensor readings")
    parser.add_argument("--watchdog", type=float, default=0.5, help="stop after this long without command")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every command")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    with SimulatedArduino(period=args.period, watchdog=args.watchdog, link=args.link) as arduino:
        try:  # a Ctrl+C right after the port is printed (a script waiting for it) is a normal stop too
            print(arduino.port, flush=True)
            print(
                f"Serving a simulated Arduino on {arduino.port}: send framed '<hh' motor commands, read '<IhhHH' "
                "sensor readings (see examples/arduino/README.md). Ctrl+C to stop.",
                flush=True,
            )
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
        print(f"stopped after {len(arduino.commands)} commands", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
