"""Raspberry Pi CSI cameras through picamera2: :class:`PiCamera2`.

Same interface and frames as :class:`~rtcbot.CVCamera`::

    import asyncio
    from rtcbot import PiCamera2

    async def main():
        with PiCamera2(width=640, height=480, vflip=True) as camera:
            frame = await camera.get()       # BGR, shape (480, 640, 3), with .timestamp and .index
            print(frame.shape, frame.index)

    asyncio.run(main())

picamera2 comes with Raspberry Pi OS (``sudo apt install python3-picamera2``); a virtualenv needs
``--system-site-packages`` to see it.
"""
from __future__ import annotations

import logging
import math
import time
from typing import Any, Callable, Dict, List, Optional

from rtcbot._deps import require
from rtcbot.base import ThreadedSubscriptionProducer
from rtcbot.devices.camera import Frame, _FrameEmitter
from rtcbot.errors import DeviceLostError, DeviceOpenError
from rtcbot.subscriptions import MostRecentSubscription

logger = logging.getLogger(__name__)

__all__ = ["PiCamera2"]

# picamera2 names formats after libcamera/DRM, which list channels from the most significant byte of a
# little-endian word: "RGB888" is stored B, G, R in memory, exactly OpenCV's BGR, so no conversion is needed.
# (picamera2 itself turns "RGB888" into a PIL image with raw mode "BGR".)
_BGR_FORMAT = "RGB888"

_CSI_ADVICE = (
    "check the ribbon cable is seated (contacts facing the right way, both ends), that "
    "`rpicam-hello --list-cameras` lists the camera, and that camera_auto_detect=1 is in "
    "/boot/firmware/config.txt (legacy camera support off)"
)


def _describe_cameras(cameras: List[Dict[str, Any]]) -> str:
    return ", ".join(f"{num}: {info.get('Model', '?')}" for num, info in enumerate(cameras)) or "none"


class PiCamera2(_FrameEmitter, ThreadedSubscriptionProducer):
    """A Raspberry Pi CSI camera (picamera2/libcamera) producing BGR frames, like :class:`~rtcbot.CVCamera`.

    Frames are :class:`~rtcbot.devices.camera.Frame` arrays of shape (height, width, 3) in BGR order;
    ``frame.timestamp`` is the sensor's own timestamp (``SensorTimestamp``, the start of the frame's
    readout, on the ``time.monotonic()`` clock) when the metadata has one, else the time the frame
    arrived. The default subscription keeps only the newest frame::

        camera = PiCamera2(width=640, height=480, fps=30, cameranumber=1)   # the second camera of a Pi 5
        frame = await camera.get()

    Parameters:
        width, height, fps: the video configuration to ask for. ``width``, ``height`` and ``fps`` (properties)
            say what the camera delivers; a warning is logged when it differs from what was asked.
        cameranumber: which camera, in ``Picamera2.global_camera_info()`` order (0 or 1 on a Pi 5).
        hflip, vflip: mirror the image horizontally / vertically, done by the ISP at no cost (both: 180 deg).
        preprocessframe: called with each frame in the capture thread; see :class:`~rtcbot.CVCamera`.
        loop: the asyncio loop subscribers run on (default: the running loop).
        max_read_failures: frames in a row that may fail to arrive (each waited for ``frame_timeout``)
            before ``onError`` fires with :class:`~rtcbot.DeviceLostError` and the camera closes.

    The camera is opened, configured and started in the constructor, so a missing or busy camera fails at
    once with :class:`~rtcbot.DeviceOpenError`. Ready fires when the first frame has arrived.
    """

    #: Seconds to wait for one frame before counting a failure; None: ``max(1 s, 3 frame periods)``.
    frame_timeout: Optional[float] = None

    def __init__(
        self,
        width: int = 320,
        height: int = 240,
        cameranumber: int = 0,
        fps: float = 30,
        hflip: bool = False,
        vflip: bool = False,
        preprocessframe: Callable[[Frame], Any] = lambda x: x,
        loop: Any = None,
        *,
        max_read_failures: int = 5,
    ) -> None:
        if max_read_failures < 1:
            raise ValueError(f"PiCamera2 max_read_failures must be at least 1, got {max_read_failures!r}")
        if fps <= 0:
            raise ValueError(f"PiCamera2 fps must be positive, got {fps!r}")
        picamera2 = require("picamera2")
        libcamera = require("libcamera")
        self._camera_number = cameranumber
        self._model = "?"
        self._preprocessframe = preprocessframe
        self._max_read_failures = max_read_failures
        self._frame_count = 0
        self._requested_fps = float(fps)
        self._fps = float(fps)
        self._picam: Any = self._open(picamera2, libcamera, width, height, fps, hflip, vflip)
        try:
            super().__init__(defaultSubscriptionType=MostRecentSubscription, logger=logger, loop=loop)
        except BaseException:
            # The worker that owns the camera never started; release it here instead.
            self._picam.close()
            raise

    # ----------------------------------------------------------------- opening

    def _open(
        self, picamera2: Any, libcamera: Any, width: int, height: int, fps: float, hflip: bool, vflip: bool
    ) -> Any:
        """Opens, configures and starts the camera (in the constructor: fail fast)."""
        number = self._camera_number
        cameras = picamera2.Picamera2.global_camera_info()
        if not cameras:
            raise DeviceOpenError(f"PiCamera2 found no CSI camera (picamera2 lists none): {_CSI_ADVICE}")
        if not isinstance(number, int) or not 0 <= number < len(cameras):
            raise DeviceOpenError(
                f"PiCamera2 has no camera {number!r}: picamera2 lists {_describe_cameras(cameras)}; "
                "cameranumber counts from 0 in that order"
            )
        self._model = str(cameras[number].get("Model", "?"))
        try:
            camera = picamera2.Picamera2(number)
        except Exception as e:
            raise DeviceOpenError(
                f"PiCamera2 could not open {self.describe()}: {e}. Check that no other process uses it "
                "(rpicam-/libcamera- apps, another Picamera2 or rtcbot PiCamera2: `fuser /dev/media*`), "
                f"and {_CSI_ADVICE}"
            ) from e
        try:
            frame_us = int(round(1e6 / fps))
            config = camera.create_video_configuration(
                main={"size": (int(width), int(height)), "format": _BGR_FORMAT},
                controls={"FrameDurationLimits": (frame_us, frame_us)},
                transform=libcamera.Transform(hflip=int(bool(hflip)), vflip=int(bool(vflip))),
            )
            camera.configure(config)
            self._width, self._height = (int(v) for v in camera.camera_config["main"]["size"])
            camera.start()
        except Exception as e:
            camera.close()
            raise DeviceOpenError(
                f"PiCamera2 could not start {self.describe()} at {width}x{height}, {fps:.4g} fps: {e}. Check "
                "the size and rate are ones the sensor supports (`rpicam-hello --list-cameras`) and that "
                "no other process uses the camera"
            ) from e
        if (self._width, self._height) != (width, height):
            logger.warning(
                "%s gives %dx%d; %dx%d was asked", self.describe(), self._width, self._height, width, height
            )
        return camera

    def describe(self) -> str:
        """Names the camera in messages: ``CSI camera 0 (imx708)``."""
        return f"CSI camera {self._camera_number} ({self._model})"

    # ----------------------------------------------------------------- the capture thread

    def _producer(self) -> None:
        camera = self._picam
        try:
            self._capture(camera)
        finally:
            camera.close()  # stops it too

    def _capture(self, camera: Any) -> None:
        wait = self.frame_timeout or max(1.0, 3.0 / self._requested_fps)
        failures = 0
        while not self._shouldClose:
            try:
                request = camera.capture_request(wait=wait)
            except TimeoutError:
                failures += 1
                if failures >= self._max_read_failures:
                    raise DeviceLostError(
                        f"{self.describe()} sent no frame for {failures * wait:.1f} s ({failures} waits in a "
                        f"row): the cable came loose or the camera stalled; check dmesg, and {_CSI_ADVICE}"
                    ) from None
                continue
            except Exception as e:
                if self._shouldClose:
                    return
                raise DeviceLostError(f"{self.describe()} failed while capturing: {e}") from e
            try:
                image = request.make_array("main")
                metadata = request.get_metadata()
            finally:
                request.release()
            failures = 0
            if self._frame_count == 0:
                self._check_rate(metadata)
            self._emit_frame(image, self._timestamp(metadata))

    def _timestamp(self, metadata: Dict[str, Any]) -> float:
        sensor_ns: Optional[int] = metadata.get("SensorTimestamp")
        if sensor_ns:
            return sensor_ns / 1e9  # CLOCK_MONOTONIC, the clock of time.monotonic()
        return time.monotonic()

    def _check_rate(self, metadata: Dict[str, Any]) -> None:
        duration_us = metadata.get("FrameDuration")
        if not duration_us:
            return
        self._fps = 1e6 / float(duration_us)
        if not math.isclose(self._fps, self._requested_fps, rel_tol=0.02):
            logger.warning(
                "%s runs at %.4g fps; %.4g fps was asked", self.describe(), self._fps, self._requested_fps
            )
