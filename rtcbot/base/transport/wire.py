"""The wire format (pure: no I/O but the socket read): message framing, item encoding and parsing.

Each message is ``length:u32 kind:u8`` then ``length`` bytes of payload (see the package docstring)."""
from __future__ import annotations

import array
import collections
import copyreg
import io
import logging
import os
import pickle
import socket
import struct
import threading
from typing import Any, Deque, List, Optional, Tuple, cast

import numpy as np

from ...errors import NotPicklableError

logger = logging.getLogger("rtcbot.base.transport")

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


# ------------------------------------------------------------------------------------------------- encoding


def _frame(kind: int, *parts: bytes) -> bytes:
    return b"".join([_HEADER.pack(sum(len(p) for p in parts), kind), *parts])


_PLAIN_KINDS = frozenset("biufcSU")  # dtypes whose .str says all (no fields, objects, datetime units)


def _rebuild_array(buffer: Any, dtype: str, shape: Tuple[int, ...]) -> np.ndarray:
    """Unpickles what :func:`_reduce_array` pickled: an array over ``buffer`` (no copy)."""
    return np.frombuffer(buffer, dtype).reshape(shape)


def _reduce_array(array: np.ndarray) -> Any:
    """Pickles a plain C-contiguous array as its buffer, dtype string and shape. numpy's own reduction pickles
    the dtype as an object, which cost more than the rest of a frame's item together (5.8 against 3.4 us to
    pickle, 4.2 against 2.9 us to unpickle a 640x480 frame on a 2-core VM); other arrays keep it."""
    dtype = array.dtype
    if array.flags.c_contiguous and dtype.kind in _PLAIN_KINDS and dtype.metadata is None:
        return _rebuild_array, (pickle.PickleBuffer(array), dtype.str, array.shape)  # type: ignore[arg-type]
    return array.__reduce_ex__(5)


class _ItemPickler(pickle.Pickler):
    """Pickles items to cross (protocol 5), numpy arrays with :func:`_reduce_array`; ``copyreg`` reducers,
    registered before or after this module was imported, as ``pickle.dumps`` does."""

    dispatch_table: Any = collections.ChainMap({np.ndarray: _reduce_array}, cast(Any, copyreg.dispatch_table))


class _ThreadPickler:
    """One thread's pickler, reused for every item it sends: making a pickler (and its output file) per item
    cost as much as pickling a small one (0.3 of 1.3 us for a flow-control report on a 2-core VM).

    Buffers of at least ``min_shared_bytes`` are kept out of band (for a slot), as views of the item's own
    memory; smaller ones, and every one when ``min_shared_bytes`` is None, are pickled in band."""

    def __init__(self) -> None:
        self._out = io.BytesIO()
        self._pickler = _ItemPickler(self._out, protocol=5, buffer_callback=self._in_band)
        self.busy = False
        self._min_shared_bytes: Optional[int] = None
        self._buffers: List[memoryview] = []
        self._offsets: List[int] = []
        self._size = 0

    def _in_band(self, buffer: pickle.PickleBuffer) -> bool:
        """The pickler's buffer callback: False keeps ``buffer`` out of band, True pickles it."""
        try:
            raw = buffer.raw()
        except BufferError:  # not contiguous: pickle it in band
            return True
        if self._min_shared_bytes is None or raw.nbytes < self._min_shared_bytes:
            raw.release()
            return True
        self._offsets.append(self._size)
        self._buffers.append(raw)
        self._size += -(-raw.nbytes // _ALIGN) * _ALIGN
        return False

    def pickle(
        self, obj: object, min_shared_bytes: Optional[int]
    ) -> Tuple[bytes, List[memoryview], List[int], int]:
        """``(pickle data, out-of-band buffers, their offsets in a slot, bytes they take in a slot)``."""
        self.busy = True
        self._min_shared_bytes = min_shared_bytes
        self._buffers, self._offsets, self._size = [], [], 0  # handed over with the data: the item's own
        try:
            self._pickler.dump(obj)
            return self._out.getvalue(), self._buffers, self._offsets, self._size
        except BaseException:
            for raw in self._buffers:
                raw.release()
            raise
        finally:
            self._pickler.clear_memo()  # the memo holds the item's objects: they must not outlive the send
            self._out.seek(0)
            self._out.truncate()
            self.busy = False


_picklers = threading.local()


def _pickler_for_this_thread() -> _ThreadPickler:
    """This thread's reusable pickler, or a new one while it is busy (an item whose pickling sends another)."""
    pickler: Optional[_ThreadPickler] = getattr(_picklers, "pickler", None)
    if pickler is None:
        pickler = _picklers.pickler = _ThreadPickler()
    return _ThreadPickler() if pickler.busy else pickler


class _Encoded:
    """An item pickled with its large buffers kept out of band (views of the item's own memory)."""

    def __init__(self, obj: object, min_shared_bytes: Optional[int]) -> None:
        try:
            self.data, self.buffers, self.offsets, self.size = _pickler_for_this_thread().pickle(obj, min_shared_bytes)
        except (pickle.PicklingError, TypeError, AttributeError) as e:
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
        self._last = 0  # where the message messages() yielded last begins (for put_back)
        self.drained = False  # the last receive() took less than it had room for: nothing more was waiting
        self.fds: Deque[int] = collections.deque()  # received fds, consumed in order by POOL messages

    def receive(self, sock: socket.socket) -> int:
        """Read once from ``sock`` (blocking or not, as the socket is); return the byte count, 0 at EOF."""
        self._make_room()
        with memoryview(self._buf) as view, view[self._end :] as tail:
            nbytes, ancdata, flags, _ = sock.recvmsg_into([tail], _ANCILLARY_SIZE, socket.MSG_CMSG_CLOEXEC)
            self.drained = nbytes < tail.nbytes
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
            self._last, self._start = self._start, begin + length
            yield kind, self._buf[begin : begin + length]

    def put_back(self) -> None:
        """Unread the message :meth:`messages` yielded last (call it before reading again): the next
        ``messages()`` yields it first."""
        self._start = self._last

    @property
    def buffered(self) -> bool:
        """True if bytes received are not parsed yet (a message put back, or one not complete)."""
        return self._end > self._start

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


