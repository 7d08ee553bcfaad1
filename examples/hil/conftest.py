"""Where the hardware-in-the-loop tests find the board: a real port, or a simulated Arduino.

    pytest examples/hil                                  # against the simulated Arduino
    pytest examples/hil --port /dev/rtcbot/arduino       # against the real board (or RTCBOT_PORT=...)
"""
import os

import pytest

from rtcbot.devices.arduino_sim import SimulatedArduino


def pytest_addoption(parser):
    parser.addoption("--port", default=os.environ.get("RTCBOT_PORT"), help="serial port of the real board")


@pytest.fixture
def port(request):
    """The board's serial port: --port / RTCBOT_PORT if given, else a fresh simulated Arduino's pty."""
    real = request.config.getoption("--port")
    if real:
        yield real
        return
    with SimulatedArduino() as arduino:
        yield arduino.port
