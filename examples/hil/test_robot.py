"""Hardware-in-the-loop tests of the motor controller (examples/arduino): they check the board's behaviour
through rtcbot exactly as robot code uses it, so they pass against the simulated Arduino and, unchanged,
against the real board:

    pytest examples/hil                                  # simulated Arduino (runs anywhere)
    RTCBOT_PORT=/dev/rtcbot/arduino pytest examples/hil  # the real board
"""
import asyncio

from rtcbot import SerialConnection
from rtcbot.devices.arduino_sim import SERIAL_OPTIONS

BOOT = 5.0  # seconds to wait for the first reading (opening the port resets a real Arduino)
WAIT = 2.0  # seconds to wait for anything else


def with_board(port, test):
    """Open the board, wait until it talks, run ``await test(board, readings)``."""

    async def run():
        with SerialConnection(port, **SERIAL_OPTIONS) as board:
            readings = board.subscribe(asyncio.Queue())
            await asyncio.wait_for(readings.get(), BOOT)
            await test(board, readings)

    asyncio.run(asyncio.wait_for(run(), 30))


async def reading_where(readings, condition, timeout=WAIT):
    """The first reading for which ``condition(reading)`` holds, or a test failure after ``timeout``."""

    async def search():
        while True:
            reading = await readings.get()
            if condition(reading):
                return reading

    return await asyncio.wait_for(search(), timeout)


def test_board_sends_readings_every_50_ms(port):
    async def test(board, readings):
        first = await readings.get()
        for _ in range(9):
            last = await asyncio.wait_for(readings.get(), WAIT)
        assert 300 <= last["millis"] - first["millis"] <= 800  # 9 periods of 50 ms, with slack

    with_board(port, test)


def test_motor_command_is_applied_and_reported(port):
    async def test(board, readings):
        board.put_nowait({"left": 100, "right": -100})
        await reading_where(readings, lambda r: (r["left"], r["right"]) == (100, -100))

    with_board(port, test)


def test_speeds_beyond_255_are_clamped(port):
    async def test(board, readings):
        board.put_nowait({"left": 1000, "right": -1000})
        await reading_where(readings, lambda r: (r["left"], r["right"]) == (255, -255))

    with_board(port, test)


def test_motors_stop_when_commands_stop(port):
    async def test(board, readings):
        board.put_nowait({"left": 80, "right": 80})
        moving = await reading_where(readings, lambda r: r["left"] == 80)
        # no more commands: the watchdog stops both motors 0.5 s after the last one
        stopped = await reading_where(readings, lambda r: r["left"] == r["right"] == 0)
        assert 400 <= stopped["millis"] - moving["millis"] <= 1000

    with_board(port, test)


def test_analog_inputs_are_in_range(port):
    async def test(board, readings):
        for _ in range(5):
            r = await asyncio.wait_for(readings.get(), WAIT)
            assert 0 <= r["a0"] <= 1023 and 0 <= r["a1"] <= 1023

    with_board(port, test)
