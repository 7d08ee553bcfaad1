"""SharedVideoEncoder: encode a camera once, for every viewer.

Each aiortc connection normally encodes its own copy of the video; with several browsers watching one camera
that is one full encode per browser. A :class:`SharedVideoEncoder` subscribes to the camera once, encodes
each frame once (VP8 or H.264, with PyAV, in its own thread), and produces
:class:`~rtcbot.devices.encoded.EncodedVideoFrame` s that any number of connections pass through unchanged::

    encoder = SharedVideoEncoder(camera, codec="vp8")
    conn.video.putSubscription(encoder)       # in each connection; the codec is negotiated to match
    ...
    await encoder.aclose()

It encodes only while someone subscribes. A viewer that joins, or misses a packet, asks for a keyframe
(:meth:`request_keyframe`); there is also one every ``keyframe_interval`` seconds.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import fractions
import logging
import time
from typing import Any, List, Optional

import numpy as np

from ..base import SubscriptionClosed, SubscriptionProducer
from ..devices.encoded import EncodedFrameQueue, EncodedVideoFrame
from ..subscriptions import MostRecentSubscription
from ._require import require_web as require
from .tracks import VIDEO_CLOCK

__all__ = ["SharedVideoEncoder"]

log = logging.getLogger("rtcbot.web.encoder")

_CODECS = {"vp8": "libvpx", "h264": "libx264"}


class SharedVideoEncoder(SubscriptionProducer):
    """Encodes frames of ``source`` (a producer of BGR frames) once, for all its subscribers.

    ``codec`` is ``"vp8"`` or ``"h264"`` (the connection negotiates it); ``bitrate`` in bits/s. Each
    subscriber gets an :class:`~rtcbot.devices.encoded.EncodedFrameQueue` (a slow one loses whole GOPs and
    resumes at a keyframe, which it asks for).
    """

    _task: Optional[asyncio.Task[None]] = None
    _executor: Optional[concurrent.futures.ThreadPoolExecutor] = None

    def __init__(
        self,
        source: Any,
        codec: str = "vp8",
        bitrate: int = 1_500_000,
        keyframe_interval: float = 10.0,
    ) -> None:
        if codec not in _CODECS:
            raise ValueError(f"SharedVideoEncoder codec must be one of {sorted(_CODECS)}, got {codec!r}")
        super().__init__(lambda: EncodedFrameQueue(30, on_gap=self.request_keyframe), logger=log)
        self.av = require("av")
        self.codec = codec
        self.codec_name = _CODECS[codec]
        self.bitrate = int(bitrate)
        self.keyframe_interval = float(keyframe_interval)
        self.encoded = 0  # frames encoded (for tests and benchmarks)
        self._source = source
        self._frames = source.subscribe(MostRecentSubscription())
        self._viewers = 0
        self._wanted = asyncio.Event()
        self._keyframe_wanted = True
        self._last_keyframe = 0.0
        self._context: Any = None
        self._start: Optional[float] = None
        self._index = 0
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="rtcbot-encode")
        self._task = asyncio.get_running_loop().create_task(self._run(), name="rtcbot-shared-encoder")

    # -- who is watching -----------------------------------------------------------------------------
    def subscribe(self, subscription: Any = None) -> Any:
        result = super().subscribe(subscription)
        self._viewers += 1
        self._wanted.set()
        self.request_keyframe()
        return result

    def unsubscribe(self, subscription: Any = None) -> None:
        super().unsubscribe(subscription)
        self._viewers = max(0, self._viewers - 1)
        if self._viewers == 0:
            self._wanted.clear()

    def request_keyframe(self) -> None:
        """Make the next encoded frame a keyframe (a viewer joined or lost a packet)."""
        self._keyframe_wanted = True

    # -- encoding ------------------------------------------------------------------------------------
    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                await self._wanted.wait()
                frame = await self._frames.get()
                if not self._wanted.is_set():
                    continue
                now = time.monotonic()
                keyframe = self._keyframe_wanted or now - self._last_keyframe >= self.keyframe_interval
                if keyframe:
                    self._keyframe_wanted = False
                    self._last_keyframe = now
                packets = await loop.run_in_executor(self._executor, self._encode, frame, keyframe)
                height, width = np.shape(frame)[:2]
                timestamp = getattr(frame, "timestamp", None)
                for packet in packets:
                    self._put_nowait(
                        EncodedVideoFrame(
                            bytes(packet),
                            bool(packet.is_keyframe),
                            time.monotonic() if timestamp is None else timestamp,
                            width,
                            height,
                            self.codec,
                            self._index,
                        )
                    )
                    self._index += 1
        except SubscriptionClosed:
            pass
        except Exception as e:
            log.exception("shared %s encoder stopped", self.codec)
            self._setError(e)

    def _encode(self, image: Any, keyframe: bool) -> List[Any]:
        """Runs in the encoder thread: one frame in, its packets out."""
        av = self.av
        array = np.asarray(image)
        if not array.flags.c_contiguous:
            array = np.ascontiguousarray(array)
        height, width = array.shape[:2]
        context = self._context
        if context is None or context.width != width or context.height != height:
            context = self._context = self._open(width, height)
            keyframe = True
        frame = av.VideoFrame.from_numpy_buffer(array, format="bgr24").reformat(format="yuv420p")
        timestamp = getattr(image, "timestamp", None)
        timestamp = time.monotonic() if timestamp is None else timestamp
        if self._start is None:
            self._start = timestamp
        frame.pts = int(round((timestamp - self._start) * VIDEO_CLOCK))
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        if keyframe:
            frame.pict_type = av.video.frame.PictureType.I
        packets = list(context.encode(frame))
        for packet in packets:
            packet.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        self.encoded += 1
        return packets

    def _open(self, width: int, height: int) -> Any:
        context = self.av.CodecContext.create(self.codec_name, "w")
        context.width = width
        context.height = height
        context.pix_fmt = "yuv420p"
        context.bit_rate = self.bitrate
        context.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        context.gop_size = 100000  # keyframes only when asked (and every keyframe_interval)
        if self.codec_name == "libvpx":
            context.options = {
                "deadline": "realtime",
                "cpu-used": "-6",
                "lag-in-frames": "0",
                "static-thresh": "1",
                "undershoot-pct": "100",
                "overshoot-pct": "15",
                "bufsize": str(self.bitrate),
                "minrate": str(self.bitrate),
                "maxrate": str(self.bitrate),
            }
            context.qmin, context.qmax = 2, 56
        else:
            context.options = {"preset": "ultrafast", "tune": "zerolatency", "profile": "baseline", "level": "31"}
        context.thread_count = 1
        return context

    # -- closing -------------------------------------------------------------------------------------
    def close(self) -> None:
        """Stops encoding and unsubscribes from the source; :meth:`aclose` also waits for the thread."""
        if self._task is not None:
            self._task.cancel()
        if getattr(self, "_source", None) is not None:
            self._source.unsubscribe(self._frames)
        super().close()

    async def aclose(self) -> None:
        self.close()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        if self._executor is not None:
            await asyncio.to_thread(self._executor.shutdown, True)
