"""DriveGuard: drive commands reach the motor controller, and the motors stop when the driver is gone."""

from __future__ import annotations

import asyncio
import time

import pytest

from rtcbot.web.drive import DriveGuard, parse_drive
from tests.helpers import run


class Motors:
    """A motor controller that records every command and lets a test wait for one."""

    def __init__(self) -> None:
        self.commands = []
        self.times = []
        self.changed = asyncio.Event()

    def put_nowait(self, command):
        self.commands.append((command["left"], command["right"]))
        self.times.append(time.monotonic())
        self.changed.set()

    async def wait_for(self, speeds, timeout=2.0):
        async def until():
            while not self.commands or self.commands[-1] != speeds:
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(until(), timeout)
        return self.times[-1]


def test_parse_drive_clamps_and_rejects():
    assert parse_drive([100, -100]) == (100, -100)
    assert parse_drive([1000, -1000.4]) == (255, -255)
    assert parse_drive([10.6, 0]) == (11, 0)
    for bad in (None, [1], [1, 2, 3], ["a", 1], {"left": 1}, [float("inf"), 0]):
        assert parse_drive(bad) is None


def test_command_reaches_motors_at_once():
    async def body():
        motors = Motors()
        guard = DriveGuard(motors)
        guard.command("a", 150, 150)
        assert motors.commands == [(150, 150)]
        await guard.aclose()
        assert motors.commands[-1] == (0, 0)

    run(body())


def test_command_is_repeated_while_the_driver_keeps_sending():
    async def body():
        motors = Motors()
        guard = DriveGuard(motors, timeout=0.3, resend=0.05)
        guard.command("a", 100, 100)
        for _ in range(6):  # the page's own 100 ms heartbeat, here every 50 ms
            motors.changed.clear()
            await asyncio.wait_for(motors.changed.wait(), 1)
            guard.command("a", 100, 100)
        assert set(motors.commands) == {(100, 100)}
        assert len(motors.commands) >= 4  # resent: the board's watchdog stays fed
        await guard.aclose()

    run(body())


def test_release_by_the_driver_stops_at_once():
    async def body():
        motors = Motors()
        guard = DriveGuard(motors)
        guard.command("a", 100, -100)
        guard.release("a")
        assert motors.commands[-1] == (0, 0)
        assert guard.stops == 1
        await guard.aclose()

    run(body())


def test_release_by_a_watcher_does_not_stop_the_driver():
    async def body():
        motors = Motors()
        guard = DriveGuard(motors)
        guard.command("driver", 100, 100)
        guard.release("watcher")
        guard.command("watcher", 0, 0)
        assert motors.commands == [(100, 100)]
        await guard.aclose()

    run(body())


def test_silent_driver_is_stopped_within_the_timeout():
    async def body():
        motors = Motors()
        guard = DriveGuard(motors, timeout=0.3)
        guard.command("a", 100, 100)
        heard = time.monotonic()
        stopped = await motors.wait_for((0, 0), timeout=2)
        assert 0.3 <= stopped - heard < 0.5
        assert guard.stops == 1 and guard.driver is None
        await guard.aclose()

    run(body())


def test_a_failing_controller_does_not_break_the_guard():
    class Broken:
        def put_nowait(self, command):
            raise RuntimeError("closed")

    async def body():
        guard = DriveGuard(Broken())
        guard.command("a", 1, 1)
        guard.release("a")
        await guard.aclose()

    run(body())


@pytest.mark.parametrize("speeds", [(0, 0)])
def test_zero_from_nobody_sends_nothing(speeds):
    async def body():
        motors = Motors()
        guard = DriveGuard(motors)
        guard.command("a", *speeds)
        assert motors.commands == []
        await guard.aclose()

    run(body())
