"""SerialConnection against an Arduino running examples/arduino/rtcbot_motors (motors may turn: prop the
robot up). Skipped unless asked for::

    RTCBOT_HW=1 RTCBOT_SERIAL=/dev/rtcbot/arduino pytest hw_tests/test_serial_hw.py
    RTCBOT_HW=1 RTCBOT_SERIAL=sim pytest hw_tests/test_serial_hw.py    # the same tests on the simulation
"""
from __future__ import annotations

import asyncio
import os
import statistics
import time
from typing import Any, Awaitable, Iterator

import pytest

pytest.importorskip("serial")

from rtcbot import SerialConnection  # noqa: E402
from rtcbot.devices.arduino_sim import SERIAL_OPTIONS, SimulatedArduino  # noqa: E402

pytestmark = pytest.mark.hw

BOOT = 2.5  # seconds an Arduino takes to boot after the port opens (DTR reset)


def run(coro: Awaitable[Any], timeout: float = 30) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


@pytest.fixture(scope="module")
def port() -> Iterator[str]:
    name = os.environ.get("RTCBOT_SERIAL", "/dev/rtcbot/arduino")
    if name == "sim":
        with SimulatedArduino() as arduino:
            yield arduino.port
        return
    if not os.path.exists(name):
        pytest.skip(f"no Arduino at {name} (set RTCBOT_SERIAL to its port, or 'sim')")
    yield name


async def readings_until(conn: SerialConnection, predicate: Any, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        reading = await asyncio.wait_for(conn.get(), max(0.01, deadline - time.monotonic()))
        if predicate(reading):
            return reading


def test_readings_arrive_about_every_50_ms(port):
    async def main():
        with SerialConnection(port, **SERIAL_OPTIONS) as conn:
            first = await asyncio.wait_for(conn.get(), BOOT + 2)
            readings = [await asyncio.wait_for(conn.get(), 1) for _ in range(20)]
            millis = [first["millis"]] + [r["millis"] for r in readings]
            assert millis == sorted(millis)
            gaps = [b - a for a, b in zip(millis, millis[1:])]
            assert 30 <= statistics.median(gaps) <= 70
            assert all(0 <= r["a0"] <= 1023 and 0 <= r["a1"] <= 1023 for r in readings)

    run(main())


def test_a_motor_command_is_applied_and_reported_then_stopped_by_the_watchdog(port):
    async def main():
        with SerialConnection(port, delayWriteStart=BOOT, **SERIAL_OPTIONS) as conn:
            conn.put_nowait({"left": 60, "right": -60})
            await readings_until(conn, lambda r: (r["left"], r["right"]) == (60, -60), BOOT + 2)
            await readings_until(conn, lambda r: (r["left"], r["right"]) == (0, 0), 1.5)

    run(main())


def test_out_of_range_speeds_are_clamped_by_the_board(port):
    async def main():
        with SerialConnection(port, delayWriteStart=BOOT, **SERIAL_OPTIONS) as conn:
            conn.put_nowait({"left": 1000, "right": -1000})
            await readings_until(conn, lambda r: (r["left"], r["right"]) == (255, -255), BOOT + 2)
            conn.put_nowait({"left": 0, "right": 0})

    run(main())


def test_a_frame_of_the_wrong_size_is_ignored_and_the_next_command_works(port):
    async def main():
        with SerialConnection(port, delayWriteStart=BOOT, **SERIAL_OPTIONS) as conn:
            conn.put_nowait(b"\x01\x02\x03")  # a frame, but not a motor command
            conn.put_nowait({"left": 40, "right": 40})
            await readings_until(conn, lambda r: r["left"] == 40, BOOT + 2)
            conn.put_nowait({"left": 0, "right": 0})

    run(main())


def test_command_to_reading_round_trip_is_short(port):
    async def main():
        with SerialConnection(port, delayWriteStart=BOOT, **SERIAL_OPTIONS) as conn:
            conn.put_nowait({"left": 5, "right": 0})  # held until the board has booted (delayWriteStart)
            await readings_until(conn, lambda r: r["left"] == 5, BOOT + 2)
            trips = []
            for i in range(40):
                speed = 10 + i % 20
                start = time.perf_counter()
                conn.put_nowait({"left": speed, "right": 0})
                await readings_until(conn, lambda r, s=speed: r["left"] == s, 1)
                trips.append(time.perf_counter() - start)
            conn.put_nowait({"left": 0, "right": 0})
            # 16 bytes each way at 115200 baud is ~3 ms on the wire; USB adds a few ms
            assert statistics.median(trips) < 0.03, f"median round trip {statistics.median(trips) * 1000:.1f} ms"

    run(main(), timeout=60)
