"""Raspberry Pi CSI cameras through picamera2: :class:`PiCamera2`.

Same interface and frames as :class:`~rtcbot.CVCamera`::

    import asyncio
    from rtcbot import PiCamera2

    async def main():
        with PiCamera2(width=640, height=480, vflip=True) as camera:
            frame = await camera.get()       # BGR, shape (480, 640, 3), with .timestamp and .index
            print(frame.shape, frame.index)

    asyncio.run(main())

For the camera's hardware H.264 (WebRTC without encoding in Python), attach
:class:`~rtcbot.devices.picamera_h264.PiCamera2H264` to the open camera: ``PiCamera2H264(camera)``.

picamera2 comes with Raspberry Pi OS (``sudo apt install python3-picamera2``); a virtualenv needs
``--system-site-packages`` to see it, and then must not install its own numpy 2.x over apt's (importing
picamera2 fails with "numpy.dtype size changed": ``pip uninstall numpy`` in the virtualenv).
"""
from __future__ import annotations

import concurrent.futures
import logging
import math
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from rtcbot._deps import require
from rtcbot.base import ThreadedSubscriptionProducer
from rtcbot.devices.frame import Frame
from rtcbot.devices.frame_emitter import FrameEmitter
from rtcbot.errors import DeviceClosedError, DeviceLostError, DeviceOpenError, MissingDependencyError
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
_USB_ADVICE = (
    "check the webcam is plugged in (`lsusb`) and that no other program uses it; a USB webcam can also be "
    "opened directly with CVCamera, usually at less CPU cost"
)


def numpy_mismatch_advice(error: BaseException) -> str:
    """What to do when importing picamera2 fails with ``ValueError: numpy.dtype size changed``: pip's numpy
    (2.x) in a ``--system-site-packages`` venv shadows the numpy apt's simplejpeg/picamera2 were built for."""
    return (
        f"importing picamera2 failed ({error}): its apt-installed parts (simplejpeg, picamera2) were built for "
        "apt's numpy, and a different numpy from pip is loaded instead. In this virtualenv run "
        "`pip uninstall numpy` (apt's python3-numpy is then used), or `pip install 'numpy<2'`"
    )


def import_picamera2() -> Tuple[Any, Any]:
    """The picamera2 and libcamera modules, or :class:`~rtcbot.MissingDependencyError` saying what to do."""
    try:
        return require("picamera2"), require("libcamera")
    except ValueError as e:  # "numpy.dtype size changed, may indicate binary incompatibility"
        raise MissingDependencyError(f"PiCamera2: {numpy_mismatch_advice(e)}") from e


def _is_usb(info: Dict[str, Any]) -> bool:
    """libcamera lists UVC webcams too (picamera2 puts them last); their id has a USB path."""
    return "/usb" in str(info.get("Id", ""))


def _describe_cameras(cameras: List[Dict[str, Any]]) -> str:
    return ", ".join(
        f"{num}: {info.get('Model', '?')}{' (USB)' if _is_usb(info) else ''}" for num, info in enumerate(cameras)
    ) or "none"


class _OpenCameras:
    """The cameras PiCamera2 objects of this process hold, by libcamera id. picamera2 must never be asked to
    open one of them a second time: the failed object takes over the first one's frames."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holders: Dict[str, str] = {}

    def claim(self, camera_id: str, holder: str) -> None:
        with self._lock:
            if camera_id in self._holders:
                raise DeviceOpenError(
                    f"PiCamera2 cannot open {holder}: it is already open in this process "
                    f"({self._holders[camera_id]}). Use the open camera: subscribe to it as many times as you "
                    "need (camera.subscribe()), or close it first"
                )
            self._holders[camera_id] = holder

    def release(self, camera_id: str) -> None:
        with self._lock:
            self._holders.pop(camera_id, None)


_open_cameras = _OpenCameras()


# Conversions to BGR of what make_array() gives for each format libcamera may choose instead of RGB888.
def _yuyv_to_bgr(image: np.ndarray) -> np.ndarray:
    """picamera2's YUYV array, shape (h, w, 2), to BGR (BT.601, limited range), with OpenCV when there."""
    cv2: Any
    try:
        import cv2
    except ImportError:
        cv2 = None
    if cv2 is not None:
        return cv2.cvtColor(image, cv2.COLOR_YUV2BGR_YUYV)
    y = image[..., 0].astype(np.float32) - 16.0
    chroma = image[..., 1].astype(np.float32) - 128.0
    u = np.repeat(chroma[:, 0::2], 2, axis=1)
    v = np.repeat(chroma[:, 1::2], 2, axis=1)
    bgr = np.stack([1.164 * y + 2.017 * u, 1.164 * y - 0.392 * u - 0.813 * v, 1.164 * y + 1.596 * v], axis=-1)
    return np.clip(bgr + 0.5, 0, 255).astype(np.uint8)


_TO_BGR: Dict[str, Optional[Callable[[np.ndarray], np.ndarray]]] = {
    "RGB888": None,  # already B, G, R in memory
    "BGR888": lambda a: np.ascontiguousarray(a[..., ::-1]),
    "XRGB8888": lambda a: np.ascontiguousarray(a[..., :3]),
    "XBGR8888": lambda a: np.ascontiguousarray(a[..., 2::-1]),
    "YUYV": _yuyv_to_bgr,
    "MJPEG": lambda a: np.ascontiguousarray(a[..., ::-1]),  # picamera2 decodes MJPEG with PIL: R, G, B
}


class PiCamera2(FrameEmitter, ThreadedSubscriptionProducer):
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
        cameranumber: which camera, in ``Picamera2.global_camera_info()`` order (0 or 1 on a Pi 5), the
            ``N`` of ``csi:N`` in ``rtcbot devices``. libcamera lists USB webcams too, after the CSI cameras:
            one opens (its YUYV/MJPEG frames converted to BGR), though CVCamera reads a webcam more cheaply.
        hflip, vflip: mirror the image horizontally / vertically, done by the ISP at no cost (both: 180 deg).
        preprocessframe: called with each frame in the capture thread; see :class:`~rtcbot.CVCamera`.
        loop: the asyncio loop subscribers run on (default: the running loop).
        max_read_failures: frames in a row that may fail to arrive (each waited for ``frame_timeout``)
            before ``onError`` fires with :class:`~rtcbot.DeviceLostError` and the camera closes.

    The camera is opened, configured and started in the constructor, so a missing or busy camera fails at
    once with :class:`~rtcbot.DeviceOpenError`, as does a camera this process already has open (share that
    one: subscribe to it again). Ready fires when the first frame has arrived. What libcamera really chose is
    read back: a smaller size or rate than asked is reported (``width``, ``fps``...), and a flip the sensor
    cannot do is done in software, with a warning.
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
        picamera2, libcamera = import_picamera2()
        self._camera_number = cameranumber
        self._model = "?"
        self._usb = False
        self._camera_id = ""
        self._preprocessframe = preprocessframe
        self._max_read_failures = max_read_failures
        self._frame_count = 0
        self._requested_fps = float(fps)
        self._fps = float(fps)
        self._to_bgr: Optional[Callable[[np.ndarray], np.ndarray]] = None
        self._software_flip: Tuple[bool, bool] = (False, False)
        self._closing = threading.Event()
        self._encoders_lock = threading.Lock()
        self._encoders: Optional[List[Any]] = []  # encoders started by start_encoder(); None once released
        self._picam: Any = None
        self._picam = self._open(picamera2, libcamera, width, height, fps, hflip, vflip)
        try:
            super().__init__(defaultSubscriptionType=MostRecentSubscription, logger=logger, loop=loop)
        except BaseException:
            # The worker that owns the camera never started; release it here instead.
            self._release(self._picam)
            raise

    # ----------------------------------------------------------------- opening

    def _open(
        self, picamera2: Any, libcamera: Any, width: int, height: int, fps: float, hflip: bool, vflip: bool
    ) -> Any:
        """Opens, configures and starts the camera (in the constructor: fail fast)."""
        number = self._camera_number
        cameras = picamera2.Picamera2.global_camera_info()
        if not cameras:
            raise DeviceOpenError(
                f"PiCamera2 found no camera (picamera2 lists none). For a CSI camera, {_CSI_ADVICE}. A USB "
                "webcam is listed too once plugged in, or open it with CVCamera"
            )
        if isinstance(number, bool) or not isinstance(number, int) or not 0 <= number < len(cameras):
            raise DeviceOpenError(
                f"PiCamera2 has no camera {number!r}: picamera2 lists {_describe_cameras(cameras)}; "
                "cameranumber counts from 0 in that order"
            )
        info = cameras[number]
        self._model = str(info.get("Model", "?"))
        self._usb = _is_usb(info)
        if self._usb:
            logger.info(
                "%s is a USB webcam seen through libcamera (picamera2 lists them after CSI cameras)", self.describe()
            )
        # Refused before picamera2 sees it: a second Picamera2 for a camera this process holds fails, and
        # leaves picamera2 giving the first, working object's frames to the failed one.
        _open_cameras.claim(str(info.get("Id", number)), self.describe())
        self._camera_id = str(info.get("Id", number))
        try:
            camera = picamera2.Picamera2(number)
        except Exception as e:
            _open_cameras.release(self._camera_id)
            raise DeviceOpenError(
                f"PiCamera2 could not open {self.describe()}: {e}. Check that no other process uses it "
                "(rpicam-/libcamera- apps, another Picamera2 or rtcbot PiCamera2: `fuser /dev/media*`), "
                f"and {self._advice()}"
            ) from e
        try:
            self._configure(camera, libcamera, width, height, fps, hflip, vflip)
            camera.start()
        except Exception as e:
            self._release(camera)
            if isinstance(e, DeviceOpenError):
                raise
            raise DeviceOpenError(
                f"PiCamera2 could not start {self.describe()} at {width}x{height}, {fps:.4g} fps: {e}. Check "
                "the size and rate are ones the camera supports (`rpicam-hello --list-cameras`) and that "
                "no other process uses the camera"
            ) from e
        return camera

    def _configure(
        self, camera: Any, libcamera: Any, width: int, height: int, fps: float, hflip: bool, vflip: bool
    ) -> None:
        """Asks for BGR at the size, rate and flips wanted, then reads back what libcamera chose."""
        frame_us = int(round(1e6 / fps))
        config = camera.create_video_configuration(
            main={"size": (int(width), int(height)), "format": _BGR_FORMAT},
            controls={"FrameDurationLimits": (frame_us, frame_us)},
            transform=libcamera.Transform(hflip=int(bool(hflip)), vflip=int(bool(vflip))),
        )
        camera.configure(config)
        chosen = camera.camera_config
        main = chosen["main"]
        self._width, self._height = (int(v) for v in main["size"])
        if (self._width, self._height) != (width, height):
            logger.warning(
                "%s gives %dx%d; %dx%d was asked", self.describe(), self._width, self._height, width, height
            )
        fmt = str(main.get("format", _BGR_FORMAT))
        if fmt not in _TO_BGR:
            raise DeviceOpenError(
                f"PiCamera2: {self.describe()} delivers {fmt!r}, which rtcbot cannot turn into BGR"
                + ("; open the webcam with CVCamera instead" if self._usb else "")
            )
        self._to_bgr = _TO_BGR[fmt]
        if fmt != _BGR_FORMAT:
            logger.warning(
                "%s delivers %s instead of %s (as USB webcams do through libcamera): converting each frame to "
                "BGR in the capture thread%s",
                self.describe(), fmt, _BGR_FORMAT, "; CVCamera reads a webcam at less cost" if self._usb else "",
            )
        transform = chosen.get("transform")
        got = (bool(getattr(transform, "hflip", False)), bool(getattr(transform, "vflip", False)))
        self._software_flip = (got[0] != bool(hflip), got[1] != bool(vflip))
        if any(self._software_flip):
            logger.warning(
                "%s cannot flip the image itself (hflip=%s, vflip=%s asked; libcamera chose %r): flipping "
                "each frame in software, which costs a copy per frame",
                self.describe(), bool(hflip), bool(vflip), transform,
            )

    def _advice(self) -> str:
        return _USB_ADVICE if self._usb else _CSI_ADVICE

    def describe(self) -> str:
        """Names the camera in messages: ``CSI camera 0 (imx708)``, ``USB camera 1 (HD Webcam C270)``."""
        return f"{'USB' if self._usb else 'CSI'} camera {self._camera_number} ({self._model})"

    def _release(self, camera: Any) -> None:
        """Stops its encoders, closes the picamera2 object and gives the camera back to this process."""
        try:
            with self._encoders_lock:
                encoders, self._encoders = self._encoders or [], None
            for encoder in encoders:
                self._stop_encoder(camera, encoder)
            camera.close()
        finally:
            _open_cameras.release(self._camera_id)

    # ----------------------------------------------------------------- encoders (hardware H.264)

    def start_encoder(self, encoder: Any, output: Any) -> None:
        """Starts a picamera2 encoder on this camera's main stream, writing to a picamera2 ``Output``.

        The hook :class:`~rtcbot.devices.picamera_h264.PiCamera2H264` uses: the camera's frames go both to
        its BGR subscribers and to the encoder, and the encoder is stopped before the camera closes. Blocks
        while the encoder starts: call it off the event loop. Raises :class:`~rtcbot.DeviceClosedError`
        once the camera is closed.
        """
        with self._encoders_lock:
            if self._encoders is None or self._stopping():
                raise DeviceClosedError(f"{self.describe()} is closed: no encoder can start on it")
            try:
                self._picam.start_encoder(encoder, output)
            except Exception as e:
                raise DeviceOpenError(
                    f"{self.describe()}: the {type(encoder).__name__} did not start: {e}. Check that no other "
                    "program uses the video encoder (/dev/video11 on a Pi 4 and earlier)"
                ) from e
            self._encoders.append(encoder)

    def stop_encoder(self, encoder: Any) -> None:
        """Stops an encoder started with :meth:`start_encoder` (nothing if it was stopped already). Blocks
        until its last frame is out: call it off the event loop."""
        with self._encoders_lock:
            if self._encoders is None or encoder not in self._encoders:
                return
            self._encoders.remove(encoder)
            self._stop_encoder(self._picam, encoder)

    def _stop_encoder(self, camera: Any, encoder: Any) -> None:
        try:
            camera.stop_encoder(encoder)
        except Exception as e:  # a device that failed: the encoder is gone either way
            logger.warning("%s: stopping the %s failed: %s", self.describe(), type(encoder).__name__, e)

    def close(self) -> None:
        """Stops capturing and releases the camera; a capture waiting for a frame is woken at once."""
        self._closing.set()
        camera = getattr(self, "_picam", None)
        cancel = getattr(camera, "cancel_all_and_flush", None)
        if cancel is not None:
            try:
                cancel()  # the capture thread's pending job ends with CancelledError
            except Exception as e:  # a camera closed meanwhile by its thread: nothing waits any more
                logger.debug("%s: cancel_all_and_flush at close: %s", self.describe(), e)
        super().close()

    # ----------------------------------------------------------------- the capture thread

    def _producer(self) -> None:
        camera = self._picam
        try:
            self._capture(camera)
        finally:
            self._release(camera)  # stops it too

    def _stopping(self) -> bool:
        return self._shouldClose or self._closing.is_set()

    def _next_request(self, camera: Any, wait: float) -> Any:
        """The next completed request, or None when none came within ``wait`` seconds.

        A capture that timed out stays queued inside picamera2 as a job, and would take the next frame and
        keep its buffer for good (a few stalls and the camera freezes): on a timeout the pending jobs are
        cancelled (``cancel_all_and_flush``), and a frame that completed the job meanwhile is still used.
        """
        job = camera.capture_request(wait=False)
        if self._stopping():  # close() came between the loop's check and the job: its cancel may have missed it
            camera.cancel_all_and_flush()
            return None
        try:
            return camera.wait(job, timeout=wait)
        # concurrent.futures.TimeoutError is the builtin only from Python 3.11 on
        except (TimeoutError, concurrent.futures.TimeoutError):
            pass
        except concurrent.futures.CancelledError:
            return None  # close() cancelled it
        camera.cancel_all_and_flush()
        try:
            return camera.wait(job, timeout=wait)  # cancelled now, or finished just before the cancel
        except (TimeoutError, concurrent.futures.TimeoutError, concurrent.futures.CancelledError):
            return None

    def _capture(self, camera: Any) -> None:
        wait = self.frame_timeout or max(1.0, 3.0 / self._requested_fps)
        failures = 0
        while not self._stopping():
            try:
                request = self._next_request(camera, wait)
            except Exception as e:
                if self._stopping():
                    return
                raise DeviceLostError(f"{self.describe()} failed while capturing: {e}") from e
            if request is None:
                if self._stopping():
                    return
                failures += 1
                if failures >= self._max_read_failures:
                    raise DeviceLostError(
                        f"{self.describe()} sent no frame for {failures * wait:.1f} s ({failures} waits in a "
                        f"row): the cable came loose or the camera stalled; check dmesg, and {self._advice()}"
                    )
                logger.debug("%s: no frame within %.2f s (%d in a row)", self.describe(), wait, failures)
                continue
            try:
                image = request.make_array("main")
                metadata = request.get_metadata()
            finally:
                request.release()
            failures = 0
            if self._frame_count == 0:
                self._check_rate(metadata)
            self._emit_frame(self._as_bgr(image), self._timestamp(metadata))

    def _as_bgr(self, image: np.ndarray) -> np.ndarray:
        if self._to_bgr is not None:
            image = self._to_bgr(image)
        hflip, vflip = self._software_flip
        if hflip or vflip:
            image = np.ascontiguousarray(image[:: -1 if vflip else 1, :: -1 if hflip else 1])
        return image

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
