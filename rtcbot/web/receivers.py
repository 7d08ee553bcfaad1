"""Incoming media: a remote WebRTC track as an rtcbot producer of frames or audio blocks.

:class:`VideoReceiver` gives BGR :class:`~rtcbot.Frame` s (numpy ``(h, w, 3)`` uint8, as a camera does; the
default subscription keeps the newest); :class:`AudioReceiver` gives float32
:class:`~rtcbot.devices.audio_blocks.AudioBlock` s of shape ``(samples, channels)`` in [-1, 1] at
``samplerate`` (48 kHz from a browser). A connection makes them for you::

    frames = conn.video.subscribe()
    frame = await frames.get()

Each receiver owns one task reading the track; it ends when the track ends (the receiver closes) or at
:meth:`aclose`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Optional

import numpy as np

from ..base import SubscriptionProducer
from ..devices.audio_blocks import AudioBlock
from ..devices.camera import Frame
from ..subscriptions import MostRecentSubscription

__all__ = ["AudioReceiver", "VideoReceiver"]

log = logging.getLogger("rtcbot.web.receivers")


class _TrackReceiver(SubscriptionProducer):
    """Reads a remote track in a task and produces what :meth:`_convert` makes of each frame."""

    _task: Optional[asyncio.Task[None]] = None

    def __init__(self, track: Any, default_subscription: Any) -> None:
        super().__init__(default_subscription, logger=log, ready=False)
        self.track = track
        self.count = 0
        self._task = asyncio.get_running_loop().create_task(self._read(), name=f"rtcbot-receive-{track.kind}")

    def _convert(self, frame: Any) -> Any:
        raise NotImplementedError

    async def _read(self) -> None:
        from aiortc.mediastreams import MediaStreamError

        try:
            while True:
                frame = await self.track.recv()
                item = self._convert(frame)
                if self.count == 0:
                    self._setReady(True)
                self.count += 1
                self._put_nowait(item)
        except MediaStreamError:
            log.debug("remote %s track ended", self.track.kind)
        finally:
            if not self.closed:
                self._close()

    def close(self) -> None:
        """Stops reading the track; the task ends (awaited by :meth:`aclose`)."""
        super().close()
        if self._task is not None:
            self._task.cancel()

    async def aclose(self) -> None:
        self.close()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)


class VideoReceiver(_TrackReceiver):
    """Frames of a remote video track, as BGR Frames (see the module docstring)."""

    def __init__(self, track: Any) -> None:
        super().__init__(track, MostRecentSubscription)

    def _convert(self, frame: Any) -> Frame:
        return Frame(frame.to_ndarray(format="bgr24"), time.monotonic(), self.count)


class AudioReceiver(_TrackReceiver):
    """Blocks of a remote audio track, as float32 AudioBlocks (see the module docstring)."""

    def __init__(self, track: Any) -> None:
        super().__init__(track, asyncio.Queue)
        self.samplerate: Optional[int] = None

    def _convert(self, frame: Any) -> AudioBlock:
        self.samplerate = frame.sample_rate
        channels = len(frame.layout.channels)
        data = frame.to_ndarray()
        if frame.format.is_planar:  # (channels, samples)
            samples = data.T
        else:  # packed: (1, samples * channels)
            samples = data.reshape(-1, channels)
        if samples.dtype == np.int16:
            block = samples.astype(np.float32) / 32768.0
        else:
            block = samples.astype(np.float32, copy=False)
        return AudioBlock(block, time.monotonic(), self.count)
