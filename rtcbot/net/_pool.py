"""Reusable receive buffers for decoded arrays, so a frame stream does not fault in fresh memory per frame.

Each buffer goes back into use only once nothing outside the pool refers to it (every array derived from
it holds a reference to it, so a frame a consumer still holds is never overwritten)::

    pool = BufferPool(slots=8)
    buf = pool.take(921600)       # a writable uint8 buffer of that size, reused when free
"""

from __future__ import annotations

import sys
import threading
from typing import List

import numpy as np

__all__ = ["BufferPool"]

# References to a pooled buffer while it is free: the pool's list, take()'s loop variable, getrefcount's
# argument.
_FREE_REFS = 3


class BufferPool:
    """At most ``slots`` reusable uint8 buffers; ``take(n)`` returns a free one of ``n`` bytes or a new one."""

    def __init__(self, slots: int = 8) -> None:
        self.slots = slots
        self._buffers: List[np.ndarray] = []
        self._lock = threading.Lock()

    def take(self, nbytes: int) -> np.ndarray:
        with self._lock:
            for buf in self._buffers:
                if buf.nbytes == nbytes and sys.getrefcount(buf) == _FREE_REFS:
                    return buf
            fresh = np.empty(nbytes, np.uint8)
            if len(self._buffers) >= self.slots:
                # Forget a free buffer of another size (or, if all are in use, keep the pool as it is).
                for i, buf in enumerate(self._buffers):
                    if sys.getrefcount(buf) == _FREE_REFS:
                        del self._buffers[i]
                        break
                else:
                    return fresh
                del buf
            self._buffers.append(fresh)
            return fresh
