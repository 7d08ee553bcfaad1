"""SerialConnection against an Arduino running examples/arduino/rtcbot_motors (motors may turn: prop the
robot up), through the rtcbot plugin's ``rtcbot_serial_board`` (the first USB serial board, or the one
``[tool.rtcbot.hw.serial_board]`` / ``--hw-device`` names). Skipped unless asked for::

    pytest hw_tests/test_serial_hw.py --hw --hw-device serial_board=/dev/rtcbot/arduino

The same tests on the simulated Arduino, served on a pty by ``rtcbot sim-serial``::

    rtcbot sim-serial --link /tmp/arduino &
    pytest hw_tests/test_serial_hw.py --hw --hw-device serial_board=/tmp/arduino
"""
from __future__ import annotations

import asyncio
import statistics
from typing import Any

import pytest

pytest.importorskip("serial")

pytestmark = [pytest.mark.hw, pytest.mark.hw_serial_board]

BOOT = 5.0  # seconds an Arduino may take to send its first reading after the port opened (DTR reset)
WAIT = 2.0


@pytest.fixture
def board(rtcbot_serial_board) -> Any:
    return rtcbot_serial_board.connection


@pytest.fixture
def readings(rtcbot_run, rtcbot_serial_board) -> Any:
    """The board's readings from now on, once it has booted and talks."""

    async def first_reading():
        queue = rtcbot_serial_board.readings()
        await asyncio.wait_for(queue.get(), BOOT)
        return queue

    return rtcbot_run(first_reading())


async def reading_where(readings: Any, condition: Any, timeout: float = WAIT) -> dict:
    async def search():
        while not condition(reading := await readings.get()):
            pass
        return reading

    return await asyncio.wait_for(search(), timeout)


def test_readings_arrive_about_every_50_ms(rtcbot_run, readings):
    async def main():
        got = [await asyncio.wait_for(readings.get(), 1) for _ in range(21)]
        millis = [r["millis"] for r in got]
        assert millis == sorted(millis)
        gaps = [b - a for a, b in zip(millis, millis[1:])]
        assert 30 <= statistics.median(gaps) <= 70
        assert all(0 <= r["a0"] <= 1023 and 0 <= r["a1"] <= 1023 for r in got)

    rtcbot_run(main())


def test_a_motor_command_is_applied_and_reported_then_stopped_by_the_watchdog(rtcbot_run, board, readings):
    async def main():
        board.put_nowait({"left": 60, "right": -60})
        await reading_where(readings, lambda r: (r["left"], r["right"]) == (60, -60))
        await reading_where(readings, lambda r: (r["left"], r["right"]) == (0, 0), 1.5)

    rtcbot_run(main())


def test_out_of_range_speeds_are_clamped_by_the_board(rtcbot_run, board, readings):
    async def main():
        board.put_nowait({"left": 1000, "right": -1000})
        await reading_where(readings, lambda r: (r["left"], r["right"]) == (255, -255))
        board.put_nowait({"left": 0, "right": 0})

    rtcbot_run(main())


def test_a_frame_of_the_wrong_size_is_ignored_and_the_next_command_works(rtcbot_run, board, readings):
    async def main():
        board.put_nowait(b"\x01\x02\x03")  # a frame, but not a motor command
        board.put_nowait({"left": 40, "right": 40})
        await reading_where(readings, lambda r: r["left"] == 40)
        board.put_nowait({"left": 0, "right": 0})

    rtcbot_run(main())


def test_command_to_reading_round_trip_is_short(rtcbot_check, readings):
    result = rtcbot_check.serial_round_trip(count=100)
    assert result.ok, result
    # 16 bytes each way at 115200 baud is ~3 ms on the wire; USB adds a few ms
    assert result.latency_p50_ms < 30, result
