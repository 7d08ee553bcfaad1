"""A bounded, ordered handoff from the event loop to one sending thread that wakes the loop only when the
loop is waiting (for room, or for everything to be sent), so a busy stream costs no loop wake-up per item::

    queue = SendQueue(loop, depth=8)
    queue.put(item)                  # on the loop
    await queue.wait_below(8)        # room for one more
    await queue.wait_below(1)        # everything sent
    item = queue.get()               # in the thread: blocks; raises QueueClosed once closed and drained
    queue.done()                     # in the thread: the item from get() is sent
"""

from __future__ import annotations

import asyncio
import collections
import threading
from typing import Any, Deque, List, Tuple

__all__ = ["QueueClosed", "SendQueue"]


class QueueClosed(Exception):
    """The queue was closed and nothing is left to send."""


class SendQueue:
    """See the module docstring. ``pending`` counts queued items plus the one being sent."""

    def __init__(self, loop: asyncio.AbstractEventLoop, depth: int) -> None:
        self._loop = loop
        self.depth = depth
        self._items: Deque[Any] = collections.deque()
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._busy = False
        self._closed = False
        self._waiters: List[Tuple[asyncio.Future, int]] = []

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._items) + self._busy

    # -- the loop side ------------------------------------------------------------------------------
    def put(self, item: Any) -> None:
        with self._lock:
            self._items.append(item)
            self._ready.notify()

    async def wait_below(self, count: int) -> None:
        """Returns once fewer than ``count`` items are pending (or the queue is closed)."""
        while True:
            with self._lock:
                if self._closed or len(self._items) + self._busy < count:
                    return
                waiter = self._loop.create_future()
                self._waiters.append((waiter, count))
            await waiter

    def close(self, drain: bool) -> None:
        """No more items; with ``drain`` the thread still sends what is queued, else it is dropped."""
        with self._lock:
            self._closed = True
            if not drain:
                self._items.clear()
            self._ready.notify_all()
            self._wake_waiters(everyone=True)

    # -- the sending thread ---------------------------------------------------------------------------
    def get(self) -> Any:
        """Blocks for the next item; raises QueueClosed once closed and empty."""
        with self._lock:
            self._busy = False
            self._wake_waiters()
            while not self._items:
                if self._closed:
                    raise QueueClosed
                self._ready.wait()
            self._busy = True
            return self._items.popleft()

    def done(self) -> None:
        """The item from get() is sent (get() says so too; call this when no get() follows soon)."""
        with self._lock:
            self._busy = False
            self._wake_waiters()

    def _wake_waiters(self, everyone: bool = False) -> None:
        if not self._waiters:
            return
        pending = len(self._items) + self._busy
        keep = []
        for waiter, count in self._waiters:
            if everyone or pending < count:
                try:
                    self._loop.call_soon_threadsafe(_resolve, waiter)
                except RuntimeError:  # the loop is closed: nobody is waiting any more
                    pass
            else:
                keep.append((waiter, count))
        self._waiters = keep


def _resolve(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_result(None)
