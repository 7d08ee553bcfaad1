"""Gamepad on a real input device (USB, or Bluetooth once paired). Skipped unless asked for (``--hw`` or
``RTCBOT_HW=1``) and when no gamepad is plugged in; the second test asks you to press a button::

    RTCBOT_HW=1 pytest -s hw_tests/test_inputs_hw.py
    RTCBOT_HW=1 RTCBOT_GAMEPAD=/dev/input/event5 pytest -s hw_tests/test_inputs_hw.py
"""
from __future__ import annotations

import asyncio
import os

import pytest

pytestmark = pytest.mark.hw

PRESS_WITHIN = 20.0


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def gamepad_path() -> str:
    pytest.importorskip("evdev")
    from rtcbot.discovery import list_input_devices

    if os.environ.get("RTCBOT_GAMEPAD"):
        return os.environ["RTCBOT_GAMEPAD"]
    pads = [d for d in list_input_devices() if d.kind == "gamepad"]
    if not pads:
        pytest.skip("no gamepad plugged in or paired (set RTCBOT_GAMEPAD to choose one)")
    return pads[0].id


def test_a_gamepad_opens_becomes_ready_and_closes_at_once():
    from rtcbot.inputs import Gamepad

    path = gamepad_path()

    async def main():
        gamepad = Gamepad(device=path)
        await asyncio.wait_for(gamepad.onReady(), 5)
        gamepad.close()
        return gamepad

    gamepad = run(main())
    assert gamepad.closed and gamepad.error is None and gamepad.name


def test_pressing_a_button_gives_a_key_event():
    from rtcbot.inputs import Gamepad

    path = gamepad_path()
    print(f"\npress and release any button of {path} within {PRESS_WITHIN:.0f} s")

    async def main():
        with Gamepad(lambda e: e["event"] == "Key", device=path) as gamepad:
            return await asyncio.wait_for(gamepad.get(), PRESS_WITHIN)

    event = run(main())
    assert set(event) == {"timestamp", "code", "state", "event"}
    assert event["event"] == "Key" and event["code"].startswith(("BTN_", "KEY_")) and event["state"] in (0, 1)
