"""The flow-control window of a process consumer's feed: how much may wait in the worker, not yet taken.

The parent sends items to the worker; the worker's ``_get()`` takes them and reports how many it took. At
most ``max_items`` items, and beyond two items at most ``max_bytes`` bytes of them, may be sent and not yet
taken; then the feed waits (asking the worker once for a report). Pure bookkeeping, no I/O::

    window = FeedWindow(max_items=256, max_bytes=1 << 20)
    if not window.full:
        window.sent(size)            # an item of ``size`` bytes went to the worker
    if window.full and window.ask():
        send_report_request()        # once per wait: "tell me when you took half of what waits"
    window.took(count)               # the worker reported ``count`` more items taken
"""
from __future__ import annotations

import collections
from typing import Deque

__all__ = ["FeedWindow"]


class FeedWindow:
    """Items and bytes sent to a worker and not yet taken, bounded by ``max_items`` and ``max_bytes``."""

    __slots__ = ("max_items", "max_bytes", "_sizes", "in_flight_bytes", "_asked")

    def __init__(self, max_items: int = 256, max_bytes: int = 1 << 20) -> None:
        if max_items < 1 or max_bytes < 1:
            raise ValueError(f"FeedWindow needs max_items >= 1 and max_bytes >= 1, got {max_items}, {max_bytes}")
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._sizes: Deque[int] = collections.deque()  # sizes of the items in flight, oldest first
        self.in_flight_bytes = 0
        self._asked = False

    @property
    def in_flight(self) -> int:
        """Items sent and not yet taken."""
        return len(self._sizes)

    @property
    def full(self) -> bool:
        """True when no more may be sent until the worker takes some."""
        n = len(self._sizes)
        return n >= self.max_items or (n >= 2 and self.in_flight_bytes >= self.max_bytes)

    def sent(self, size: int) -> None:
        """An item of ``size`` bytes was sent."""
        self._sizes.append(size)
        self.in_flight_bytes += size

    def took(self, count: int) -> None:
        """The worker took ``count`` more items (the oldest ones); a later wait may ask again."""
        sizes = self._sizes
        for _ in range(min(count, len(sizes))):
            self.in_flight_bytes -= sizes.popleft()
        self._asked = False

    def ask(self) -> bool:
        """True once per wait: the caller should ask the worker for a report now."""
        if self._asked:
            return False
        self._asked = True
        return True
