"""Hardware-in-the-loop tests of the motor controller (examples/arduino): they check the board's behaviour
through rtcbot exactly as robot code uses it, so they pass against the simulated Arduino and, unchanged,
against the real board:

    pytest examples/hil          # simulated Arduino (runs anywhere)
    pytest examples/hil --hw     # the real board (/dev/rtcbot/arduino, see pyproject.toml)
"""
import asyncio

WAIT = 2.0  # seconds to wait for a reading


async def reading_where(readings, condition, timeout=WAIT):
    """The first reading for which ``condition(reading)`` holds, or a test failure after ``timeout``."""

    async def search():
        while not condition(reading := await readings.get()):
            pass
        return reading

    return await asyncio.wait_for(search(), timeout)


def test_board_sends_readings_every_50_ms(rtcbot_run, readings):
    async def test():
        first = await readings.get()
        for _ in range(9):
            last = await asyncio.wait_for(readings.get(), WAIT)
        assert 300 <= last["millis"] - first["millis"] <= 800  # 9 periods of 50 ms, with slack

    rtcbot_run(test())


def test_motor_command_is_applied_and_reported(rtcbot_run, board, readings):
    async def test():
        board.put_nowait({"left": 100, "right": -100})
        await reading_where(readings, lambda r: (r["left"], r["right"]) == (100, -100))

    rtcbot_run(test())


def test_speeds_beyond_255_are_clamped(rtcbot_run, board, readings):
    async def test():
        board.put_nowait({"left": 1000, "right": -1000})
        await reading_where(readings, lambda r: (r["left"], r["right"]) == (255, -255))

    rtcbot_run(test())


def test_motors_stop_when_commands_stop(rtcbot_run, board, readings):
    async def test():
        board.put_nowait({"left": 80, "right": 80})
        moving = await reading_where(readings, lambda r: r["left"] == 80)
        # no more commands: the watchdog stops both motors 0.5 s after the last one
        stopped = await reading_where(readings, lambda r: r["left"] == r["right"] == 0)
        assert 400 <= stopped["millis"] - moving["millis"] <= 1000

    rtcbot_run(test())


def test_analog_inputs_are_in_range(rtcbot_run, readings):
    async def test():
        for _ in range(5):
            r = await asyncio.wait_for(readings.get(), WAIT)
            assert 0 <= r["a0"] <= 1023 and 0 <= r["a1"] <= 1023

    rtcbot_run(test())
