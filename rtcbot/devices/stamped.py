"""StampedArray: a numpy array that also carries when it was captured and its sequence number.

Camera :class:`~rtcbot.devices.camera.Frame` and microphone :class:`~rtcbot.devices.audio_blocks.AudioBlock`
are its two kinds. The attributes ride along through slices, views, copies and arithmetic, reductions give
plain scalars, ``np.asarray(x)`` is a plain view, and pickling keeps them::

    block = AudioBlock(samples, timestamp=time.monotonic(), index=7)
    left = block[:, 0]            # still an AudioBlock, timestamp and index kept
"""
from __future__ import annotations

from typing import Any, Optional, Type, TypeVar

import numpy as np

__all__ = ["StampedArray"]

S = TypeVar("S", bound="StampedArray")


class StampedArray(np.ndarray):
    """An ndarray with ``timestamp`` (seconds on the ``time.monotonic()`` clock) and ``index``."""

    timestamp: Optional[float]
    index: Optional[int]

    def __new__(cls: Type[S], data: Any, timestamp: Optional[float] = None, index: Optional[int] = None) -> S:
        array = np.asarray(data).view(cls)
        array.timestamp = timestamp
        array.index = index
        return array

    def __array_finalize__(self, obj: Any) -> None:
        self.timestamp = getattr(obj, "timestamp", None)
        self.index = getattr(obj, "index", None)

    def __array_wrap__(self, array: Any, *args: Any) -> Any:
        if array.ndim == 0:
            return array[()]
        return super().__array_wrap__(array, *args)

    def __reduce__(self) -> Any:
        # Rebuilt from a plain ndarray, which pickle protocol 5 passes out of band: an item crossing into a
        # worker process travels through shared memory like any array, not copied through the socket.
        return _rebuild, (type(self), np.asarray(self), self.timestamp, self.index)


def _rebuild(cls: Type[S], data: np.ndarray, timestamp: Optional[float], index: Optional[int]) -> S:
    return cls(data, timestamp, index)
