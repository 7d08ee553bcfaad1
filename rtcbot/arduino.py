"""RTCBot's module path for the serial connection, so RTCBot scripts run unchanged::

    from rtcbot.arduino import SerialConnection

    conn = SerialConnection("/dev/ttyACM0", writeFormat="<hB", writeKeys=["value1", "value2"])

It is :class:`rtcbot.devices.serial.SerialConnection` (also ``rtcbot.SerialConnection``). Importing this
module does not import pyserial: that happens when a connection is created.
"""
from __future__ import annotations

from .devices.serial import SerialConnection

__all__ = ["SerialConnection"]
