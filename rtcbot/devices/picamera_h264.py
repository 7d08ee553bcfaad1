"""H.264 straight from a Raspberry Pi camera's encoder: :class:`PiCamera2H264`.

The Pi's video encoder (the V4L2 codec at /dev/video11 on a Pi 4 and earlier; picamera2's libx264
encoder on a Pi 5, which has none) compresses the camera's frames; this producer hands out what it makes,
one :class:`~rtcbot.devices.encoded.EncodedVideoFrame` per frame, so WebRTC, a recording or Zenoh can send
it on without decoding or encoding anything in Python::

    import asyncio
    from rtcbot import PiCamera2
    from rtcbot.devices.picamera_h264 import PiCamera2H264

    async def main():
        with PiCamera2(width=640, height=480, fps=30) as camera, PiCamera2H264(camera, bitrate=2_000_000) as video:
            frame = await video.get()          # the first frame a subscription gets is a keyframe
            print(frame)                       # EncodedVideoFrame(h264 640x480 #0 key, 7301 bytes, t=0.000)

    asyncio.run(main())

The same camera keeps giving BGR frames to its own subscribers: one capture feeds both.
"""
from __future__ import annotations

import fcntl
import importlib
import logging
import struct
import threading
import time
from typing import Any, Callable, Optional

from rtcbot.base import ThreadedSubscriptionProducer
from rtcbot.devices.encoded import EncodedFrameQueue, EncodedVideoFrame
from rtcbot.devices.picamera import PiCamera2, import_picamera2
from rtcbot.errors import DeviceClosedError, MissingDependencyError

logger = logging.getLogger(__name__)

__all__ = ["PiCamera2H264"]

# <linux/videodev2.h>, <linux/v4l2-controls.h>: VIDIOC_S_CTRL = _IOWR('V', 28, struct v4l2_control), and the
# codec control that makes the next frame an IDR. picamera2 does not wrap it; the Pi's bcm2835-codec driver
# implements it (as MMAL's "request I-frame").
_VIDIOC_S_CTRL = 0xC008561C
_V4L2_CID_MPEG_VIDEO_FORCE_KEY_FRAME = 0x00990900 + 229

# A keyframe asked for and not seen for this long is asked for again (a lost request must not stick).
_KEYFRAME_REQUEST_EXPIRY = 1.0


def force_v4l2_key_frame(encoder: Any) -> bool:
    """Asks a picamera2 V4L2 encoder (its open device ``encoder.vd``) for an IDR next; False when the
    encoder has no such device or the driver refuses (libx264 on a Pi 5, an old kernel)."""
    device = getattr(encoder, "vd", None)
    if device is None or getattr(device, "closed", True):
        return False
    try:
        fcntl.ioctl(device, _VIDIOC_S_CTRL, bytearray(struct.pack("Ii", _V4L2_CID_MPEG_VIDEO_FORCE_KEY_FRAME, 1)))
    except (OSError, ValueError) as e:
        logger.debug("VIDIOC_S_CTRL(FORCE_KEY_FRAME) on %r failed: %s", device, e)
        return False
    return True


def _frame_output(output_class: Any, deliver: Callable[[Any, bool, Optional[int]], None]) -> Any:
    """A picamera2 ``Output`` (the encoder checks the class) whose ``outputframe`` calls ``deliver``, in the
    encoder's output thread."""

    class FrameOutput(output_class):  # type: ignore[misc, valid-type]
        def outputframe(
            self, frame: Any, keyframe: bool = True, timestamp: Optional[int] = None, packet: Any = None,
            audio: bool = False,
        ) -> None:
            if not audio and frame is not None:
                deliver(frame, keyframe, timestamp)

    return FrameOutput()


class PiCamera2H264(ThreadedSubscriptionProducer):
    """H.264 frames (:class:`~rtcbot.devices.encoded.EncodedVideoFrame`) from a :class:`~rtcbot.PiCamera2`'s
    encoder: no decoding, no encoding in Python.

    Subscriptions are :class:`~rtcbot.devices.encoded.EncodedFrameQueue` by default: bounded, and a reader
    that falls behind loses whole GOPs, never part of one, and asks for a keyframe::

        video = PiCamera2H264(camera, bitrate=2_000_000, keyframe_interval=60)
        frames = video.subscribe()            # EncodedFrameQueue(8, on_gap=video.request_keyframe)
        frame = await frames.get()            # .data (Annex-B bytes), .keyframe, .timestamp, .width, .height

    Parameters:
        camera: an open :class:`~rtcbot.PiCamera2`; its main stream (size, format) is what gets encoded. When
            the camera closes, this producer closes too.
        bitrate: bits per second; None lets picamera2 choose from the size and rate.
        keyframe_interval: frames from one IDR to the next (picamera2's ``iperiod``); default two seconds'
            worth. Every IDR carries SPS and PPS (``repeat=True``), so a new reader can start at any of them.
        profile: the H.264 profile picamera2 asks for; ``"baseline"`` is what every browser decodes.
        loop: the event loop subscribers run on (default: the running loop).

    :meth:`request_keyframe` makes the next frame an IDR (a browser joining, a PLI): on the Pi's V4L2
    encoder with the driver's force-key-frame control; where there is none (libx264 on a Pi 5), or the
    encoder ignores it (no keyframe within a second), by restarting the encoder, which costs a frame or
    two. Timestamps (seconds) come from the encoder (the sensor's clock, counted from the first frame) and
    keep increasing across restarts.
    """

    joinTimeout = 3.0  # stopping an encoder waits for its last frame
    _handoff_limit = 30  # a second of frames may wait for a busy event loop; then the encoder waits
    _handoff_block = True  # never drop a frame here: GOP-safe dropping happens per subscription

    def __init__(
        self,
        camera: PiCamera2,
        bitrate: Optional[int] = None,
        keyframe_interval: Optional[int] = None,
        profile: Optional[str] = "baseline",
        loop: Any = None,
    ) -> None:
        if bitrate is not None and (isinstance(bitrate, bool) or not isinstance(bitrate, int) or bitrate <= 0):
            raise ValueError(f"PiCamera2H264 bitrate must be a positive int (bits/s) or None, got {bitrate!r}")
        if keyframe_interval is None:
            keyframe_interval = max(1, int(round(2 * camera.fps)))
        if isinstance(keyframe_interval, bool) or not isinstance(keyframe_interval, int) or keyframe_interval < 1:
            raise ValueError(
                f"PiCamera2H264 keyframe_interval must be a positive int (frames), got {keyframe_interval!r}"
            )
        if camera.closed:
            raise DeviceClosedError(f"PiCamera2H264: {camera.describe()} is closed")
        import_picamera2()
        try:
            encoders = importlib.import_module("picamera2.encoders")
            outputs = importlib.import_module("picamera2.outputs")
        except ImportError as e:
            raise MissingDependencyError(
                f"PiCamera2H264 needs picamera2's encoders ({e}): update picamera2 (sudo apt install python3-picamera2)"
            ) from e
        self._camera = camera
        self._width, self._height = camera.width, camera.height
        self._frame_period = 1.0 / camera.fps
        self._encoder = self._make_encoder(encoders.H264Encoder, bitrate, keyframe_interval, profile)
        self._output = _frame_output(outputs.Output, self._on_encoded)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._keyframe_asked_at: Optional[float] = None
        self._use_v4l2_control = True
        self._v4l2_control_used = False
        self._previous_request_unanswered = False  # no keyframe came within the expiry of the last request
        self._index = 0
        self._timestamp_base = 0.0  # seconds added to the encoder's timestamps (it restarts from 0)
        self._last_timestamp: Optional[float] = None
        self._restarts = 0
        super().__init__(defaultSubscriptionType=EncodedFrameQueue, logger=logger, loop=loop)
        camera.onClose(self._camera_closed)

    @staticmethod
    def _make_encoder(h264_encoder: Any, bitrate: Optional[int], iperiod: int, profile: Optional[str]) -> Any:
        try:
            return h264_encoder(bitrate=bitrate, repeat=True, iperiod=iperiod, profile=profile)
        except TypeError:  # picamera2 older than 0.3.13 has no profile
            return h264_encoder(bitrate=bitrate, repeat=True, iperiod=iperiod)

    # ----------------------------------------------------------------- public

    @property
    def width(self) -> int:
        """Picture width in pixels (the camera's main stream)."""
        return self._width

    @property
    def height(self) -> int:
        """Picture height in pixels."""
        return self._height

    @property
    def restarts(self) -> int:
        """How many times the encoder was restarted to get a keyframe (no force-key-frame control)."""
        return self._restarts

    def subscribe(self, subscription: Any = None) -> Any:
        """Like every producer's; with no argument, an ``EncodedFrameQueue(8, on_gap=self.request_keyframe)``."""
        if subscription is None:
            subscription = EncodedFrameQueue(8, on_gap=self.request_keyframe)
        return super().subscribe(subscription)

    def request_keyframe(self) -> None:
        """Makes an IDR come as soon as possible. Callable from any thread, never blocks; requests made while
        one is pending are merged."""
        now = time.monotonic()
        with self._lock:
            asked = self._keyframe_asked_at
            if asked is not None and now - asked < _KEYFRAME_REQUEST_EXPIRY:
                return
            self._keyframe_asked_at = now
            self._previous_request_unanswered = asked is not None
        self._wake.set()

    def close(self) -> None:
        """Stops the encoder (its last frames still reach subscribers that are open) and closes."""
        self._shouldClose = True
        self._wake.set()
        super().close()

    # ----------------------------------------------------------------- the encoder's thread

    def _on_encoded(self, data: Any, keyframe: bool, timestamp_us: Optional[int]) -> None:
        if timestamp_us is None:  # picamera2 before 0.3.10 gave no timestamps
            timestamp = self._index * self._frame_period
        else:
            timestamp = self._timestamp_base + timestamp_us / 1e6
        frame = EncodedVideoFrame(
            bytes(data), bool(keyframe), timestamp, self._width, self._height, "h264", self._index
        )
        self._index += 1
        self._last_timestamp = timestamp
        if keyframe:
            with self._lock:
                self._keyframe_asked_at = None
        self._put_nowait(frame)
        if frame.index == 0:
            self._setReady(True)

    # ----------------------------------------------------------------- the worker thread

    def _producer(self) -> None:
        try:
            self._camera.start_encoder(self._encoder, self._output)
        except DeviceClosedError:
            return
        try:
            while True:
                self._wake.wait()
                self._wake.clear()
                if self._shouldClose:
                    return
                self._make_keyframe()
        except DeviceClosedError:  # the camera closed while the encoder restarted: so do we
            return
        finally:
            self._camera.stop_encoder(self._encoder)

    def _make_keyframe(self) -> None:
        with self._lock:
            ignored, self._previous_request_unanswered = self._previous_request_unanswered, False
        if self._use_v4l2_control and ignored and self._v4l2_control_used:
            self._use_v4l2_control = False
            logger.warning(
                "%s: the encoder took the force-key-frame control but made no keyframe within %.1f s; "
                "keyframes on request restart the encoder from now on",
                self._camera.describe(), _KEYFRAME_REQUEST_EXPIRY,
            )
        if self._use_v4l2_control:
            if force_v4l2_key_frame(self._encoder):
                self._v4l2_control_used = True
                return
            self._use_v4l2_control = False
            logger.info(
                "%s: the %s has no force-key-frame control; keyframes on request restart the encoder",
                self._camera.describe(), type(self._encoder).__name__,
            )
        self._camera.stop_encoder(self._encoder)  # its last frames are out when this returns
        last = self._last_timestamp
        if last is not None:
            self._timestamp_base = last + self._frame_period
        self._restarts += 1
        self._camera.start_encoder(self._encoder, self._output)

    def _camera_closed(self, _value: Any = None) -> None:
        if not self.closed:
            self.close()
