"""RTCBot's module path for input devices: ``from rtcbot.inputs import Gamepad, Keyboard, Mouse``.

The classes live in :mod:`rtcbot.devices.inputs`; they read Linux input devices with evdev (optional:
``pip install 'rtcbot[inputs]'`` or ``sudo apt install python3-evdev``) and give RTCBot's event dictionaries::

    from rtcbot.inputs import Gamepad

    gamepad = Gamepad()
    event = await gamepad.get()     # {"timestamp": ..., "code": "BTN_SOUTH", "state": 1, "event": "Key"}
"""
from __future__ import annotations

from rtcbot.devices.inputs import Gamepad, InputDevice, Keyboard, Mouse

__all__ = ["Gamepad", "InputDevice", "Keyboard", "Mouse"]
