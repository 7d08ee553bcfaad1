"""Shared-memory slots: the sender's pools of equal slots and the receiver's mappings of them."""
from __future__ import annotations

import ctypes
import functools
import logging
import mmap
import os
import secrets
import weakref
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

import numpy as _np

from ..bufferpool import BufferPool
from .wire import _KIND_POOL, _POOL, _frame

logger = logging.getLogger("rtcbot.base.transport")

# Bytes of recycled receive buffers an endpoint keeps at most (about five 1080p frames).
_RECEIVE_POOL_BYTES = 32 << 20

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
    """Copy ``source`` into ``target`` (equal sizes); numpy copies without holding the GIL."""
    _np.copyto(_np.frombuffer(target, _np.uint8), _np.frombuffer(source, _np.uint8))


def _owned_copy(source: memoryview, buffers: Any) -> Any:
    """A writable buffer holding a copy of ``source``: a uint8 numpy array taken from ``buffers`` (a
    BufferPool, so a frame stream reuses memory it has already faulted in rather than a fresh 6 MB per 1080p
    frame), or a bytearray without numpy."""
    if buffers is None:
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

    def __init__(self, slots: int, pool_bytes: int = 0) -> None:
        if slots < 1:
            raise ValueError(f"a channel needs at least one shared-memory slot, got slots={slots}")
        self._slots = slots
        self._pool_bytes = pool_bytes  # small items get more slots, up to twice as many, while they fit in this
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
            slots = max(self._slots, min(2 * self._slots, self._pool_bytes // slot_size))
            pool = self._current = _SendPool(self._next_id, slot_size, slots)
            self._next_id += 1
            logger.debug("new shared-memory pool %d: %d slots of %d bytes", pool.pool_id, slots, slot_size)
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


@functools.lru_cache(maxsize=64)
def _slot_buffer_type(nbytes: int) -> Any:
    """A ctypes byte-array type of ``nbytes`` (a subclass, so its instances can be weakly referenced)."""
    return type("_LentBuffer", (ctypes.c_char * nbytes,), {})


class _ReceivePools:
    """The receiving side's mappings of the other side's pools, and the slots lent to received items.

    An item with one shared buffer is *lent* its slot: its array is a view of the slot itself (no copy), and
    the slot goes back to the sender (``on_returned(pool, slot)``, called from whichever thread dropped the
    last reference, possibly inside the garbage collector) only once every array using it has died. At most
    three quarters of a pool's slots are lent at once (so at least one keeps cycling); beyond that (a receiver
    that keeps arrays) items are copied out and their slots handed back at once, so the sender never runs out
    of slots for good.
    """

    def __init__(self, on_returned: Optional[Callable[[int, int], None]] = None) -> None:
        self._pools: Dict[int, Tuple[int, memoryview, mmap.mmap]] = {}
        self._on_returned = on_returned
        self._max_lent: Dict[int, int] = {}  # pool id -> how many of its slots may be lent at once
        self._lent: Dict[int, Set[int]] = {}  # pool id -> its slots lent now (changed from any thread)
        # id of a weakref to a lent buffer -> (the weakref, pool id, slot); buffers are unhashable
        self._leases: Dict[int, Tuple[Any, int, int]] = {}
        # Received arrays are copied into recycled buffers; one a receiver still holds is never reused.
        self._buffers = BufferPool(slots=8, max_bytes=_RECEIVE_POOL_BYTES)
        self.newest_slots = 0  # how many slots the sender's newest pool (the one it sends from) has

    def add(self, pool_id: int, slot_size: int, slots: int, fd: int) -> None:
        try:
            mapping = mmap.mmap(fd, slot_size * slots)
        finally:
            os.close(fd)
        self._pools[pool_id] = (slot_size, memoryview(mapping), mapping)
        self._max_lent[pool_id] = slots * 3 // 4 if self._on_returned is not None else 0
        self._lent[pool_id] = set()
        self.newest_slots = slots

    @property
    def lent(self) -> int:
        """How many slots are lent to items still alive."""
        return len(self._leases)

    def returns_due(self, waiting: int) -> bool:
        """Should ``waiting`` returned slots (RELEASEs not yet written) go to the sender now? Each write wakes
        the other process, so they go two at a time, unless the sender may be short of slots: all but one of
        its newest pool's are lent here or waiting to go back. The sender then always has two slots to send
        with or slots on their way back, so holding one back never stalls it."""
        return waiting >= 2 or (waiting > 0 and self.lent + waiting + 1 >= self.newest_slots)

    def can_lend(self, pool_id: int) -> bool:
        """True if an item with one buffer in this pool would be lent its slot now (not copied out)."""
        lent = self._lent.get(pool_id)
        return lent is not None and len(lent) < self._max_lent[pool_id]

    def take_buffers(self, pool_id: int, slot: int, refs: List[Tuple[int, int]]) -> Tuple[List[Any], bool]:
        """The buffers of one item: ``([view of the slot], True)`` when the slot is lent (it goes back when
        the last array using it dies), else ``(copies, False)`` (the caller hands the slot back at once)."""
        slot_size, view, mapping = self._pools[pool_id]
        base = slot * slot_size
        lent = self._lent[pool_id]
        if len(refs) == 1 and len(lent) < self._max_lent[pool_id]:
            offset, size = refs[0]
            buffer = _slot_buffer_type(size).from_buffer(mapping, base + offset)
            ref = weakref.ref(buffer, self._returned)
            self._leases[id(ref)] = (ref, pool_id, slot)
            lent.add(slot)
            return [buffer], True
        return [_owned_copy(view[base + offset : base + offset + size], self._buffers) for offset, size in refs], False

    def _returned(self, ref: Any) -> None:
        """The last array using a lent slot died (any thread, maybe in the garbage collector)."""
        _, pool_id, slot = self._leases.pop(id(ref))
        lent = self._lent.get(pool_id)
        if lent is not None:
            lent.discard(slot)
        if self._on_returned is not None:
            self._on_returned(pool_id, slot)

    def drop(self, pool_id: int) -> None:
        entry = self._pools.pop(pool_id, None)
        self._max_lent.pop(pool_id, None)
        self._lent.pop(pool_id, None)
        if entry is not None:
            _close_mapping(entry[1], entry[2])

    def close(self) -> None:
        """Unmap every pool; a pool with slots still lent to live arrays is unmapped when the last one dies."""
        self._on_returned = None  # nothing goes back to a closed channel
        for pool_id in list(self._pools):
            self.drop(pool_id)
