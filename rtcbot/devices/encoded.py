"""Encoded video: :class:`EncodedVideoFrame`, one compressed frame, and :class:`EncodedFrameQueue`, the
bounded subscription that drops frames without ever breaking a group of pictures (GOP).

An H.264 stream can only be decoded from a keyframe on: drop one P-frame and every frame after it, up to
the next keyframe, decodes wrong. So a slow reader of encoded video cannot simply lose the oldest frame
the way a reader of raw frames can. :class:`EncodedFrameQueue` keeps up to ``maxsize`` frames; when it
overflows (or its first frame is not a keyframe) it empties itself, drops everything up to the next
keyframe, and calls ``on_gap`` once, so the producer can make that keyframe come at once::

    video = PiCamera2H264(camera)                  # or any producer of EncodedVideoFrame
    frames = video.subscribe(EncodedFrameQueue(8, on_gap=video.request_keyframe))
    frame = await frames.get()                     # frame.data: Annex-B H.264 bytes of one access unit
    assert frames.dropped == 0 or frame.keyframe   # after a gap the first frame is always a keyframe

Pure: no I/O, no thread; ``put_nowait`` and ``get`` run on the event loop.
"""
from __future__ import annotations

import asyncio
import collections
from dataclasses import dataclass
from typing import Callable, Deque, Optional

from rtcbot.base import SubscriptionClosed

__all__ = ["EncodedFrameQueue", "EncodedVideoFrame"]


@dataclass(frozen=True)
class EncodedVideoFrame:
    """One encoded video frame (an H.264 access unit in Annex-B form: start codes, then NAL units).

    Immutable and small, so one frame can go to many consumers (WebRTC, a recording, Zenoh)::

        EncodedVideoFrame(data=b"\\x00\\x00\\x00\\x01\\x67...", keyframe=True, timestamp=12.5,
                          width=640, height=480)

    Attributes:
        data: the encoded bytes. A keyframe carries its SPS and PPS in front of the IDR slice.
        keyframe: True for an IDR frame, from which a decoder can start.
        timestamp: seconds, on a clock that only moves forward within one stream (for presentation times).
        width, height: the picture size in pixels.
        codec: ``"h264"``.
        index: the frame's number in its stream, counting from 0.
    """

    data: bytes
    keyframe: bool
    timestamp: float
    width: int
    height: int
    codec: str = "h264"
    index: int = 0

    def __repr__(self) -> str:  # never print the payload
        kind = "key" if self.keyframe else "delta"
        return (
            f"EncodedVideoFrame({self.codec} {self.width}x{self.height} #{self.index} {kind}, "
            f"{len(self.data)} bytes, t={self.timestamp:.3f})"
        )


class EncodedFrameQueue:
    """A bounded subscription of :class:`EncodedVideoFrame` whose drops never break a GOP.

    - Frames are given out in order, never more than ``maxsize`` waiting.
    - Until the first keyframe, and after an overflow, frames are dropped up to the next keyframe (a reader
      never gets a frame it cannot decode); the queue then calls ``on_gap()`` once per gap, to ask the
      producer for that keyframe now rather than at the end of its GOP.
    - An overflow keeps the newest: everything queued is dropped, and the overflowing frame too unless it
      is a keyframe.

    ``dropped`` counts the frames lost, ``gaps`` how many times ``on_gap`` was called (a start in the middle
    of a GOP counts). ``close()`` makes a waiting ``get()`` (and every later one) raise
    :class:`~rtcbot.base.SubscriptionClosed`.
    """

    def __init__(self, maxsize: int = 8, on_gap: Optional[Callable[[], None]] = None) -> None:
        if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 1:
            raise ValueError(f"EncodedFrameQueue maxsize must be a positive int, got {maxsize!r}")
        self.maxsize = maxsize
        self.on_gap = on_gap
        self._frames: Deque[EncodedVideoFrame] = collections.deque()
        self._waiting_for_keyframe = True
        self._gap_reported = False
        self._waiter: Optional[asyncio.Future] = None
        self._closed = False
        self.dropped = 0
        self.gaps = 0

    @property
    def waiting_for_keyframe(self) -> bool:
        """True while frames are being dropped until the next keyframe."""
        return self._waiting_for_keyframe

    def put_nowait(self, frame: EncodedVideoFrame) -> None:
        if self._closed:
            return
        if frame.keyframe:
            self._waiting_for_keyframe = False
            self._gap_reported = False
        elif self._waiting_for_keyframe:
            self._drop(1)
            return
        if len(self._frames) >= self.maxsize:
            self._drop(len(self._frames))
            self._frames.clear()
            if not frame.keyframe:
                self._waiting_for_keyframe = True
                self._drop(1)
                return
        self._frames.append(frame)
        self._wake()

    def _drop(self, count: int) -> None:
        self.dropped += count
        if self._gap_reported:
            return
        self._gap_reported = True
        self.gaps += 1
        if self.on_gap is not None:
            self.on_gap()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def get_nowait(self) -> EncodedVideoFrame:
        if not self._frames:
            raise asyncio.QueueEmpty
        return self._frames.popleft()

    async def get(self) -> EncodedVideoFrame:
        while not self._frames:
            if self._closed:
                raise SubscriptionClosed("EncodedFrameQueue was closed")
            waiter = asyncio.get_running_loop().create_future()
            self._waiter = waiter
            try:
                await waiter
            finally:
                self._waiter = None
        return self._frames.popleft()

    def qsize(self) -> int:
        return len(self._frames)

    def empty(self) -> bool:
        return not self._frames

    def close(self) -> None:
        """Ends the subscription: queued frames are dropped and a waiting ``get()`` is woken."""
        self._closed = True
        self._frames.clear()
        self._wake()

    @property
    def closed(self) -> bool:
        return self._closed
