"""Gamepad, Keyboard and Mouse: real evdev event structures fed through a pipe-backed device (no /dev/uinput
here), giving RTCBot's event dictionaries."""
from __future__ import annotations

import asyncio
import sys
import threading
import time

import pytest

evdev = pytest.importorskip("evdev")
from evdev import ecodes  # noqa: E402

from rtcbot import DeviceLostError, DeviceOpenError, MissingDependencyError  # noqa: E402
from rtcbot.devices import inputs as inputs_module  # noqa: E402
from rtcbot.devices.input_events import code_name, event_dict  # noqa: E402
from rtcbot.discovery import InputDevice as FoundInput  # noqa: E402
from rtcbot.inputs import Gamepad, InputDevice, Keyboard, Mouse  # noqa: E402
from tests.fakes.evdev_device import PipeInputDevice  # noqa: E402
from tests.helpers import next_item, run  # noqa: E402


@pytest.fixture
def pad(monkeypatch):
    """A pipe-backed gamepad that every input class opens, whatever the path."""
    device = PipeInputDevice("/dev/input/event7", "Xbox Wireless Controller")
    opened = []

    def open_device(evdev_module, path):
        opened.append(path)
        return device

    monkeypatch.setattr(inputs_module, "_open_device", open_device)
    device.opened = opened
    yield device
    device.close()


def test_gamepad_events_are_rtcbots_dictionaries(pad, no_leaks):
    async def main():
        with Gamepad(device="/dev/input/event7") as gamepad:
            events = gamepad.subscribe()  # before any event is sent, so none is missed
            pad.send(ecodes.EV_KEY, ecodes.BTN_SOUTH, 1, sec=1700000000, usec=250000)
            pad.send(ecodes.EV_ABS, ecodes.ABS_X, 200, sec=1700000000, usec=250000)
            pad.sync(sec=1700000000, usec=250000)
            return [await next_item(events) for _ in range(3)]

    events = run(main())
    assert events == [
        {"timestamp": 1700000000.25, "code": "BTN_SOUTH", "state": 1, "event": "Key"},
        {"timestamp": 1700000000.25, "code": "ABS_X", "state": 200, "event": "Absolute"},
        {"timestamp": 1700000000.25, "code": "SYN_REPORT", "state": 0, "event": "Sync"},
    ]
    assert pad.closed


def test_event_filter_and_sync_events_choose_what_is_delivered(pad):
    async def main():
        only_keys = lambda e: e["event"] == "Key"  # noqa: E731
        with Gamepad(only_keys, device="/dev/input/event7", sync_events=False) as gamepad:
            events = gamepad.subscribe()
            pad.send(ecodes.EV_ABS, ecodes.ABS_Y, 3)
            pad.sync()
            pad.send(ecodes.EV_KEY, ecodes.BTN_EAST, 0)
            pad.sync()
            first = await next_item(events)
            return first, gamepad.name

    first, name = run(main())
    assert first["code"] == "BTN_EAST" and first["state"] == 0
    assert name == "Xbox Wireless Controller"


def test_no_event_is_lost_when_the_reader_is_slow(pad):
    async def main():
        with Gamepad(device="/dev/input/event7", sync_events=False) as gamepad:
            events = gamepad.subscribe()
            for value in range(200):
                pad.send(ecodes.EV_ABS, ecodes.ABS_RX, value)
            return [(await next_item(events))["state"] for _ in range(200)]

    assert run(main()) == list(range(200))


def test_an_unplugged_gamepad_fires_device_lost_and_closes(pad, no_leaks):
    async def main():
        gamepad = Gamepad(device="/dev/input/event7")
        await asyncio.wait_for(gamepad.onReady(), 5)
        pad.unplug()
        err = await asyncio.wait_for(gamepad.onError(), 5)
        await asyncio.wait_for(gamepad.onClose(), 5)
        return err

    err = run(main())
    assert isinstance(err, DeviceLostError) and "/dev/input/event7" in str(err) and "disconnected" in str(err)


def test_close_wakes_the_reading_thread_at_once(pad, no_leaks):
    async def main():
        gamepad = Gamepad(device="/dev/input/event7")
        await asyncio.wait_for(gamepad.onReady(), 5)
        started = time.monotonic()
        gamepad.close()
        gamepad.close()
        return time.monotonic() - started

    assert run(main()) < 0.5
    assert not [t for t in threading.enumerate() if t.name == "rtcbot-Gamepad"]


def found(*devices):
    return lambda: [FoundInput(id=path, name=name, kind=kind) for path, name, kind in devices]


def test_without_a_path_the_first_device_of_the_kind_is_opened(pad, monkeypatch):
    import rtcbot.discovery

    monkeypatch.setattr(rtcbot.discovery, "list_input_devices", found(
        ("/dev/input/event2", "AT keyboard", "keyboard"), ("/dev/input/event5", "Mouse", "mouse"),
        ("/dev/input/event7", "Xbox Wireless Controller", "gamepad")))  # fmt: skip

    async def main():
        kinds = ((Gamepad, "/dev/input/event7"), (Keyboard, "/dev/input/event2"), (Mouse, "/dev/input/event5"))
        for cls, path in kinds:
            with cls():
                assert pad.opened[-1] == path

    run(main())


def test_no_gamepad_says_what_there_is_and_what_to_check(monkeypatch):
    import rtcbot.discovery

    monkeypatch.setattr(rtcbot.discovery, "list_input_devices", found(("/dev/input/event2", "AT keyboard", "keyboard")))

    async def main():
        with pytest.raises(DeviceOpenError, match="Gamepad found no gamepad") as info:
            Gamepad()
        return str(info.value)

    message = run(main())
    assert "/dev/input/event2 (keyboard: AT keyboard)" in message and "bluetoothctl" in message
    assert "'input' group" in message


def test_a_device_that_cannot_be_read_names_the_input_group(monkeypatch):
    def denied(evdev_module, path):
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(inputs_module, "_open_device", denied)

    async def main():
        with pytest.raises(DeviceOpenError, match="permission denied.*'input' group"):
            InputDevice("/dev/input/event3")

    run(main())


def test_a_missing_device_node_fails_at_once(monkeypatch):
    async def main():
        with pytest.raises(DeviceOpenError, match="could not open /dev/input/event99"):
            InputDevice("/dev/input/event99")

    run(main())


def test_without_evdev_the_error_names_the_extra_and_the_apt_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "evdev", None)

    async def main():
        with pytest.raises(MissingDependencyError, match=r"rtcbot\[inputs\].*python3-evdev"):
            Gamepad()

    run(main())


@pytest.mark.parametrize(
    "type_, code, name",
    [
        (ecodes.EV_KEY, 0x130, "BTN_SOUTH"),  # evdev: BTN_A, BTN_GAMEPAD, BTN_SOUTH
        (ecodes.EV_KEY, 0x131, "BTN_EAST"),
        (ecodes.EV_KEY, 0x133, "BTN_NORTH"),
        (ecodes.EV_KEY, 0x134, "BTN_WEST"),
        (ecodes.EV_KEY, 0x120, "BTN_TRIGGER"),
        (ecodes.EV_KEY, 0x110, "BTN_LEFT"),
        (ecodes.EV_KEY, 113, "KEY_MUTE"),
        (ecodes.EV_KEY, ecodes.KEY_W, "KEY_W"),
        (ecodes.EV_REL, ecodes.REL_WHEEL, "REL_WHEEL"),
        (ecodes.EV_ABS, ecodes.ABS_HAT0X, "ABS_HAT0X"),
    ],
)
def test_codes_are_named_as_rtcbot_named_them(type_, code, name):
    assert code_name(ecodes.bytype[type_].get(code), code) == name


def test_event_types_are_named_as_rtcbot_named_them():
    names = [event_dict(0.0, t, 0, 0, ecodes.bytype)["event"] for t in (0, 1, 2, 3, 4)]
    assert names == ["Sync", "Key", "Relative", "Absolute", "Misc"]


def test_rtcbot_module_paths():
    import rtcbot
    import rtcbot.inputs

    assert rtcbot.Gamepad is rtcbot.inputs.Gamepad is Gamepad
    assert issubclass(Gamepad, rtcbot.ThreadedSubscriptionProducer)
