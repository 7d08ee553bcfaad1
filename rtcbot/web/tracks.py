"""Outgoing media tracks: rtcbot frames, audio blocks or encoded packets handed to aiortc.

aiortc pulls from a track with ``await track.recv()``; these tracks pull in turn from any rtcbot source with
an async ``get()`` (a producer's subscription, a consumer's ``_get``)::

    track = FrameTrack(camera.subscribe(MostRecentSubscription()).get)
    peer_connection.addTrack(track)

- :class:`FrameTrack` wraps each BGR frame (``(h, w, 3)`` uint8, e.g. a camera :class:`~rtcbot.Frame`) in an
  ``av.VideoFrame`` *without copying it* (``VideoFrame.from_numpy_buffer``): the only pass over the pixels
  on the way out is the encoder's colour conversion. It also passes through :class:`EncodedVideo` items
  (packets already encoded once for every viewer, or by a camera's hardware encoder), which aiortc
  packetizes without decoding or re-encoding.
- :class:`AudioTrack` wraps float or int16 blocks of shape ``(samples, channels)`` (a microphone's
  :class:`~rtcbot.devices.audio_blocks.AudioBlock`) in ``av.AudioFrame`` s (float blocks become int16, the
  one format aiortc's Opus encoder takes); the encoder resamples and re-chunks them to 20 ms.

Timestamps come from the items' ``timestamp`` (capture time, ``time.monotonic()`` clock) when they have one,
so the browser shows frames with the spacing they were captured with.
"""

from __future__ import annotations

import fractions
import logging
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Optional

import numpy as np

from ..base import SubscriptionClosed
from ..errors import InvalidItemError
from ._require import require_web as require

__all__ = ["AudioTrack", "EncodedVideo", "FrameTrack", "VIDEO_CLOCK"]

log = logging.getLogger("rtcbot.web.tracks")

VIDEO_CLOCK = 90000  # RTP clock of every video codec
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK)

aiortc = require("aiortc")
av = require("av")
from aiortc import MediaStreamTrack  # noqa: E402  (after require(): a missing web extra says what to install)


@dataclass(frozen=True)
class EncodedVideo:
    """One encoded video packet and what a track needs to splice into the stream.

    ``packet`` is an ``av.Packet`` (pts in 1/90000 s); ``index`` counts the source's packets, so a track sees
    when it missed one; ``keyframe`` says the packet can start a stream; ``request_keyframe`` asks the
    source for one (a new viewer, or one that missed a packet); ``mime`` is the codec (``"video/VP8"``,
    ``"video/H264"``).
    """

    packet: Any
    index: int
    keyframe: bool
    request_keyframe: Callable[[], None]
    mime: str


Getter = Callable[[], Awaitable[Any]]


async def _next_or_end(get: Getter) -> Any:
    """The next item; a closed source ends the track the way aiortc expects (MediaStreamError)."""
    try:
        return await get()
    except SubscriptionClosed:
        raise aiortc.mediastreams.MediaStreamError from None


class FrameTrack(MediaStreamTrack):  # type: ignore[misc]
    """A video track reading frames (or :class:`EncodedVideo`) from ``get``, an async function."""

    kind = "video"

    def __init__(self, get: Getter) -> None:
        super().__init__()
        self._next = get
        self._start: Optional[float] = None
        self._last_pts = -1
        self._last_index: Optional[int] = None  # for encoded input: the last packet passed on
        self._awaiting_keyframe = False
        self._relay_keyframe_request = False
        self._keyframe_requests = 0
        self.frames = 0

    def _pts(self, timestamp: Optional[float]) -> int:
        now = timestamp if timestamp is not None else time.monotonic()
        if self._start is None:
            self._start = now
        pts = int(round((now - self._start) * VIDEO_CLOCK))
        if pts <= self._last_pts:  # same or older capture time: keep the stream's timestamps increasing
            pts = self._last_pts + 1
        self._last_pts = pts
        return pts

    async def recv(self) -> Any:
        while True:
            item = await _next_or_end(self._next)
            if isinstance(item, EncodedVideo):
                packet = self._splice(item)
                if packet is None:
                    continue
                self.frames += 1
                return packet
            frame = self._wrap(item)
            frame.pts = self._pts(getattr(item, "timestamp", None))
            frame.time_base = VIDEO_TIME_BASE
            self.frames += 1
            return frame

    def keyframe_requested(self) -> None:
        """The receiver asked for a keyframe (RTCP PLI/FIR: it lost data it could not recover). Encoded
        input is asked for one with the next item; raw frames are left to aiortc's encoder, which sees the
        request itself."""
        self._keyframe_requests += 1
        self._relay_keyframe_request = True

    def _splice(self, item: EncodedVideo) -> Any:
        """The packet to send, or None while waiting for a keyframe (at the start and after a gap)."""
        if self._relay_keyframe_request:
            self._relay_keyframe_request = False
            item.request_keyframe()
        continuous = self._last_index is not None and item.index == self._last_index + 1
        if not continuous and not item.keyframe:
            if not self._awaiting_keyframe:
                self._awaiting_keyframe = True
                item.request_keyframe()
            return None
        self._awaiting_keyframe = False
        self._last_index = item.index
        return item.packet

    @staticmethod
    def _wrap(image: Any) -> Any:
        array = np.asarray(image)
        if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
            raise InvalidItemError(
                f"a video track takes BGR frames of shape (height, width, 3) uint8, got {array.dtype} "
                f"{array.shape}; convert grey images with cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)"
            )
        if not array.flags.c_contiguous:
            array = np.ascontiguousarray(array)  # a cropped view: the one case that needs a copy
        return av.VideoFrame.from_numpy_buffer(array, format="bgr24")


class AudioTrack(MediaStreamTrack):  # type: ignore[misc]
    """An audio track reading blocks of shape ``(samples, channels)`` (float in [-1, 1] or int16) from
    ``get``, at ``samplerate`` samples per second."""

    kind = "audio"

    def __init__(self, get: Getter, samplerate: int = 48000) -> None:
        super().__init__()
        self._next = get
        self.samplerate = int(samplerate)
        self._time_base = fractions.Fraction(1, self.samplerate)
        self._samples = 0

    async def recv(self) -> Any:
        block = np.asarray(await _next_or_end(self._next))
        if block.ndim == 1:
            block = block[:, None]
        if block.ndim != 2 or block.shape[1] not in (1, 2):
            raise InvalidItemError(
                f"an audio track takes blocks of shape (samples, 1 or 2 channels), got {block.shape}"
            )
        if block.dtype != np.int16:  # aiortc's Opus encoder takes 16-bit samples only
            block = (np.clip(block, -1.0, 1.0) * 32767.0).astype(np.int16)
        channels = block.shape[1]
        interleaved = np.ascontiguousarray(block).reshape(1, -1)  # packed layout: a view for C-ordered blocks
        frame = av.AudioFrame.from_ndarray(interleaved, format="s16", layout="mono" if channels == 1 else "stereo")
        frame.sample_rate = self.samplerate
        frame.time_base = self._time_base
        frame.pts = self._samples
        self._samples += block.shape[0]
        return frame
