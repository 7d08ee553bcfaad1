"""A stand-in for ``evdev.InputDevice`` fed through a pipe: tests write the kernel's ``struct input_event``
records into it and the device reads them back as real ``evdev.InputEvent`` objects (this machine has no
``/dev/uinput`` to make a virtual device with)::

    pad = PipeInputDevice("/dev/input/event7", "Xbox Wireless Controller")
    pad.send(ecodes.EV_KEY, ecodes.BTN_SOUTH, 1, sec=100, usec=250000)
    pad.sync()
    pad.unplug()           # the next read fails with ENODEV, as when the device is pulled out
"""
from __future__ import annotations

import errno
import os
import struct
from typing import Iterator

import evdev

# struct input_event: struct timeval (two longs), __u16 type, __u16 code, __s32 value
_EVENT = struct.Struct("llHHi")


class PipeInputDevice:
    def __init__(self, path: str = "/dev/input/event7", name: str = "Fake Gamepad") -> None:
        self.path = path
        self.name = name
        self._read_end, self._write_end = os.pipe()
        os.set_blocking(self._read_end, False)
        self._pending = b""
        self._unplugged = False
        self.closed = False

    def fileno(self) -> int:
        return self._read_end

    def send(self, type_: int, code: int, value: int, sec: int = 100, usec: int = 0) -> None:
        os.write(self._write_end, _EVENT.pack(sec, usec, type_, code, value))

    def sync(self, sec: int = 100, usec: int = 0) -> None:
        self.send(evdev.ecodes.EV_SYN, evdev.ecodes.SYN_REPORT, 0, sec, usec)

    def unplug(self) -> None:
        self._unplugged = True
        write_end, self._write_end = self._write_end, -1
        os.close(write_end)  # the read end becomes readable (EOF): the reader wakes

    def read(self) -> Iterator[evdev.InputEvent]:
        """Like evdev's: the events waiting now; BlockingIOError when there are none."""
        if self._unplugged:
            raise OSError(errno.ENODEV, "No such device")
        self._pending += os.read(self._read_end, _EVENT.size * 64)  # BlockingIOError when empty
        count = len(self._pending) // _EVENT.size
        records = [_EVENT.unpack_from(self._pending, i * _EVENT.size) for i in range(count)]
        self._pending = self._pending[count * _EVENT.size :]
        return iter([evdev.InputEvent(*record) for record in records])

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for fd in (self._read_end, self._write_end):
            if fd >= 0:
                os.close(fd)

