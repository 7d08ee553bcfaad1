"""A message channel between the event loop and a worker process, with large buffers in shared memory.

A process producer or consumer talks to its worker over one ``AF_UNIX`` stream socket pair. Every item is
pickled with protocol 5; each buffer of at least ``min_shared_bytes`` inside it (numpy arrays anywhere in
tuples, dicts, lists) is copied once into a *slot* of a shared-memory pool instead of going through the
socket, and a small control message tells the other side where it is. The receiver copies the buffer out of
the slot into memory it owns and hands the slot back at once, so an item it keeps is never overwritten::

    parent_end, worker_end = socket_pair()
    proc = ctx.Process(target=worker_main, args=(worker_end,))
    proc.start()
    worker_end.close()                      # the parent must not keep the worker's end, or no EOF arrives

    channel = ParentEndpoint(parent_end, loop, on_item=frames.put_nowait, on_eof=worker_gone)
    channel.start()
    await channel.send({"exposure": 3})     # waits (without blocking the loop) when the worker falls behind

    def worker_main(sock):                  # in the child
        channel = WorkerEndpoint(sock)
        try:
            while True:
                channel.send(camera.read(), block=False)    # a camera drops a frame when all slots are busy
        except ChannelClosed:
            pass
        finally:
            channel.close()

Ownership and policies:

- The receiver gets its own copy of every buffer (a fresh uint8 array under each numpy array), never a view of
  shared memory. Slots only bound how many large items are in flight in one direction.
- A sender with no free slot waits for one (``block=True``, back-pressure: nothing is lost) or drops the item
  (``WorkerEndpoint.send(obj, block=False)``, counted in ``dropped``: a camera keeps only fresh frames).
- Items arrive in the order they were sent; ``on_eof`` runs after the last item was delivered.

Shared memory is an anonymous ``memfd`` (or, without ``memfd_create``, a ``/dev/shm`` file unlinked the moment
it is created), owner-only, passed to the other process with ``SCM_RIGHTS``: nothing has a name, and nothing
is left behind when either process is killed. A pool is created by the sending side when the first large item
is sent, with slots sized for it; a larger item later makes a new pool, and the old one is unmapped on both
sides once all its slots are back.

Wire format (little endian): each message is ``length:u32 kind:u8`` then ``length`` bytes of payload:

========  =================================================================================================
ITEM      ``pool:u32 slot:i32 count:u16`` + ``count`` x ``offset:u64 size:u64`` + pickle (slot -1: no buffers)
RELEASE   ``pool:u32 slot:u32``: the receiver copied the slot out, the sender may reuse it
POOL      ``pool:u32 slot_size:u64 slots:u32``; the pool's fd rides on the message's first byte
DROP      ``pool:u32``: every slot of a replaced pool is back, the receiver unmaps it
========  =================================================================================================
"""
from __future__ import annotations

import array
import asyncio
import collections
import logging
import mmap
import os
import pickle
import secrets
import socket
import struct
import threading
import weakref
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

from ..errors import NotPicklableError

try:  # numpy copies release the GIL, and its large allocations use huge pages (far fewer page faults)
    import numpy as _np

    from .bufferpool import BufferPool
except ImportError:  # pragma: no cover - numpy is a dependency of rtcbot; plain memoryview copies then
    _np = None  # type: ignore[assignment]

# Bytes of recycled receive buffers an endpoint keeps at most (about five 1080p frames).
_RECEIVE_POOL_BYTES = 32 << 20

logger = logging.getLogger("rtcbot.base.transport")

__all__ = ["ChannelClosed", "socket_pair", "register_parent_end", "WorkerEndpoint", "ParentEndpoint"]

_HEADER = struct.Struct("<IB")  # payload length, kind
_ITEM = struct.Struct("<IiH")  # pool id, slot (-1: none), number of shared buffers
_REF = struct.Struct("<QQ")  # offset in the slot, size
_RELEASE = struct.Struct("<II")  # pool id, slot
_POOL = struct.Struct("<IQI")  # pool id, slot size, number of slots
_DROP = struct.Struct("<I")  # pool id

_KIND_ITEM, _KIND_RELEASE, _KIND_POOL, _KIND_DROP = 1, 2, 3, 4

_ALIGN = 64  # buffers start on cache-line boundaries inside a slot
_READ_SIZE = 256 * 1024  # bytes asked of the socket per read (control messages and small items only)
_MIN_READ = 64 * 1024  # the buffer is grown when less room than this is left for a read
_MAX_READS_PER_WAKE = 16  # the parent gives the loop back after this many reads even if more is waiting
_ANCILLARY_SIZE = socket.CMSG_SPACE(16 * array.array("i").itemsize)
_HIGH_WATER = 1024 * 1024  # ParentEndpoint.send waits while this many bytes are not yet written


class ChannelClosed(Exception):
    """The other end of the channel is gone (EOF, killed), or this end was closed."""


def socket_pair() -> Tuple[socket.socket, socket.socket]:
    """Make a connected ``(parent_end, worker_end)`` pair of ``AF_UNIX`` stream sockets (close-on-exec).

    Pass ``worker_end`` to the child as a ``multiprocessing.Process`` argument (it is duplicated into the
    child with every start method), then close it in the parent::

        parent_end, worker_end = socket_pair()
    """
    parent_end, worker_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    # Python creates sockets non-inheritable (O_CLOEXEC) already; say so explicitly for readers.
    parent_end.set_inheritable(False)
    worker_end.set_inheritable(False)
    register_parent_end(parent_end)
    return parent_end, worker_end


def register_parent_end(sock: socket.socket) -> None:
    """Close ``sock`` in every child made by fork(): only this process may hold it, so that the other end
    sees EOF when this process closes it or dies."""
    _parent_ends.add(sock)


# A child made by fork() (the "fork" start method) inherits every parent end; if it kept them, a worker would
# never see EOF when its parent closes the channel. Close them in the child right after the fork.
_parent_ends: weakref.WeakSet[socket.socket] = weakref.WeakSet()


def _close_parent_ends_after_fork() -> None:
    for sock in list(_parent_ends):
        sock.close()
    _parent_ends.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_parent_ends_after_fork)


# --------------------------------------------------------------------------------------------- shared memory


def _create_shared_memory(size: int) -> Tuple[int, mmap.mmap]:
    """Create an anonymous owner-only shared-memory file of ``size`` bytes; return ``(fd, mapping)``."""
    try:
        fd = os.memfd_create("rtcbot-transport", os.MFD_CLOEXEC)
    except (AttributeError, OSError):  # no memfd (old kernel, macOS): a /dev/shm file unlinked at once
        path = f"/dev/shm/rtcbot-{os.getpid()}-{secrets.token_hex(8)}"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        os.unlink(path)
    try:
        os.ftruncate(fd, size)
        return fd, mmap.mmap(fd, size)
    except BaseException:
        os.close(fd)
        raise


def _copy(target: memoryview, source: memoryview) -> None:
    """Copy ``source`` into ``target`` (equal sizes), without holding the GIL when numpy is there."""
    if _np is None:
        target[:] = source
    else:
        _np.copyto(_np.frombuffer(target, _np.uint8), _np.frombuffer(source, _np.uint8))


def _owned_copy(source: memoryview, buffers: Any) -> Any:
    """A writable buffer holding a copy of ``source``: a uint8 numpy array taken from ``buffers`` (a
    BufferPool, so a frame stream reuses memory it has already faulted in rather than a fresh 6 MB per 1080p
    frame), or a bytearray without numpy."""
    if _np is None or buffers is None:
        return bytearray(source)
    copy = buffers.take(source.nbytes)
    _np.copyto(copy, _np.frombuffer(source, _np.uint8))
    return copy


def _close_mapping(view: memoryview, mapping: mmap.mmap) -> None:
    """Unmap a pool; if some other thread still holds a view of it, leave the unmapping to the GC."""
    try:
        view.release()
        mapping.close()
    except BufferError:
        logger.debug("a shared-memory pool is still in use while closing; it is unmapped when released")


class _SendPool:
    """A sender's pool of equal slots in one shared-memory file, and which of them are free."""

    def __init__(self, pool_id: int, slot_size: int, slots: int) -> None:
        self.pool_id = pool_id
        self.slot_size = slot_size
        self.slots = slots
        self.fd, self._mapping = _create_shared_memory(slot_size * slots)
        self._view = memoryview(self._mapping)
        self.free: List[int] = list(range(slots - 1, -1, -1))
        self.announced = False  # the POOL message (with the fd) was written to the socket

    def write(self, slot: int, offsets: List[int], buffers: List[memoryview]) -> None:
        """Copy ``buffers`` into ``slot`` at ``offsets``."""
        base = slot * self.slot_size
        for offset, buf in zip(offsets, buffers):
            start = base + offset
            _copy(self._view[start : start + buf.nbytes], buf)

    def announcement(self) -> bytes:
        return _frame(_KIND_POOL, _POOL.pack(self.pool_id, self.slot_size, self.slots))

    def close(self) -> None:
        _close_mapping(self._view, self._mapping)
        os.close(self.fd)


class _SendPools:
    """The sending side's slots: the current pool and replaced pools whose slots are still out.

    Not thread-safe: the worker guards it with its condition, the parent uses it from the loop only.
    """

    def __init__(self, slots: int) -> None:
        if slots < 1:
            raise ValueError(f"a channel needs at least one shared-memory slot, got slots={slots}")
        self._slots = slots
        self._current: Optional[_SendPool] = None
        self._retired: Dict[int, _SendPool] = {}
        self._next_id = 1
        self.pending_drops: List[int] = []  # ids of retired pools the receiver should unmap

    def acquire(self, size: int) -> Optional[Tuple[_SendPool, int]]:
        """Take a free slot of at least ``size`` bytes, or return None when all are in use."""
        pool = self._current
        if pool is None or pool.slot_size < size:
            if pool is not None:
                self._retire(pool)
            slot_size = -(-size // mmap.PAGESIZE) * mmap.PAGESIZE
            pool = self._current = _SendPool(self._next_id, slot_size, self._slots)
            self._next_id += 1
            logger.debug(
                "new shared-memory pool %d: %d slots of %d bytes", pool.pool_id, self._slots, slot_size
            )
        if not pool.free:
            return None
        return pool, pool.free.pop()

    def release(self, pool_id: int, slot: int) -> None:
        """The receiver handed ``slot`` back."""
        if self._current is not None and self._current.pool_id == pool_id:
            self._current.free.append(slot)
            return
        pool = self._retired.get(pool_id)
        if pool is None:
            logger.warning("release of slot %d of unknown shared-memory pool %d ignored", slot, pool_id)
            return
        pool.free.append(slot)
        if len(pool.free) == pool.slots:
            del self._retired[pool_id]
            self._drop(pool)

    def _retire(self, pool: _SendPool) -> None:
        if len(pool.free) == pool.slots:
            self._drop(pool)
        else:
            self._retired[pool.pool_id] = pool

    def _drop(self, pool: _SendPool) -> None:
        if pool.announced:
            self.pending_drops.append(pool.pool_id)
        pool.close()

    def close(self) -> None:
        for pool in list(self._retired.values()) + ([self._current] if self._current else []):
            pool.close()
        self._retired.clear()
        self._current = None


class _ReceivePools:
    """The receiving side's mappings of the other side's pools."""

    def __init__(self) -> None:
        self._pools: Dict[int, Tuple[int, memoryview, mmap.mmap]] = {}
        # Received arrays are copied into recycled buffers; one a receiver still holds is never reused.
        self._buffers = BufferPool(slots=8, max_bytes=_RECEIVE_POOL_BYTES) if _np is not None else None

    def add(self, pool_id: int, slot_size: int, slots: int, fd: int) -> None:
        try:
            mapping = mmap.mmap(fd, slot_size * slots)
        finally:
            os.close(fd)
        self._pools[pool_id] = (slot_size, memoryview(mapping), mapping)

    def copy_out(self, pool_id: int, slot: int, refs: List[Tuple[int, int]]) -> List[Any]:
        """Copy the buffers of one item out of its slot into memory this process owns."""
        slot_size, view, _ = self._pools[pool_id]
        base = slot * slot_size
        return [_owned_copy(view[base + offset : base + offset + size], self._buffers) for offset, size in refs]

    def drop(self, pool_id: int) -> None:
        entry = self._pools.pop(pool_id, None)
        if entry is not None:
            _close_mapping(entry[1], entry[2])

    def close(self) -> None:
        for pool_id in list(self._pools):
            self.drop(pool_id)


# ------------------------------------------------------------------------------------------------- encoding


def _frame(kind: int, *parts: bytes) -> bytes:
    return b"".join([_HEADER.pack(sum(len(p) for p in parts), kind), *parts])


class _Encoded:
    """An item pickled with its large buffers kept out of band (views of the item's own memory)."""

    def __init__(self, obj: object, min_shared_bytes: Optional[int]) -> None:
        self.buffers: List[memoryview] = []
        self.offsets: List[int] = []
        self.size = 0  # bytes the buffers take in a slot

        def keep_large(buffer: pickle.PickleBuffer) -> bool:
            try:
                raw = buffer.raw()
            except BufferError:  # not contiguous: pickle it in-band
                return True
            if min_shared_bytes is None or raw.nbytes < min_shared_bytes:
                raw.release()
                return True
            self.offsets.append(self.size)
            self.buffers.append(raw)
            self.size += -(-raw.nbytes // _ALIGN) * _ALIGN
            return False  # out of band

        try:
            self.data = pickle.dumps(obj, protocol=5, buffer_callback=keep_large)
        except (pickle.PicklingError, TypeError, AttributeError) as e:
            self.release()
            raise NotPicklableError(
                f"{type(obj).__name__} item cannot be pickled to cross to the other process ({e}); "
                f"send plain data (numbers, strings, dicts, tuples, numpy arrays)"
            ) from e

    def frame(self, pool_id: int = 0, slot: int = -1) -> bytes:
        refs = [_REF.pack(offset, buf.nbytes) for offset, buf in zip(self.offsets, self.buffers)]
        return _frame(_KIND_ITEM, _ITEM.pack(pool_id, slot, len(refs)), *refs, self.data)

    def release(self) -> None:
        for buf in self.buffers:
            buf.release()
        self.buffers.clear()


def _parse_item(payload: bytearray) -> Tuple[int, int, List[Tuple[int, int]], memoryview]:
    """Split an ITEM payload into ``(pool, slot, [(offset, size)], pickle data)``."""
    pool_id, slot, count = _ITEM.unpack_from(payload, 0)
    refs = [_REF.unpack_from(payload, _ITEM.size + i * _REF.size) for i in range(count)]
    return pool_id, slot, refs, memoryview(payload)[_ITEM.size + count * _REF.size :]


class _FrameReader:
    """Receives bytes (and passed fds) from a socket into one buffer and splits them into messages."""

    def __init__(self) -> None:
        self._buf = bytearray(_READ_SIZE)
        self._start = 0  # first byte not yet parsed
        self._end = 0  # end of received bytes
        self.fds: Deque[int] = collections.deque()  # received fds, consumed in order by POOL messages

    def receive(self, sock: socket.socket) -> int:
        """Read once from ``sock`` (blocking or not, as the socket is); return the byte count, 0 at EOF."""
        self._make_room()
        with memoryview(self._buf) as view, view[self._end :] as tail:
            nbytes, ancdata, flags, _ = sock.recvmsg_into([tail], _ANCILLARY_SIZE, socket.MSG_CMSG_CLOEXEC)
        for level, kind, data in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds = array.array("i")
                fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
                self.fds.extend(fds)
        if flags & socket.MSG_CTRUNC:
            logger.error("shared-memory fds were truncated in transit; items using them will fail")
        self._end += nbytes
        return nbytes

    def messages(self):
        """Yield ``(kind, payload)`` for every complete message received so far."""
        while self._end - self._start >= _HEADER.size:
            length, kind = _HEADER.unpack_from(self._buf, self._start)
            begin = self._start + _HEADER.size
            if self._end - begin < length:
                return
            self._start = begin + length
            yield kind, self._buf[begin : begin + length]

    def _make_room(self) -> None:
        """Move unparsed bytes to the front; grow the buffer for a message larger than it, shrink after."""
        pending = self._end - self._start
        if self._start:
            self._buf[:pending] = self._buf[self._start : self._end]
            self._start, self._end = 0, pending
        needed = pending + _MIN_READ
        if pending >= _HEADER.size:
            needed = max(needed, _HEADER.size + _HEADER.unpack_from(self._buf, 0)[0])
        if len(self._buf) < needed:
            self._buf.extend(bytes(max(needed, 2 * len(self._buf)) - len(self._buf)))
        elif pending == 0 and len(self._buf) > 4 * _READ_SIZE:
            del self._buf[_READ_SIZE:]

    def close(self) -> None:
        while self.fds:
            os.close(self.fds.popleft())


# ------------------------------------------------------------------------------------------- worker end


class _Failed:
    """An item that arrived but could not be unpickled; ``recv()`` raises the error in its place."""

    def __init__(self, error: Exception) -> None:
        self.error = error


class WorkerEndpoint:
    """The worker process's end of the channel: blocking ``send``/``recv``, usable from any thread.

    A reader thread receives items (queued for :meth:`recv`) and slot releases (which wake a blocked
    :meth:`send`)::

        channel = WorkerEndpoint(sock)
        channel.send({"ready": True})
        command = channel.recv()
        ok = channel.send(frame, block=False)   # False: dropped, all slots still with the parent
        channel.close()

    :param sock: the ``worker_end`` of :func:`socket_pair`
    :param slots: how many large items may be in flight to the parent at once
    :param min_shared_bytes: buffers at least this large go through shared memory, smaller ones inline
    """

    def __init__(self, sock: socket.socket, slots: int = 4, min_shared_bytes: int = 65536) -> None:
        self.dropped = 0  # items send(block=False) dropped because no slot was free
        self.sent = 0  # items written to the socket
        self._sock = sock
        self._sock.setblocking(True)
        self._min_shared_bytes = min_shared_bytes
        self._cond = threading.Condition()  # guards everything below except the socket writes
        self._send_pools = _SendPools(slots)
        self._receive_pools = _ReceivePools()
        self._items: Deque[object] = collections.deque()
        self._eof = False  # the parent's end is gone
        self._closed = False  # close() was called
        self._stop_waiting = False  # stop_waiting() was called: no send waits for a slot any more
        self._write_lock = threading.Lock()
        self._reader = threading.Thread(target=self._read_loop, name="rtcbot-transport-reader", daemon=True)
        self._reader.start()

    def send(self, obj: object, block: bool = True) -> bool:
        """Send ``obj`` to the parent; return False if it was dropped (``block=False``, no free slot).

        :raises ChannelClosed: the parent is gone or :meth:`close` was called
        :raises NotPicklableError: ``obj`` cannot be pickled
        """
        encoded = _Encoded(obj, self._min_shared_bytes)
        try:
            if not encoded.buffers:
                self._write(encoded.frame())
            else:
                with self._cond:
                    while True:
                        self._check_open()
                        taken = self._send_pools.acquire(encoded.size)
                        if taken is not None:
                            break
                        if not block:
                            self.dropped += 1
                            return False
                        if self._stop_waiting:
                            raise ChannelClosed("the channel is closing: the parent frees no more slots")
                        self._cond.wait()  # woken by a RELEASE from the parent, or by EOF/close
                pool, slot = taken
                try:
                    pool.write(slot, encoded.offsets, encoded.buffers)
                except ValueError as e:  # close() in another thread unmapped the pool under us
                    if not self._closed:
                        raise
                    raise ChannelClosed("the worker end of the channel was closed") from e
                self._write(encoded.frame(pool.pool_id, slot), pool)
        finally:
            encoded.release()
        with self._cond:
            self.sent += 1
        return True

    def recv(self) -> object:
        """Wait for the next item from the parent and return it.

        :raises ChannelClosed: the parent closed its end (after every item it sent was returned) or
            :meth:`close` was called
        """
        with self._cond:
            while True:
                if self._closed:
                    raise ChannelClosed("the worker end of the channel was closed")
                if self._items:
                    item = self._items.popleft()
                    break
                if self._eof:
                    raise ChannelClosed("the parent closed the channel")
                self._cond.wait()
        if isinstance(item, _Failed):
            raise item.error
        return item

    def stop_waiting(self) -> None:
        """A ``send`` that would wait for a free slot raises ChannelClosed instead, now and from then on.

        For a worker asked to close: the parent no longer reads (it is joining the worker), so no slot
        would ever be freed. Sends that need no slot, and ``recv``, work as before.
        """
        with self._cond:
            self._stop_waiting = True
            self._cond.notify_all()

    def close(self) -> None:
        """Close the channel: blocked :meth:`send` and :meth:`recv` raise ChannelClosed; idempotent."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        try:
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes the reader (EOF) and a writer stuck in sendall
        except OSError:
            pass  # already disconnected: nothing to wake
        if threading.current_thread() is not self._reader:
            self._reader.join()
        with self._write_lock:
            self._sock.close()
        with self._cond:
            self._send_pools.close()
            self._receive_pools.close()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called or the parent is gone."""
        return self._closed or self._eof

    def _check_open(self) -> None:
        if self._closed:
            raise ChannelClosed("the worker end of the channel was closed")
        if self._eof:
            raise ChannelClosed("the parent closed the channel")

    def _write(self, frame: bytes, pool: Optional[_SendPool] = None) -> None:
        """Write one message (announcing ``pool`` and unmapping retired pools first when needed)."""
        with self._write_lock:
            try:
                with self._cond:
                    drops, self._send_pools.pending_drops = self._send_pools.pending_drops, []
                head = b"".join(_frame(_KIND_DROP, _DROP.pack(pool_id)) for pool_id in drops)
                if pool is not None and not pool.announced:
                    announcement = pool.announcement()
                    fds = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [pool.fd]))]
                    sent = self._sock.sendmsg([announcement], fds, socket.MSG_NOSIGNAL)
                    self._sock.sendall(announcement[sent:], socket.MSG_NOSIGNAL)
                    pool.announced = True
                if head or frame:
                    self._sock.sendall(head + frame, socket.MSG_NOSIGNAL)
            except OSError as e:
                raise ChannelClosed(f"the parent end of the channel is gone ({e})") from e

    def _read_loop(self) -> None:
        reader = _FrameReader()
        try:
            while reader.receive(self._sock):
                for kind, payload in reader.messages():
                    self._handle(kind, payload, reader)
        except (OSError, ChannelClosed) as e:
            logger.debug("worker channel reader stops: %s", e)
        finally:
            reader.close()
            with self._cond:
                self._eof = True
                self._cond.notify_all()

    def _handle(self, kind: int, payload: bytearray, reader: _FrameReader) -> None:
        if kind == _KIND_ITEM:
            pool_id, slot, refs, data = _parse_item(payload)
            buffers = self._receive_pools.copy_out(pool_id, slot, refs) if refs else []
            if slot >= 0:
                self._write(_frame(_KIND_RELEASE, _RELEASE.pack(pool_id, slot)))
            item: object
            try:
                item = pickle.loads(data, buffers=buffers)
            except Exception as e:  # surfaced to the caller of recv(), in order
                item = _Failed(e)
            with self._cond:
                self._items.append(item)
                self._cond.notify_all()
        elif kind == _KIND_RELEASE:
            with self._cond:
                self._send_pools.release(*_RELEASE.unpack(payload))
                self._cond.notify_all()
                has_drops = bool(self._send_pools.pending_drops)
            if has_drops:
                self._write(b"")
        elif kind == _KIND_POOL:
            pool_id, slot_size, slots = _POOL.unpack(payload)
            self._receive_pools.add(pool_id, slot_size, slots, reader.fds.popleft())
        elif kind == _KIND_DROP:
            self._receive_pools.drop(*_DROP.unpack(payload))
        else:
            logger.error("unknown message kind %d from the parent ignored", kind)


# ------------------------------------------------------------------------------------------- parent end


class ParentEndpoint:
    """The parent's end of the channel, driven by the asyncio loop (use it from the loop's thread only).

    Incoming items are unpickled in the loop's reader callback and passed to ``on_item`` in order; when the
    worker's end closes (exit, crash, SIGKILL), ``on_eof`` runs once, after the last item::

        channel = ParentEndpoint(parent_end, loop, on_item=queue.put_nowait, on_eof=done.set)
        channel.start()
        await channel.send(frame)          # back-pressure: waits for a free slot and socket room
        channel.send_nowait({"stop": 1})   # small control message, never waits
        channel.close()

    :param sock: the ``parent_end`` of :func:`socket_pair`
    :param loop: the event loop that runs the callbacks
    :param on_item: called with each item from the worker; it should not raise (errors are logged)
    :param on_eof: called once when the worker's end is closed
    :param slots: how many large items may be in flight to the worker at once
    :param min_shared_bytes: buffers at least this large go through shared memory, smaller ones inline
    """

    def __init__(
        self,
        sock: socket.socket,
        loop: asyncio.AbstractEventLoop,
        on_item: Callable[[object], None],
        on_eof: Callable[[], None],
        slots: int = 4,
        min_shared_bytes: int = 65536,
    ) -> None:
        self._sock = sock
        self._sock.setblocking(False)
        self._fd = sock.fileno()
        self._loop = loop
        self._on_item = on_item
        self._on_eof = on_eof
        self._min_shared_bytes = min_shared_bytes
        self._send_pools = _SendPools(slots)
        self._receive_pools = _ReceivePools()
        self._reader = _FrameReader()
        self._out = bytearray()  # bytes not yet written
        self._out_position = 0  # stream offset of self._out[0]
        self._out_fds: Deque[Tuple[int, int]] = collections.deque()  # (stream offset, fd) to attach there
        self._writing = False  # add_writer is active
        self._reading = False  # add_reader is active
        self._waiters: List[asyncio.Future] = []  # send() calls waiting for a slot or socket room
        self._eof = False
        self._broken = False  # a write failed: the worker is gone
        self._closed = False

    def start(self) -> None:
        """Start delivering items to ``on_item`` (and the end of the channel to ``on_eof``)."""
        if self._closed or self._reading or self._eof:
            return
        self._loop.add_reader(self._fd, self._on_readable)
        self._reading = True

    async def send(self, obj: object) -> int:
        """Send ``obj`` to the worker, waiting while all slots are in use or the socket is full; returns the
        bytes it takes (pickle and shared buffers), for flow control.

        Do not modify ``obj``'s arrays until this returns (they are copied into shared memory at the end).

        :raises ChannelClosed: the worker is gone or :meth:`close` was called
        :raises NotPicklableError: ``obj`` cannot be pickled
        """
        encoded = _Encoded(obj, self._min_shared_bytes)
        try:
            while True:
                self._check_open()
                if len(self._out) < _HIGH_WATER:
                    if not encoded.buffers:
                        self._queue(encoded.frame())
                        break
                    taken = self._send_pools.acquire(encoded.size)
                    if taken is not None:
                        pool, slot = taken
                        pool.write(slot, encoded.offsets, encoded.buffers)
                        self._announce(pool)
                        self._queue(encoded.frame(pool.pool_id, slot))
                        break
                await self._wait_for_change()
        finally:
            encoded.release()
        self._flush()
        return len(encoded.data) + encoded.size

    def send_nowait(self, obj: object) -> None:
        """Queue a small item for the worker; it is written in order, as the socket accepts it.

        Everything travels inline (no shared memory), so keep large arrays for :meth:`send`.

        :raises ChannelClosed: the worker is gone or :meth:`close` was called
        """
        encoded = _Encoded(obj, None)
        self._check_open()
        self._queue(encoded.frame())
        self._flush()

    def shutdown_write(self) -> None:
        """Tell the worker that nothing more comes (it reads EOF and stops); reading goes on. Threadsafe and
        idempotent: the one call a thread other than the loop's may make."""
        try:
            self._sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # closed or disconnected already

    def close(self) -> None:
        """Stop reading and writing, close the socket and unmap shared memory; idempotent.

        Unwritten data is discarded; the worker sees EOF. ``on_eof`` is not called after close().
        """
        if self._closed:
            return
        self._closed = True
        if self._reading:
            self._loop.remove_reader(self._fd)
            self._reading = False
        if self._writing:
            self._loop.remove_writer(self._fd)
            self._writing = False
        self._sock.close()
        self._reader.close()
        self._send_pools.close()
        self._receive_pools.close()
        self._out.clear()
        self._wake_waiters()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called or the worker's end is gone."""
        return self._closed or self._eof or self._broken

    def _check_open(self) -> None:
        if self._closed:
            raise ChannelClosed("the parent end of the channel was closed")
        if self._eof or self._broken:
            raise ChannelClosed("the worker closed the channel")

    async def _wait_for_change(self) -> None:
        waiter = self._loop.create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def _wake_waiters(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    # -- writing

    def _announce(self, pool: _SendPool) -> None:
        if not pool.announced:
            self._out_fds.append((self._out_position + len(self._out), pool.fd))
            self._queue(pool.announcement())
            pool.announced = True

    def _queue(self, frame: bytes) -> None:
        if self._send_pools.pending_drops:
            drops, self._send_pools.pending_drops = self._send_pools.pending_drops, []
            for pool_id in drops:
                self._out += _frame(_KIND_DROP, _DROP.pack(pool_id))
        self._out += frame

    def _flush(self) -> None:
        """Write as much of the out buffer as the socket takes; the rest goes when it is writable."""
        while self._out and not (self._closed or self._broken):
            fd_offset = self._out_fds[0][0] - self._out_position if self._out_fds else None
            try:
                if fd_offset == 0:  # this message carries a pool's fd on its first byte
                    next_fd = self._out_fds[1][0] - self._out_position if len(self._out_fds) > 1 else None
                    end = len(self._out) if next_fd is None else next_fd
                    fd = array.array("i", [self._out_fds[0][1]])
                    ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fd)]
                    with memoryview(self._out) as view, view[:end] as chunk:
                        written = self._sock.sendmsg([chunk], ancillary, socket.MSG_NOSIGNAL)
                    self._out_fds.popleft()
                else:
                    end = len(self._out) if fd_offset is None else fd_offset
                    with memoryview(self._out) as view, view[:end] as chunk:
                        written = self._sock.send(chunk, socket.MSG_NOSIGNAL)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:
                logger.debug("writing to the worker failed: %s", e)
                self._broken = True
                self._out.clear()
                break
            del self._out[:written]
            self._out_position += written
        wants_writer = bool(self._out) and not (self._closed or self._broken)
        if wants_writer and not self._writing:
            self._loop.add_writer(self._fd, self._flush)
            self._writing = True
        elif not wants_writer and self._writing:
            self._loop.remove_writer(self._fd)
            self._writing = False
        if len(self._out) < _HIGH_WATER or self._broken:
            self._wake_waiters()

    # -- reading

    def _on_readable(self) -> None:
        for _ in range(_MAX_READS_PER_WAKE):
            try:
                received = self._reader.receive(self._sock)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:  # ECONNRESET: the worker died with data unread; same as EOF
                logger.debug("reading from the worker failed: %s", e)
                received = 0
            if not received:
                self._end_of_stream()
                return
            for kind, payload in self._reader.messages():
                self._handle(kind, payload)
                if self._closed:  # on_item closed the channel
                    return
        self._flush()  # slot releases queued by the items above

    def _handle(self, kind: int, payload: bytearray) -> None:
        if kind == _KIND_ITEM:
            pool_id, slot, refs, data = _parse_item(payload)
            buffers = self._receive_pools.copy_out(pool_id, slot, refs) if refs else []
            if slot >= 0:
                self._queue(_frame(_KIND_RELEASE, _RELEASE.pack(pool_id, slot)))
            try:
                item = pickle.loads(data, buffers=buffers)
            except Exception:
                logger.exception("an item from the worker could not be unpickled and was skipped")
                return
            try:
                self._on_item(item)
            except Exception:
                logger.exception("on_item raised; the channel goes on with the next item")
        elif kind == _KIND_RELEASE:
            self._send_pools.release(*_RELEASE.unpack(payload))
            if self._send_pools.pending_drops:
                self._queue(b"")  # tell the worker to unmap a replaced pool
            self._wake_waiters()
        elif kind == _KIND_POOL:
            pool_id, slot_size, slots = _POOL.unpack(payload)
            self._receive_pools.add(pool_id, slot_size, slots, self._reader.fds.popleft())
        elif kind == _KIND_DROP:
            self._receive_pools.drop(*_DROP.unpack(payload))
        else:
            logger.error("unknown message kind %d from the worker ignored", kind)

    def _end_of_stream(self) -> None:
        self._loop.remove_reader(self._fd)
        self._reading = False
        self._eof = True
        self._wake_waiters()
        try:
            self._on_eof()
        except Exception:
            logger.exception("on_eof raised")
