"""The robot project's test fixtures, on top of rtcbot's pytest plugin (installed with rtcbot): the board
comes from ``rtcbot_serial_board``, a simulated Arduino unless the run is on the real robot.

    pytest examples/hil                                                   # the simulated Arduino
    pytest examples/hil --hw                                              # the board of pyproject.toml
    pytest examples/hil --hw --hw-device serial_board=/dev/ttyACM0        # another one
"""
import asyncio

import pytest

BOOT = 5.0  # seconds to wait for the first reading (opening the port resets a real Arduino)


@pytest.fixture
def board(rtcbot_serial_board):
    """The SerialConnection to the board, open for the whole session."""
    return rtcbot_serial_board.connection


@pytest.fixture
def readings(rtcbot_run, rtcbot_serial_board):
    """What the board sends from now until the test ends, once it has sent something (it has booted)."""

    async def first_reading():
        queue = rtcbot_serial_board.readings()
        await asyncio.wait_for(queue.get(), BOOT)
        return queue

    return rtcbot_run(first_reading())
