"""DriveGuard: drive commands from browsers to a motor controller, stopped the moment the driver is gone.

A page sends ``{"drive": [left, right]}`` while a key or stick is held (every 100 ms, and at each change)
and ``[0, 0]`` on release. The guard forwards the newest command to the motor controller as
``{"left": l, "right": r}`` (the format of ``examples/arduino``) and repeats it every ``resend`` seconds, which
keeps the board's own watchdog fed. It commands a stop:

- when the driving session ends (:meth:`release`: the page closed, the connection dropped) -- at once;
- when the driver has sent nothing for ``timeout`` seconds (a connection that died without closing).

One browser drives at a time: the last to send a non-zero command. Others may watch.

    guard = DriveGuard(motors)                     # motors: SerialConnection(port, **SERIAL_OPTIONS)
    guard.command("viewer-1", 150, 150)
    guard.release("viewer-1")                      # -> motors.put_nowait({"left": 0, "right": 0})
    await guard.aclose()
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Hashable, Optional, Tuple

__all__ = ["DriveGuard", "MOTOR_LIMIT", "parse_drive"]

log = logging.getLogger("rtcbot.web.drive")

MOTOR_LIMIT = 255


def parse_drive(value: Any) -> Optional[Tuple[int, int]]:
    """``[left, right]`` (numbers) as two ints clamped to the motor range, or None if it is not that."""
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        return None
    try:
        left, right = (int(round(float(v))) for v in value)
    except (TypeError, ValueError, OverflowError):
        return None
    clamp = lambda v: max(-MOTOR_LIMIT, min(MOTOR_LIMIT, v))  # noqa: E731
    return clamp(left), clamp(right)


class DriveGuard:
    """See the module docstring. ``motors`` is anything with ``put_nowait({"left", "right"})``."""

    def __init__(self, motors: Any, timeout: float = 0.3, resend: float = 0.1) -> None:
        self.motors = motors
        self.timeout = float(timeout)
        self.resend = float(resend)
        self.driver: Optional[Hashable] = None
        self.speeds: Tuple[int, int] = (0, 0)
        self.stops = 0  # stops commanded because a driver went away or quiet (for tests and logs)
        self._heard = 0.0
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="rtcbot-drive-guard")

    def command(self, session: Hashable, left: int, right: int) -> None:
        """A command from ``session``; non-zero makes it the driver, zero from the driver stops."""
        if (left, right) == (0, 0):
            if session == self.driver:
                self.driver = None
                self._send(0, 0)
            return
        self.driver = session
        self._heard = time.monotonic()
        if (left, right) != self.speeds:
            self._send(left, right)
        self._wake.set()

    def release(self, session: Hashable) -> None:
        """``session`` is gone: stop now if it was driving."""
        if session == self.driver:
            log.info("driver %s left: motors stopped", session)
            self.driver = None
            self.stops += 1
            self._send(0, 0)

    def _send(self, left: int, right: int) -> None:
        self.speeds = (left, right)
        try:
            self.motors.put_nowait({"left": left, "right": right})
        except Exception as e:  # a closed or failed controller must not stop the web server
            log.warning("motor controller did not take %s: %s", (left, right), e)

    async def _run(self) -> None:
        while True:
            if self.driver is None:
                self._wake.clear()
                await self._wake.wait()
                continue
            quiet = time.monotonic() - self._heard
            if quiet > self.timeout:
                log.info("driver %s silent for %.2f s: motors stopped", self.driver, quiet)
                self.driver = None
                self.stops += 1
                self._send(0, 0)
                continue
            await asyncio.sleep(min(self.resend, self.timeout - quiet + 0.01))
            if self.driver is not None and time.monotonic() - self._heard <= self.timeout:
                self._send(*self.speeds)  # keep the board's watchdog fed

    async def aclose(self) -> None:
        """Stops the motors and the guard's task."""
        if self.driver is not None or self.speeds != (0, 0):
            self.driver = None
            self._send(0, 0)
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
