"""EncodedVideoSource: video that is already encoded (a camera's hardware H.264 encoder) into WebRTC, with no
decode and no re-encode on the way.

On a Raspberry Pi, encoding 640x480 VP8 in software takes a good part of a core; the camera's own H.264
encoder does it for nothing. Feed its output (H.264 access units in Annex B form, one per frame) to an
:class:`EncodedVideoSource` and put that into connections like a camera::

    source = EncodedVideoSource(request_keyframe=encoder_request_idr)   # the encoder's "next frame IDR"
    def on_encoded(data: bytes, keyframe: bool, timestamp: float):     # called by the encoder's thread
        source.put_encoded(data, keyframe, timestamp)
    conn.video.putSubscription(source)            # H.264 is negotiated; aiortc only packetizes

A browser that joins, or loses a packet, gets a keyframe by ``request_keyframe`` (without one, it waits for
the encoder's next periodic keyframe: keep its interval short, e.g. one a second).
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import threading
import time
from typing import Callable, Optional

from ..base import SubscriptionProducer
from ..subscriptions import BoundedQueue
from ._require import require_web as require
from .tracks import VIDEO_CLOCK, EncodedVideo

__all__ = ["EncodedVideoSource", "h264_is_keyframe"]

log = logging.getLogger("rtcbot.web.passthrough")

_IDR, _SPS = 5, 7


def _nal_types(data: bytes):
    """The NAL unit types in an Annex B H.264 stream (after each 00 00 01 start code)."""
    start = 0
    while True:
        found = data.find(b"\x00\x00\x01", start)
        if found < 0 or found + 3 >= len(data):
            return
        yield data[found + 3] & 0x1F
        start = found + 3


def h264_is_keyframe(data: bytes) -> bool:
    """Whether an Annex B access unit starts a stream (holds an IDR slice)::

    h264_is_keyframe(b"\\x00\\x00\\x00\\x01\\x67...\\x00\\x00\\x01\\x65...")   # SPS, ..., IDR -> True
    """
    return any(t == _IDR for t in _nal_types(data))


class EncodedVideoSource(SubscriptionProducer):
    """A producer of :class:`~rtcbot.web.tracks.EncodedVideo` from an encoder's output; see the module
    docstring. ``put_encoded`` may be called from any thread. ``codec`` is "h264" (Annex B)."""

    def __init__(
        self,
        codec: str = "h264",
        request_keyframe: Optional[Callable[[], None]] = None,
        loop: Optional[asyncio.AbstractEventLoop] = None,
    ) -> None:
        if codec != "h264":
            raise ValueError(f"EncodedVideoSource takes H.264 (Annex B) only, got codec={codec!r}")
        super().__init__(lambda: BoundedQueue(30, overflow="drop-oldest"), logger=log)
        self._av = require("av")
        self.mime = "video/H264"
        self._request = request_keyframe
        self._loop = loop or asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._index = 0
        self._start: Optional[float] = None
        self.keyframe_requests = 0

    def request_keyframe(self) -> None:
        """A viewer needs a keyframe: passed on to the encoder (may be called often; the encoder decides)."""
        self.keyframe_requests += 1
        if self._request is not None:
            try:
                self._request()
            except Exception as e:
                log.warning("the encoder's keyframe request failed: %s", e)

    def put_encoded(self, data: bytes, keyframe: Optional[bool] = None, timestamp: Optional[float] = None) -> None:
        """One encoded frame (an access unit); ``keyframe`` is found in the data when not given;
        ``timestamp`` is its capture time (``time.monotonic()`` clock), now when not given."""
        if timestamp is None:
            timestamp = time.monotonic()
        if keyframe is None:
            keyframe = h264_is_keyframe(data)
        if threading.get_ident() == self._loop_thread:
            self._deliver(bytes(data), keyframe, timestamp)
        else:
            self._loop.call_soon_threadsafe(self._deliver, bytes(data), keyframe, timestamp)

    def _deliver(self, data: bytes, keyframe: bool, timestamp: float) -> None:
        if self.closed:
            return
        if self._start is None:
            self._start = timestamp
        packet = self._av.Packet(data)
        packet.pts = int(round((timestamp - self._start) * VIDEO_CLOCK))
        packet.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        self._put_nowait(EncodedVideo(packet, self._index, keyframe, self.request_keyframe, self.mime))
        self._index += 1
