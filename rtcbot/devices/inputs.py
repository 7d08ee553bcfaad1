"""Gamepads, keyboards and mice (Linux input devices, read with evdev): :class:`Gamepad`, :class:`Keyboard`,
:class:`Mouse`.

Each is a producer of RTCBot's event dictionaries, one per kernel event::

    import asyncio
    from rtcbot.inputs import Gamepad

    async def main():
        with Gamepad() as gamepad:          # the first gamepad: USB, or Bluetooth once paired
            while True:
                event = await gamepad.get()  # {"timestamp": 1700000000.25, "code": "ABS_X", "state": 128,
                print(event)                 #  "event": "Absolute"}

    asyncio.run(main())

evdev is optional: ``pip install 'rtcbot[inputs]'`` or ``sudo apt install python3-evdev``. Reading
``/dev/input/event*`` needs the ``input`` group (``sudo usermod -aG input $USER``, then log in again).
"""
from __future__ import annotations

import asyncio
import errno
import logging
import os
import selectors
import threading
from typing import Any, Callable, Dict, Optional

from rtcbot._deps import require
from rtcbot.base import ThreadedSubscriptionProducer
from rtcbot.devices.input_events import event_dict
from rtcbot.errors import DeviceLostError, DeviceOpenError

logger = logging.getLogger(__name__)

__all__ = ["Gamepad", "InputDevice", "Keyboard", "Mouse"]

Event = Dict[str, Any]


def import_evdev() -> Any:
    """The evdev module, or :class:`~rtcbot.MissingDependencyError` saying how to install it."""
    return require("evdev")


def _open_device(evdev: Any, path: str) -> Any:
    """Opens an evdev device (one function, so tests can give a device fed through a pipe)."""
    return evdev.InputDevice(path)


def _find_device(kind: str) -> str:
    """The path of the first input device of ``kind`` (``gamepad``, ``keyboard``, ``mouse``)."""
    from rtcbot.discovery import list_input_devices

    devices = list_input_devices()
    for device in devices:
        if device.kind == kind:
            return device.id
    seen = ", ".join(f"{d.id} ({d.kind}: {d.name})" for d in devices) or "none"
    raise DeviceOpenError(
        f"found no {kind} among the input devices ({seen}): plug it in (USB) or pair and connect it "
        "(bluetoothctl), then check `rtcbot devices` lists it; unreadable devices need your user in the "
        "'input' group (sudo usermod -aG input $USER, then log in again)"
    )


class InputDevice(ThreadedSubscriptionProducer):
    """Events of one Linux input device as RTCBot's dictionaries, read in a thread (woken at once by close)::

        keys = InputDevice("/dev/input/by-id/usb-Logitech_USB_Keyboard-event-kbd")
        event = await keys.get()    # {"timestamp": ..., "code": "KEY_A", "state": 1, "event": "Key"}

    Parameters:
        device: the device node (``/dev/input/event3``, a ``/dev/input/by-id/`` link).
        eventFilter: called with each event dictionary; only events it returns True for are delivered.
        loop: the asyncio loop subscribers run on (default: the running loop).
        sync_events: also deliver the kernel's ``SYN_REPORT`` separators (RTCBot did, through ``inputs``).

    A device that is unplugged fires ``onError`` with :class:`~rtcbot.DeviceLostError` and closes. Every event
    is kept (the default subscription is a queue): a button press is never lost behind a stick's motion.
    """

    _kind = "input device"

    def __init__(
        self,
        device: str,
        eventFilter: Callable[[Event], bool] = lambda x: True,
        loop: Optional[asyncio.AbstractEventLoop] = None,
        *,
        sync_events: bool = True,
    ) -> None:
        evdev = import_evdev()
        self._path = str(device)
        self._event_filter = eventFilter
        self._sync_events = sync_events
        self._names_by_type = evdev.ecodes.bytype
        try:
            self._device: Any = _open_device(evdev, self._path)
        except PermissionError as e:
            raise DeviceOpenError(
                f"{type(self).__name__} cannot read {self._path}: permission denied. Add your user to the "
                "'input' group (sudo usermod -aG input $USER, then log in again)"
            ) from e
        except OSError as e:
            raise DeviceOpenError(
                f"{type(self).__name__} could not open {self._path}: {e.strerror or e}. Check it exists "
                "(`rtcbot devices` lists input devices)"
            ) from e
        self._name = str(getattr(self._device, "name", "") or self._path)
        # close() wakes the reading thread through this pipe; the lock keeps it from writing to a closed end.
        self._wake_lock = threading.Lock()
        self._wake_r: Optional[int]
        self._wake_w: Optional[int]
        self._wake_r, self._wake_w = os.pipe()
        try:
            super().__init__(asyncio.Queue, logger=logger, loop=loop)
        except BaseException:
            self._release()
            raise

    def describe(self) -> str:
        """Names the device in messages: ``gamepad /dev/input/event3 (Xbox Wireless Controller)``."""
        return f"{self._kind} {self._path} ({self._name})"

    @property
    def name(self) -> str:
        """The name the device gives itself."""
        return self._name

    def close(self) -> None:
        """Stops reading and releases the device; the reading thread is woken at once."""
        lock = getattr(self, "_wake_lock", None)
        if lock is not None:
            with lock:
                if self._wake_w is not None:
                    os.write(self._wake_w, b"\0")
        super().close()

    def _release(self) -> None:
        try:
            self._device.close()
        finally:
            with self._wake_lock:
                fds, self._wake_r, self._wake_w = (self._wake_r, self._wake_w), None, None
            for fd in fds:
                if fd is not None:
                    os.close(fd)

    def _producer(self) -> None:
        try:
            self._read_events()
        finally:
            self._release()

    def _read_events(self) -> None:
        device = self._device
        assert self._wake_r is not None
        with selectors.DefaultSelector() as selector:
            selector.register(device.fileno(), selectors.EVENT_READ, "device")
            selector.register(self._wake_r, selectors.EVENT_READ, "wake")
            self._setReady(True)
            while not self._shouldClose:
                ready = {key.data for key, _ in selector.select()}
                if "wake" in ready or self._shouldClose:
                    return
                try:
                    events = list(device.read())
                except BlockingIOError:
                    continue
                except OSError as e:
                    if self._shouldClose:
                        return
                    if e.errno == errno.ENODEV:
                        raise DeviceLostError(
                            f"{self.describe()} was disconnected (unplugged, or the Bluetooth link dropped); "
                            "reconnect it and open it again"
                        ) from e
                    raise DeviceLostError(f"{self.describe()} failed while reading: {e}") from e
                for event in events:
                    if event.type == 0 and not self._sync_events:
                        continue
                    item = event_dict(event.timestamp(), event.type, event.code, event.value, self._names_by_type)
                    if self._event_filter(item):
                        self._put_nowait(item)


class _FirstOfKind(InputDevice):
    """An input device found by kind when no path is given."""

    def __init__(
        self,
        eventFilter: Callable[[Event], bool] = lambda x: True,
        loop: Optional[asyncio.AbstractEventLoop] = None,
        *,
        device: Optional[str] = None,
        sync_events: bool = True,
    ) -> None:
        import_evdev()  # a missing evdev is said before anything is looked for
        try:
            path = device if device is not None else _find_device(self._kind)
        except DeviceOpenError as e:
            raise DeviceOpenError(f"{type(self).__name__} {e}") from None
        super().__init__(path, eventFilter, loop, sync_events=sync_events)


class Gamepad(_FirstOfKind):
    """A gamepad or joystick (USB, or Bluetooth once paired): sticks are ``"Absolute"`` events (``ABS_X``,
    ``ABS_Y``, ``ABS_RX``...), buttons ``"Key"`` events (``BTN_SOUTH``, ``BTN_EAST``, ``BTN_TL``...)::

        with Gamepad() as pad:                      # or Gamepad(device="/dev/input/event5")
            event = await pad.get()
            if event["code"] == "ABS_Y":
                speed = (128 - event["state"]) / 128   # stick up: forward (range depends on the pad)
    """

    _kind = "gamepad"


class Keyboard(_FirstOfKind):
    """A keyboard: ``"Key"`` events with codes like ``KEY_W``, state 1 pressed, 0 released, 2 repeat."""

    _kind = "keyboard"


class Mouse(_FirstOfKind):
    """A mouse: ``"Relative"`` events (``REL_X``, ``REL_Y``, ``REL_WHEEL``) and buttons (``BTN_LEFT``...)."""

    _kind = "mouse"
