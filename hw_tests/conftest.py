"""Tests on real hardware: skipped unless asked for with ``--hw`` or ``RTCBOT_HW=1``.

    RTCBOT_HW=1 pytest hw_tests            # all of them
    pytest hw_tests --hw -k camera         # only the camera ones

Device choices come from the environment: RTCBOT_CAMERA (default /dev/video0), RTCBOT_SERIAL (the Arduino's
port, default /dev/rtcbot/arduino), RTCBOT_AUDIO_DEVICE (default: the system default).
"""
from __future__ import annotations

import os

import pytest


def pytest_addoption(parser):
    parser.addoption("--hw", action="store_true", default=False, help="run tests on real hardware")


def pytest_configure(config):
    config.addinivalue_line("markers", "hw: needs real hardware (run with --hw or RTCBOT_HW=1)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--hw") or os.environ.get("RTCBOT_HW") == "1":
        return
    skip = pytest.mark.skip(reason="real-hardware test: run with --hw or RTCBOT_HW=1")
    for item in items:
        item.add_marker(skip)
