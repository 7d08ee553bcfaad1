"""Reusable receive buffers for decoded arrays, so a frame stream does not fault in fresh memory per frame.

Each buffer goes back into use only once nothing outside the pool refers to it (every array derived from
it holds a reference to it, so a frame a consumer still holds is never overwritten)::

    pool = BufferPool(slots=32, max_bytes=64 << 20)
    buf = pool.take(921600)       # a writable uint8 buffer of that size, reused when free
"""

from __future__ import annotations

import sys
import threading
from typing import List

import numpy as np

__all__ = ["BufferPool"]


class BufferPool:
    """At most ``slots`` reusable uint8 buffers holding at most ``max_bytes`` in all; ``take(n)`` returns a
    free one of ``n`` bytes (the most recently used, still in cache) or a new one."""

    def __init__(self, slots: int = 32, max_bytes: int = 64 << 20) -> None:
        self.slots = slots
        self.max_bytes = max_bytes
        self._buffers: List[np.ndarray] = []
        self._held = 0  # bytes in self._buffers
        self._lock = threading.Lock()

    def _free(self, i: int) -> bool:
        # Free = referenced only by the pool's list (and getrefcount's own argument).
        return sys.getrefcount(self._buffers[i]) == 2

    def take(self, nbytes: int) -> np.ndarray:
        with self._lock:
            buffers = self._buffers
            for i in range(len(buffers) - 1, -1, -1):
                if buffers[i].nbytes == nbytes and self._free(i):
                    buffers.append(buffers.pop(i))
                    return buffers[-1]
            # Make room by forgetting free buffers (of other sizes, or the least recently used).
            i = 0
            while (len(buffers) >= self.slots or self._held + nbytes > self.max_bytes) and i < len(buffers):
                if self._free(i):
                    self._held -= buffers.pop(i).nbytes
                else:
                    i += 1
            fresh = np.empty(nbytes, np.uint8)
            if len(buffers) < self.slots and self._held + nbytes <= self.max_bytes:
                buffers.append(fresh)
                self._held += nbytes
            return fresh
