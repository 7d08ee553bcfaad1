"""One receive dispatcher for both ends of the channel: what each kind of message does on arrival.

An ITEM is unpickled with its shared buffer lent (a view of its slot, handed back with a RELEASE once the
last array using it dies) or, when too many slots are lent already or it has several buffers, copied out of
its slot (handed back at once); a RELEASE frees one of our slots; a POOL maps the other side's new pool (its
fd arrived with the message); a DROP unmaps a pool the other side replaced. The two ends differ only in what
they do with an item and a freed slot, and in how they write the RELEASE: they pass those in::

    dispatch = ReceiveDispatcher(pools, on_item=items.append, on_release=send_pools.release,
                                 send_release=write, peer="worker")
    for kind, payload in reader.messages():
        dispatch.handle(kind, payload, reader.fds)
"""
from __future__ import annotations

import logging
import pickle
from typing import Callable, Deque

from .shared_memory import _ReceivePools
from .wire import _DROP, _ITEM, _KIND_DROP, _KIND_ITEM, _KIND_POOL, _KIND_RELEASE, _POOL, _RELEASE, _frame, _parse_item

__all__ = ["ReceiveDispatcher", "UnpicklableItem"]

logger = logging.getLogger("rtcbot.base.transport")


class UnpicklableItem:
    """An item that arrived but could not be unpickled; ``error`` says why (handed to ``on_item`` in its
    place, so the receiver decides: the worker end raises it from ``recv()``, the parent end logs it)."""

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error


class ReceiveDispatcher:
    """Acts on each message received from the other end (see the module docstring)."""

    def __init__(
        self,
        receive_pools: _ReceivePools,
        on_item: Callable[[object], None],
        on_release: Callable[[int, int], None],
        send_release: Callable[[bytes], None],
        peer: str,
    ) -> None:
        self._receive_pools = receive_pools
        self._on_item = on_item
        self._on_release = on_release
        self._send_release = send_release
        self._peer = peer  # "worker" or "parent", for the log

    def would_copy(self, kind: int, payload: bytearray) -> bool:
        """True for an ITEM that would be copied out of its slot only because too many slots are lent now
        (one shared buffer, no slot free to lend): a receiver whose arrays die soon may rather wait."""
        if kind != _KIND_ITEM:
            return False
        pool_id, slot, count = _ITEM.unpack_from(payload, 0)
        return slot >= 0 and count == 1 and not self._receive_pools.can_lend(pool_id)

    def handle(self, kind: int, payload: bytearray, fds: Deque[int]) -> None:
        if kind == _KIND_ITEM:
            pool_id, slot, refs, data = _parse_item(payload)
            buffers, lent = self._receive_pools.take_buffers(pool_id, slot, refs) if refs else ([], False)
            if slot >= 0 and not lent:
                self._send_release(_frame(_KIND_RELEASE, _RELEASE.pack(pool_id, slot)))
            item: object
            try:
                item = pickle.loads(data, buffers=buffers)
            except Exception as e:
                item = UnpicklableItem(e)
            del buffers  # a lent slot now lives exactly as long as the arrays made from it
            self._on_item(item)
        elif kind == _KIND_RELEASE:
            pool_id, slot = _RELEASE.unpack(payload)
            self._on_release(pool_id, slot)
        elif kind == _KIND_POOL:
            pool_id, slot_size, slots = _POOL.unpack(payload)
            self._receive_pools.add(pool_id, slot_size, slots, fds.popleft())
        elif kind == _KIND_DROP:
            self._receive_pools.drop(*_DROP.unpack(payload))
        else:
            logger.error("unknown message kind %d from the %s ignored", kind, self._peer)
