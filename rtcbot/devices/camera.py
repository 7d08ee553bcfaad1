"""OpenCV cameras: :class:`CVCamera`, and :class:`Frame`, the image type every rtcbot camera delivers.

A camera is a producer of BGR frames; by default a reader always gets the newest one::

    import asyncio
    from rtcbot import CVCamera

    async def main():
        with CVCamera(width=640, height=480) as camera:
            frame = await camera.get()
            print(frame.shape, frame.index, frame.timestamp)   # (480, 640, 3) 0 12345.678

    asyncio.run(main())
"""
from __future__ import annotations

import logging
import math
import os
import sys
import time
from typing import Any, Callable, Optional, Tuple, Union

import numpy as np

from rtcbot._deps import require
from rtcbot.base import ThreadedSubscriptionProducer
from rtcbot.base.bufferpool import BufferPool
from rtcbot.errors import DeviceLostError, DeviceOpenError
from rtcbot.subscriptions import MostRecentSubscription

from .frame import Frame
from .frame_emitter import FrameEmitter

logger = logging.getLogger(__name__)

__all__ = ["CVCamera", "Frame"]


Source = Union[int, str, "os.PathLike[str]"]

# An unpaced video file hands frames to the event loop in groups of this many (at most this many wait):
# each wake-up of the loop costs more than handing it a frame, and nobody watches such a file live.
_UNPACED_BATCH = 4


def _classify(cameranumber: Source) -> Tuple[Union[int, str], str]:
    """Returns (what to give VideoCapture, kind) with kind one of "device", "file", "stream"."""
    if isinstance(cameranumber, bool):
        raise TypeError(f"CVCamera cameranumber must be an int, a path or a URL, got {cameranumber!r}")
    if isinstance(cameranumber, int):
        return cameranumber, "device"
    if isinstance(cameranumber, os.PathLike):
        cameranumber = os.fspath(cameranumber)
    if not isinstance(cameranumber, str):
        raise TypeError(f"CVCamera cameranumber must be an int, a path or a URL, got {cameranumber!r}")
    if cameranumber.isdigit():
        return int(cameranumber), "device"
    if cameranumber.startswith("/dev/"):
        return cameranumber, "device"
    if "://" in cameranumber:
        return cameranumber, "stream"
    return cameranumber, "file"


def _open_advice(source: Union[int, str], kind: str) -> str:
    if kind == "file":
        if not os.path.exists(source):  # type: ignore[arg-type]
            return f"the file {source!r} does not exist; check the path"
        return (
            f"the file {source!r} exists but OpenCV cannot decode it; check it plays in another player and "
            "that your OpenCV build has FFmpeg (cv2.getBuildInformation())"
        )
    if kind == "stream":
        return (
            "check the URL is reachable from this machine and that your OpenCV build has FFmpeg or GStreamer "
            "(cv2.getBuildInformation())"
        )
    node = source if isinstance(source, str) else f"/dev/video{source}"
    return (
        f"check that {node} exists (ls /dev/video*; v4l2-ctl --list-devices lists which index is which "
        "camera), that your user is in the 'video' group (sudo usermod -aG video $USER, then log in again), "
        f"and that no other process holds the camera (fuser {node})"
    )


def _poolable_shape(image: Any) -> Tuple[Optional[Tuple[int, ...]], int]:
    """The shape and size of buffers ``cap.retrieve()`` can decode frames like ``image`` into: (None, 0) for
    an image that is no contiguous uint8 array (it keeps being allocated per frame)."""
    if image.dtype != np.uint8 or not image.flags.c_contiguous:
        return None, 0
    return image.shape, image.nbytes


def _video_capture(cv2: Any, source: Union[int, str], api: int) -> Any:
    """Opens a ``cv2.VideoCapture`` (one function, so tests can swap in a capture that fails on cue)."""
    return cv2.VideoCapture(source, api)


class CVCamera(FrameEmitter, ThreadedSubscriptionProducer):
    """A camera, video file or video stream read with OpenCV, producing BGR frames.

    Each frame is a :class:`Frame`: a ``numpy.ndarray`` of shape (height, width, 3), BGR order, that also
    carries ``frame.timestamp`` (``time.monotonic()`` at capture) and ``frame.index`` (0, 1, 2...). The
    default subscription is a :class:`~rtcbot.subscriptions.MostRecentSubscription`, so a slow reader gets
    the newest frame, never a stale one, and memory never grows::

        camera = CVCamera(width=640, height=480, fps=30)       # /dev/video0
        frame = await camera.get()
        camera.close()

        with CVCamera(cameranumber="walk.avi", repeat=True) as clip:   # a file, played at its frame rate
            display.putSubscription(clip)

    Parameters:
        width, height, fps: what to ask a camera for. The device may pick something else: the properties
            ``width``, ``height`` and ``fps`` say what it accepted, and a warning is logged when it differs.
            Files and streams deliver their own size and rate.
        cameranumber: a device index (0), a device path ("/dev/video0", "/dev/v4l/by-id/..."), a video file
            or a stream URL ("rtsp://...", "http://...").
        preprocessframe: called with each frame in the capture thread (resize, crop, detect...) before
            subscribers get what it returns; returning None skips that frame. An exception in it fires
            ``onError`` with that exception and stops the camera. A plain ndarray it returns gets the
            capture's ``timestamp`` and ``index`` back.
        loop: the asyncio loop subscribers run on (default: the running loop).
        repeat: a video file starts again at its end instead of closing the camera.
        pace: a video file is delivered at its own frame rate (True) or as fast as it decodes (False, for
            offline processing and benchmarks). Unpaced frames that decode less than 2 ms apart reach
            the event loop four at a time, which quarters the loop's wake-ups (at thousands of frames/s they
            cost more CPU than the hand-off itself); such a frame waits for the next ones' decode (10 ms
            at most), and up to four frames (not two) may wait for a busy loop.
        max_read_failures: reads in a row that may fail before the camera counts as lost: ``onError`` fires
            with :class:`~rtcbot.DeviceLostError` and the camera closes.

    The capture thread decodes into a few buffers that it reuses once nothing refers to them any more
    (no frame, slice, view or queue entry): a frame you keep is never overwritten, and frames you drop cost
    no fresh memory.

    Opening fails at once with :class:`~rtcbot.DeviceOpenError`, whose message says what to check. The
    end of a video file closes the camera cleanly (``await camera`` returns, ``camera.error`` is None).
    """

    def __init__(
        self,
        width: int = 320,
        height: int = 240,
        cameranumber: Source = 0,
        fps: float = 30,
        preprocessframe: Callable[[Frame], Any] = lambda x: x,
        loop: Any = None,
        *,
        repeat: bool = False,
        pace: bool = True,
        max_read_failures: int = 5,
    ) -> None:
        if max_read_failures < 1:
            raise ValueError(f"CVCamera max_read_failures must be at least 1, got {max_read_failures!r}")
        if fps <= 0:
            raise ValueError(f"CVCamera fps must be positive, got {fps!r}")
        self._cv2 = require("cv2")
        self._video_source, self._kind = _classify(cameranumber)
        self._preprocessframe = preprocessframe
        self._repeat_file = repeat
        self._pace = pace
        self._max_read_failures = max_read_failures
        self._frame_count = 0
        if self._kind == "file" and not pace:
            self._handoff_limit = _UNPACED_BATCH  # read by the hand-off the base class makes
        self._cap: Any = self._open(width, height, fps)
        try:
            super().__init__(defaultSubscriptionType=MostRecentSubscription, logger=logger, loop=loop)
        except BaseException:
            # The worker that owns the capture never started; release it here instead.
            self._cap.release()
            raise
        if self._kind == "file" and not pace:
            self._set_handoff_batching(True)

    # ----------------------------------------------------------------- opening

    def _open(self, width: int, height: int, fps: float) -> Any:
        """Opens the capture and settles the actual size and rate (runs in the constructor: fail fast)."""
        cv2 = self._cv2
        api = cv2.CAP_V4L2 if self._kind == "device" and sys.platform.startswith("linux") else cv2.CAP_ANY
        cap = _video_capture(cv2, self._video_source, api)
        if not cap.isOpened():
            cap.release()
            raise DeviceOpenError(
                f"CVCamera could not open {self.describe()}: {_open_advice(self._video_source, self._kind)}"
            )
        try:
            if self._kind == "device":
                # A one-frame driver queue: a slow reader must not be served frames captured long ago.
                cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
                cap.set(cv2.CAP_PROP_FPS, fps)
            self._width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
            self._height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
            reported = cap.get(cv2.CAP_PROP_FPS)
            self._fps = float(reported) if math.isfinite(reported) and reported > 0 else float(fps)
        except BaseException:
            cap.release()
            raise
        if self._kind == "device":
            same_fps = math.isclose(self._fps, fps, rel_tol=0.02)
            if (self._width, self._height) != (width, height) or not same_fps:
                logger.warning(
                    "%s gives %dx%d at %.4g fps; %dx%d at %.4g fps was asked",
                    self.describe(), self._width, self._height, self._fps, width, height, fps,
                )
        else:
            logger.info("%s: %dx%d at %.4g fps", self.describe(), self._width, self._height, self._fps)
        return cap

    def describe(self) -> str:
        """Names the source in messages: ``camera 0``, ``video file 'walk.avi'``..."""
        if self._kind == "device":
            return f"camera {self._video_source!r}"
        return f"video {self._kind} {self._video_source!r}"

    # ----------------------------------------------------------------- the capture thread

    def _producer(self) -> None:
        cap = self._cap
        try:
            self._capture(cap)
        finally:
            cap.release()

    def _capture(self, cap: Any) -> None:
        period = 1.0 / self._fps if (self._kind == "file" and self._pace) else 0.0
        deadline = time.monotonic()
        failures = 0
        frames_since_rewind = 0
        # Frames are decoded into recycled buffers (a fresh array per frame is memory the allocator often has
        # to fault in again: tens of page faults per 640x480 frame). A buffer is reused only once nothing
        # refers to it, so a frame a subscriber keeps is never overwritten. In use at once: the frames the
        # loop is delivering and as many waiting in the hand-off, one a MostRecentSubscription holds, and the
        # one being decoded. Only OpenCV's own capture is known to decode into the array it is given.
        slots = 2 * self._handoff_limit + 2
        pool = BufferPool(slots=slots) if isinstance(cap, self._cv2.VideoCapture) else None
        shape: Optional[Tuple[int, ...]] = None  # of the decoded frames, once known: the pooled buffers' shape
        nbytes = 0
        while not self._shouldClose:
            if period:
                # Release frame k at start + k * period, waiting on close (not sleeping); a reader that
                # fell more than a frame behind restarts the schedule instead of bursting to catch up.
                now = time.monotonic()
                if deadline > now:
                    if self._wait_closed(deadline - now):
                        return
                elif now - deadline > period:
                    deadline = now
                deadline += period
            ok = cap.grab()
            timestamp = time.monotonic()
            if ok:
                if shape is None:
                    ok, image = cap.retrieve()
                else:
                    ok, image = cap.retrieve(pool.take(nbytes).reshape(shape))  # type: ignore[union-attr]
            if not ok:
                if self._kind == "file":
                    if self._repeat_file and frames_since_rewind > 0:
                        cap.set(self._cv2.CAP_PROP_POS_FRAMES, 0)
                        frames_since_rewind = 0
                        continue
                    # Returning ends the worker; the base class then closes the camera, once this thread
                    # has released the file, so `await camera` sees no thread left behind.
                    logger.info("%s ended after %d frames", self.describe(), self._frame_count)
                    return
                failures += 1
                if failures >= self._max_read_failures:
                    raise DeviceLostError(
                        f"{self.describe()} returned no frame {failures} times in a row: it was unplugged, "
                        "its driver reset, or another process took it; check dmesg and the cable"
                    )
                if self._wait_closed(1.0 / self._fps):
                    return
                continue
            failures = 0
            frames_since_rewind += 1
            if pool is not None and image.shape != shape:
                shape, nbytes = _poolable_shape(image)
            self._emit_frame(image, timestamp)
            del image  # its buffer is free again once the subscribers are done with the frame
