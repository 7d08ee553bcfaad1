"""The flow-control window of a process consumer's feed: how much may wait in the worker, not yet taken.

The parent sends items to the worker; the worker's ``_get()`` takes them and reports how many it took. At
most ``max_items`` items, and beyond two items at most ``max_bytes`` bytes of them, may be sent and not yet
taken; then the feed waits. It asks the worker for a report once half of that is in flight, so that a worker
keeping up has answered before the window is full. Pure bookkeeping, no I/O::

    window = FeedWindow(max_items=256, max_bytes=1 << 20, stretch=4)
    if window.half_full and window.ask():
        send_report_request()        # once per report: "tell me when you took half of what waits"
    if not window.full:
        window.sent(size)            # an item of ``size`` bytes went to the worker
    window.took(count, starved)      # the worker reported ``count`` more items taken

The byte bound is what keeps a slow worker on fresh items: beyond two, what waits for it is at most
``max_bytes`` (three 640x480 frames in 2 MB). A worker faster than the feed never has anything waiting,
and then the same bound only limits how far ahead the feed may send: with three frames, the feed waits for
every report and the worker for every frame, each wait waking a process. So the window stretches while the
worker keeps up: a report the feed asked for (it was filling its window) saying the worker waited for an
item (``starved``) doubles both bounds: ``max_bytes``, and ``floor_items``, the items that may be in
flight whatever their bytes (two at first), up to ``stretch`` times the configured ones; the first report
saying the worker did not wait (items were waiting for it: it is the slower side) puts them back. The item
floor stretches too because two large frames fill any byte bound: at 1080p a stretched window still let
only two frames go ahead, and the feed waited for a report every other frame. A worker that becomes slower
than its source may therefore get a few items older than the bound promises, until its first report.
"""
from __future__ import annotations

import collections
from typing import Deque

__all__ = ["FeedWindow"]


class FeedWindow:
    """Items and bytes sent to a worker and not yet taken, bounded by ``max_items`` and ``max_bytes``."""

    __slots__ = (
        "max_items",
        "max_bytes",
        "floor_items",
        "_base_bytes",
        "_most_bytes",
        "_most_floor",
        "_sizes",
        "in_flight_bytes",
        "_asked",
    )

    def __init__(self, max_items: int = 256, max_bytes: int = 1 << 20, stretch: int = 1) -> None:
        if max_items < 1 or max_bytes < 1 or stretch < 1:
            raise ValueError(
                f"FeedWindow needs max_items >= 1, max_bytes >= 1 and stretch >= 1, "
                f"got {max_items}, {max_bytes}, {stretch}"
            )
        self.max_items = max_items
        self.max_bytes = max_bytes  # the bound now: between the configured one and stretch times it
        self.floor_items = 2  # items that may always be in flight, whatever their bytes: 2 to 2 * stretch
        self._base_bytes = max_bytes
        self._most_bytes = max_bytes * stretch
        self._most_floor = 2 * stretch
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
        return self._full_at(len(self._sizes), self.in_flight_bytes)

    @property
    def half_full(self) -> bool:
        """True once half the bound is in flight: time to ask for a report, so that it is back before the
        window is full (asking only then made the feed wait a round trip to the worker every window)."""
        return self._full_at(2 * len(self._sizes), 2 * self.in_flight_bytes)

    def fills_up_with(self, size: int) -> bool:
        """True if one more item of ``size`` bytes would leave the window full."""
        return self._full_at(len(self._sizes) + 1, self.in_flight_bytes + size)

    def _full_at(self, items: int, nbytes: int) -> bool:
        return items >= self.max_items or (items >= self.floor_items and nbytes >= self.max_bytes)

    def sent(self, size: int) -> None:
        """An item of ``size`` bytes was sent."""
        self._sizes.append(size)
        self.in_flight_bytes += size

    def took(self, count: int, starved: bool = False) -> None:
        """The worker took ``count`` more items (the oldest ones); a later wait may ask again. ``starved``: it
        waited for an item since its last report (it keeps up); both bounds stretch if the feed waited too,
        and are back to the configured ones otherwise."""
        sizes = self._sizes
        for _ in range(min(count, len(sizes))):
            self.in_flight_bytes -= sizes.popleft()
        if not starved:
            self.max_bytes, self.floor_items = self._base_bytes, 2
        elif self._asked:
            self.max_bytes = min(self._most_bytes, 2 * self.max_bytes)
            self.floor_items = min(self._most_floor, 2 * self.floor_items)
        self._asked = False

    def ask(self) -> bool:
        """True once until the next report: the caller should ask the worker for one now."""
        if self._asked:
            return False
        self._asked = True
        return True
