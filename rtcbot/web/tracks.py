"""Outgoing media tracks: rtcbot frames, audio blocks or encoded packets handed to aiortc.

aiortc pulls from a track with ``await track.recv()``; these tracks pull in turn from any rtcbot source with
an async ``get()`` (a producer's subscription, a consumer's ``_get``)::

    track = FrameTrack(camera.subscribe(MostRecentSubscription()).get)
    peer_connection.addTrack(track)

- :class:`FrameTrack` wraps each BGR frame (``(h, w, 3)`` uint8, e.g. a camera :class:`~rtcbot.Frame`) in an
  ``av.VideoFrame`` *without copying it* (``VideoFrame.from_numpy_buffer``): the only pass over the pixels
  on the way out is the encoder's colour conversion. It also passes through
  :class:`~rtcbot.devices.encoded.EncodedVideoFrame` s (encoded once for every viewer, or by a camera's
  hardware encoder), which aiortc packetizes without decoding or re-encoding.
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
from typing import Any, Awaitable, Callable, Optional

import numpy as np

from ..base import SubscriptionClosed
from ..devices.encoded import EncodedVideoFrame
from ..errors import InvalidItemError
from ._require import require_web as require

__all__ = ["AudioTrack", "FrameTrack", "VIDEO_CLOCK"]

log = logging.getLogger("rtcbot.web.tracks")

VIDEO_CLOCK = 90000  # RTP clock of every video codec
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK)

aiortc = require("aiortc")
av = require("av")
from aiortc import MediaStreamTrack  # noqa: E402  (after require(): a missing web extra says what to install)

Getter = Callable[[], Awaitable[Any]]


async def _next_or_end(get: Getter) -> Any:
    """The next item; a closed source ends the track the way aiortc expects (MediaStreamError)."""
    try:
        return await get()
    except SubscriptionClosed:
        raise aiortc.mediastreams.MediaStreamError from None


class FrameTrack(MediaStreamTrack):  # type: ignore[misc]
    """A video track reading BGR frames (or :class:`~rtcbot.devices.encoded.EncodedVideoFrame`) from ``get``,
    an async function.

    Encoded frames go out as they are, starting at a keyframe; after a frame it did not get (its ``index``
    skips one) the track waits for the next keyframe and asks for it with ``request_keyframe`` (the
    source's), which also hears the receiver's keyframe requests (:meth:`keyframe_requested`)::

        track = FrameTrack(frames.get, request_keyframe=video.request_keyframe)
    """

    kind = "video"

    def __init__(self, get: Getter, request_keyframe: Optional[Callable[[], None]] = None) -> None:
        super().__init__()
        self._next = get
        self._request_keyframe = request_keyframe
        self._start: Optional[float] = None
        self._last_pts = -1
        self._last_index: Optional[int] = None  # for encoded input: the last frame passed on
        self._awaiting_keyframe = False
        self.keyframe_requests = 0  #: keyframes this track asked its source for
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
            if isinstance(item, EncodedVideoFrame):
                if not self._splice(item):
                    continue
                packet = av.Packet(item.data)
                packet.pts = packet.dts = self._pts(item.timestamp)
                packet.time_base = VIDEO_TIME_BASE
                self.frames += 1
                return packet
            frame = self._wrap(item)
            frame.pts = self._pts(getattr(item, "timestamp", None))
            frame.time_base = VIDEO_TIME_BASE
            self.frames += 1
            return frame

    def keyframe_requested(self) -> None:
        """The receiver asked for a keyframe (RTCP PLI/FIR: it lost data it could not recover): passed on
        to the source of encoded frames. Raw frames are left to aiortc's encoder, which sees the request
        itself."""
        self.request_keyframe()

    def request_keyframe(self) -> None:
        """Asks the source for a keyframe (when the track has a ``request_keyframe``)."""
        if self._request_keyframe is None:
            return
        self.keyframe_requests += 1
        try:
            self._request_keyframe()
        except Exception as e:  # a failing encoder control must not end the stream: its periodic keyframes repair it
            log.warning("asking the video source for a keyframe failed: %s", e)

    def _splice(self, item: EncodedVideoFrame) -> bool:
        """Whether to send ``item``: not while waiting for a keyframe (at the start and after a gap)."""
        continuous = self._last_index is not None and item.index == self._last_index + 1
        if not continuous and not item.keyframe:
            if not self._awaiting_keyframe:
                self._awaiting_keyframe = True
                self.request_keyframe()
            return False
        self._awaiting_keyframe = False
        self._last_index = item.index
        return True

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
