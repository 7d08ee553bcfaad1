"""The capture-side steps every rtcbot camera shares: :class:`FrameEmitter`."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .frame import Frame

__all__ = ["FrameEmitter"]


class FrameEmitter:
    """What every rtcbot camera does with a captured image, in its capture thread: wrap it in a
    :class:`Frame`, run ``preprocessframe``, count it, hand it to subscribers, and set ready on the first.

    A camera mixes it in before its producer class, sets ``self._preprocessframe``, ``self._frame_count = 0``
    and its ``_width``/``_height``/``_fps`` in its constructor, and calls ``self._emit_frame(image,
    timestamp)`` (the hook) for every image it captures::

        class LineScanCamera(FrameEmitter, ThreadedSubscriptionProducer):
            def _producer(self):
                while not self.closed:
                    self._emit_frame(read_image(), time.monotonic())
    """

    _preprocessframe: Callable[[Frame], Any]
    _frame_count: int
    # If the event loop stalls, at most two frames wait for it and the capture thread waits too: memory stays
    # bounded, a queue subscriber loses nothing, and the driver's one-frame buffer keeps the next read fresh.
    _handoff_limit = 2

    _width: int
    _height: int
    _fps: float

    @property
    def frame_count(self) -> int:
        """How many frames the camera has captured so far (the next frame's ``index``)."""
        return self._frame_count

    @property
    def width(self) -> int:
        """Frame width in pixels, as the camera delivers it (which may differ from what was asked)."""
        return self._width

    @property
    def height(self) -> int:
        """Frame height in pixels, as the camera delivers it."""
        return self._height

    @property
    def fps(self) -> float:
        """The frame rate the camera delivers: what the device accepted, a file's own rate, or the sensor's."""
        return self._fps

    def _emit_frame(self, image: Any, timestamp: float) -> None:
        index = self._frame_count
        output = self._preprocessframe(Frame(image, timestamp, index))
        if isinstance(output, np.ndarray) and not isinstance(output, Frame):
            output = Frame(output, timestamp, index)  # e.g. an OpenCV result: give it the capture's metadata
        self._frame_count = index + 1
        if output is not None:
            self._put_nowait(output)  # type: ignore[attr-defined]
        if index == 0:
            self._setReady(True)  # type: ignore[attr-defined]
