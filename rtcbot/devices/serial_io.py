"""Moving bytes between an open pyserial port and the event loop, for
:class:`~rtcbot.devices.serial.SerialConnection`. Two ways, one interface:

- :class:`LoopPortIO`: the port has a file descriptor (a device, ``socket://``): the event loop watches it
  (``add_reader``) and reads what is there with ``os.read``; writes are non-blocking ``os.write`` calls, and
  what the kernel does not take yet waits in a bounded backlog drained by ``add_writer``. Nothing blocks the
  loop and no thread is involved.
- :class:`ThreadPortIO`: no descriptor (``loop://``, ``rfc2217://``, ``spy://``): one reader thread and one
  writer thread do pyserial's blocking calls and hand the bytes to the loop. Both are joined at close.

Either way the owner gets, on the event loop: ``on_data(bytes)`` for what was read, ``on_dropped(count)`` for
messages a write gave up on, and ``on_lost(err)`` once when the port failed (unplugged)::

    io = make_port_io(port, loop, on_data, on_dropped, on_lost, write_timeout=2.0, writes_from=t)
    io.write(b"PING\\n", count=1)      # sent now, or queued behind what the kernel has not taken yet
    io.close()                         # stops watching, joins threads; the owner then closes the port

Decoding is not done here: ``on_data`` gets raw bytes.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import logging
import os
import queue
import threading
import time
from typing import Any, Callable, Deque, List, Optional

from .._deps import require
from .._ratelimit import EverySoOften
from .serial_port import has_pollable_fd

__all__ = ["BACKLOG_LIMIT", "LoopPortIO", "ThreadPortIO", "make_port_io"]

log = logging.getLogger("rtcbot.devices.serial")

READ_SIZE = 65536  # bytes read per wake, at most (everything a pty or USB serial buffer holds)
BACKLOG_LIMIT = 4 * 1024 * 1024  # bytes of writes waiting for the port, at most; more are dropped, counted

OnData = Callable[[bytes], None]
OnDropped = Callable[[int], None]
OnLost = Callable[[BaseException], None]


def make_port_io(
    port: Any,
    loop: asyncio.AbstractEventLoop,
    on_data: OnData,
    on_dropped: OnDropped,
    on_lost: OnLost,
    *,
    write_timeout: Optional[float],
    writes_from: float,
    name: str,
) -> LoopPortIO | ThreadPortIO:
    """The I/O for ``port``: in the event loop when it has a pollable descriptor, else in threads."""
    cls = LoopPortIO if has_pollable_fd(port) else ThreadPortIO
    return cls(port, loop, on_data, on_dropped, on_lost, write_timeout=write_timeout, writes_from=writes_from,
               name=name)  # fmt: skip


class _Pending:
    """A batch of encoded messages (``count`` of them) the kernel has not fully taken yet."""

    __slots__ = ("data", "sent", "count", "deadline")

    def __init__(self, data: bytes, count: int, deadline: float) -> None:
        self.data = data
        self.sent = 0
        self.count = count
        self.deadline = deadline


class _PortIO:
    """What both ways share: the port, the loop, the owner's callbacks and the write settings."""

    def __init__(
        self,
        port: Any,
        loop: asyncio.AbstractEventLoop,
        on_data: OnData,
        on_dropped: OnDropped,
        on_lost: OnLost,
        *,
        write_timeout: Optional[float],
        writes_from: float,
        name: str,
    ) -> None:
        self._port = port
        self._loop = loop
        self._on_data = on_data
        self._on_dropped = on_dropped
        self._on_lost = on_lost
        self._write_timeout = write_timeout
        self._writes_from = writes_from
        self._name = name


class LoopPortIO(_PortIO):
    """A port's I/O done by the event loop itself, on its (non-blocking) file descriptor.

    Reads: each time the descriptor is readable, one ``os.read`` of up to 64 KiB, handed to ``on_data``.
    Writes: ``os.write`` at once when nothing waits; the rest waits (at most :data:`BACKLOG_LIMIT` bytes) and is
    written when the descriptor is writable. A batch not fully written ``write_timeout`` seconds after it
    could first be written is dropped, each of its messages counted (``on_dropped``). Nothing is written
    before ``writes_from`` (``time.monotonic()``; an Arduino listens ~2 s after the port opens).
    """

    def __init__(
        self,
        port: Any,
        loop: asyncio.AbstractEventLoop,
        on_data: OnData,
        on_dropped: OnDropped,
        on_lost: OnLost,
        *,
        write_timeout: Optional[float],
        writes_from: float,
        name: str,
    ) -> None:
        super().__init__(port, loop, on_data, on_dropped, on_lost, write_timeout=write_timeout,
                         writes_from=writes_from, name=name)  # fmt: skip
        self._fd: int = port.fileno()
        self._backlog: Deque[_Pending] = collections.deque()
        self._backlog_bytes = 0
        self._writing = False  # add_writer is registered
        self._timer: Optional[asyncio.TimerHandle] = None  # the head batch's deadline, or the write start
        self._closed = False
        self._write_open = False  # writes_from has passed
        self._timeouts = EverySoOften(log, period=1.0)
        loop.add_reader(self._fd, self._read_ready)

    # -- reading ------------------------------------------------------------------------------------------
    def _read_ready(self) -> None:
        try:
            data = os.read(self._fd, READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:  # EIO: the device is gone
            self._lose(e)
            return
        if not data:  # end of file: unplugged (a tty) or the peer closed (socket://)
            self._lose(OSError(errno.EIO, "the device reported end of file (disconnected)"))
            return
        self._on_data(data)

    # -- writing ------------------------------------------------------------------------------------------
    def write(self, data: bytes, count: int = 1) -> None:
        """Write ``data`` (``count`` messages) now, or queue it behind what waits; never blocks."""
        if self._closed:
            self._on_dropped(count)
            return
        if not self._backlog and (self._write_open or self._open_for_writes()):
            try:
                sent = os.write(self._fd, data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as e:
                self._on_dropped(count)
                self._lose(e)
                return
            if sent == len(data):
                return
            data = data[sent:]
        self._queue(data, count)

    def _open_for_writes(self) -> bool:
        """Whether ``writes_from`` has passed (remembered once it has: no clock read per write after)."""
        self._write_open = time.monotonic() >= self._writes_from
        return self._write_open

    def _queue(self, data: bytes, count: int) -> None:
        if self._backlog_bytes + len(data) > BACKLOG_LIMIT:
            self._timeouts.warning(
                "SerialConnection %s: %d bytes already wait for the port (it is not reading); %d message(s) dropped",
                self._name,
                self._backlog_bytes,
                count,
            )
            self._on_dropped(count)
            return
        start = max(time.monotonic(), self._writes_from)
        deadline = start + self._write_timeout if self._write_timeout is not None else float("inf")
        self._backlog.append(_Pending(data, count, deadline))
        self._backlog_bytes += len(data)
        if len(self._backlog) == 1:
            self._schedule()

    def _schedule(self) -> None:
        """Watch for writability (or wait for the write start), and time the head batch out."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._backlog:
            if self._writing:
                self._loop.remove_writer(self._fd)
                self._writing = False
            return
        now = time.monotonic()
        if now < self._writes_from:
            self._timer = self._loop.call_later(self._writes_from - now, self._schedule)
            return
        if not self._writing:
            self._loop.add_writer(self._fd, self._write_ready)
            self._writing = True
        deadline = self._backlog[0].deadline
        if deadline != float("inf"):
            self._timer = self._loop.call_later(max(0.0, deadline - now), self._expire)

    def _write_ready(self) -> None:
        backlog = self._backlog
        head_before = backlog[0] if backlog else None
        while backlog:
            head = backlog[0]
            try:
                sent = os.write(self._fd, memoryview(head.data)[head.sent :])
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:
                self._drop_all()
                self._lose(e)
                return
            head.sent += sent
            self._backlog_bytes -= sent
            if head.sent < len(head.data):
                break
            backlog.popleft()
        if not backlog or backlog[0] is not head_before:
            self._schedule()

    def _expire(self) -> None:
        self._timer = None
        now = time.monotonic()
        dropped = 0
        while self._backlog and self._backlog[0].deadline <= now:
            head = self._backlog.popleft()
            self._backlog_bytes -= len(head.data) - head.sent
            dropped += head.count
        if dropped:
            self._timeouts.warning(
                "SerialConnection %s: write timed out (the device did not read for %.1f s); %d message(s) dropped",
                self._name,
                self._write_timeout,
                dropped,
            )
            self._on_dropped(dropped)
        self._schedule()

    def _drop_all(self) -> None:
        count = sum(p.count for p in self._backlog)
        self._backlog.clear()
        self._backlog_bytes = 0
        if count:
            self._on_dropped(count)

    # -- the end ------------------------------------------------------------------------------------------
    def _lose(self, err: BaseException) -> None:
        if self._closed:
            return
        self._drop_all()
        self.close()
        self._on_lost(err)

    def close(self) -> None:
        """Stop watching the descriptor; what waits to be written is not sent. Idempotent, never raises."""
        if self._closed:
            return
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._backlog.clear()
        self._backlog_bytes = 0
        try:
            self._loop.remove_reader(self._fd)
            if self._writing:
                self._loop.remove_writer(self._fd)
        except (RuntimeError, ValueError, OSError) as e:  # the loop is already closed
            log.debug("SerialConnection %s: unwatching the port: %s", self._name, e)
        self._writing = False


class ThreadPortIO(_PortIO):
    """A port's I/O done by two owned threads (a port with no descriptor the loop could watch): the reader
    blocks in ``port.read()`` and hands each chunk to the loop; the writer takes batches from a queue and
    blocks in ``port.write()`` (pyserial's ``write_timeout`` applies). ``close()`` wakes and joins both."""

    def __init__(
        self,
        port: Any,
        loop: asyncio.AbstractEventLoop,
        on_data: OnData,
        on_dropped: OnDropped,
        on_lost: OnLost,
        *,
        write_timeout: Optional[float],
        writes_from: float,
        name: str,
    ) -> None:
        super().__init__(port, loop, on_data, on_dropped, on_lost, write_timeout=write_timeout,
                         writes_from=writes_from, name=name)  # fmt: skip
        self._serial = require("serial")
        self._stop = threading.Event()
        self._lost = False  # on the loop: on_lost was called (once)
        self._writes: queue.SimpleQueue[Optional[tuple]] = queue.SimpleQueue()
        self._threads: List[threading.Thread] = [
            threading.Thread(target=self._read_loop, name="rtcbot-serial-reader", daemon=True),
            threading.Thread(target=self._write_loop, name="rtcbot-serial-writer", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _to_loop(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop is closed: nobody is left to tell
            self._stop.set()

    def _lose(self, err: BaseException) -> None:  # on the loop
        if self._lost or self._stop.is_set():
            return
        self._lost = True
        self.close()
        self._on_lost(err)

    def _read_loop(self) -> None:
        port = self._port
        errors = (self._serial.SerialException, OSError)
        while not self._stop.is_set():
            try:
                data = port.read(port.in_waiting or 1)
            except errors as e:
                if not self._stop.is_set():
                    self._to_loop(self._lose, e)
                return
            if data:
                self._to_loop(self._on_data, data)

    def write(self, data: bytes, count: int = 1) -> None:
        """Hand ``data`` (``count`` messages) to the writer thread; never blocks."""
        if self._stop.is_set():
            self._on_dropped(count)
        else:
            self._writes.put((data, count))

    def _write_loop(self) -> None:
        wait = self._writes_from - time.monotonic()
        if wait > 0 and self._stop.wait(wait):
            return
        port = self._port
        while True:
            item = self._writes.get()
            if item is None or self._stop.is_set():
                return
            data, count = item
            try:
                port.write(data)
            except self._serial.SerialTimeoutException as e:
                if self._stop.is_set():
                    return
                log.warning("SerialConnection %s: write timed out (%s); %d message(s) dropped", self._name, e, count)
                self._to_loop(self._on_dropped, count)
            except (self._serial.SerialException, OSError) as e:
                if self._stop.is_set():
                    return
                self._to_loop(self._on_dropped, count)
                self._to_loop(self._lose, e)
                return

    def close(self, join_timeout: float = 1.0) -> None:
        """Wake both threads (cancelling blocked reads and writes) and join them. Idempotent, never raises."""
        if not self._stop.is_set():
            self._stop.set()
            self._writes.put(None)
            for cancel in ("cancel_read", "cancel_write"):
                fn = getattr(self._port, cancel, None)
                if fn is not None:
                    try:
                        fn()
                    except (self._serial.SerialException, OSError) as e:
                        log.debug("SerialConnection %s: %s: %s", self._name, cancel, e)
        current = threading.current_thread()
        for thread in self._threads:
            if thread is not current:
                thread.join(join_timeout)
                if thread.is_alive():
                    log.warning("SerialConnection %s: %s still blocked in the port after %.1f s; leaving it",
                                self._name, thread.name, join_timeout)  # fmt: skip
