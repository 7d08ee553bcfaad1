"""The hook rtcbot's pytest plugin adds: where the inventory of this machine's devices comes from.

A conftest.py can fake a machine (the plugin's own tests do), or narrow what ``--hw`` may use::

    from rtcbot.discovery import Inventory, SerialPort

    def pytest_rtcbot_discover(config):
        return Inventory(serial=[SerialPort(id="/dev/ttyACM0", device="/dev/ttyACM0", description="Uno",
                                            vid_pid="2341:0043", serial_number="8573")])
"""

from __future__ import annotations

from typing import Any

import pytest


@pytest.hookspec(firstresult=True)
def pytest_rtcbot_discover(config: Any) -> Any:
    """Return the :class:`rtcbot.discovery.Inventory` that ``--hw`` chooses devices from (default:
    :func:`rtcbot.discovery.discover`, called once per session, when a real device is first needed)."""
