"""A stand-in for the ``picamera2`` module (and the ``libcamera`` module it uses), for machines without
a Raspberry Pi camera, as strict as the real one where rtcbot depends on its behaviour.

Modelled on picamera2 0.3.25 (raspberrypi/picamera2: ``picamera2/picamera2.py``, ``picamera2/job.py``,
``picamera2/request.py``); ``cancel_all_and_flush()`` exists since 0.3.20. What it reproduces:

- ``global_camera_info()`` is sorted the way picamera2 sorts it, by ``(not USB, Id)`` in reverse: CSI
  cameras first, in *descending* Id order, USB cameras last. ``Num`` is libcamera's own index, which can
  differ from the position; ``Picamera2(n)`` takes the position.
- Every capture is a *job* queued in the camera's job list and run when a frame completes (picamera2's event
  loop, here the camera's frame thread). ``capture_request(wait=t)`` that times out leaves its job queued: the
  next frame goes to that orphaned job and its buffer is never given back. ``buffer_count`` buffers exist;
  with none free, the sensor drops frames. ``cancel_all_and_flush()`` cancels the queued jobs.
- The timeout is ``concurrent.futures.TimeoutError`` (from ``Future.result``): the builtin ``TimeoutError``
  on Python >= 3.11, a different class before; :meth:`FakeCameraSystem.use_python310_timeouts` models that.
- The camera manager maps libcamera's camera number to the *last* Picamera2 made for it, even one whose open
  failed (the camera is already acquired): frames of the first, working object then go to the failed one.
- A USB webcam (Id containing ``/usb``) accepts only YUYV or MJPEG and turns any other format into its
  first one; a sensor with ``flips=False`` refuses flips. ``configure`` writes the chosen format and
  transform back into ``camera_config``, as picamera2 does.

The "hardware" is the module-level :data:`system`; tests arrange cameras and faults on it::

    from tests.fakes import picamera2 as fake
    monkeypatch.setitem(sys.modules, "picamera2", fake)
    monkeypatch.setitem(sys.modules, "libcamera", fake.libcamera)
    fake.system.reset(cameras=1)
    fake.system.fail_start = RuntimeError("Failed to start camera")
    fake.system.stall()            # frames stop until system.resume()

The scene is an RGB image split in quadrants: top-left red, top-right green, bottom-left blue, bottom-right
white, so a frame shows both its channel order and any flip.
"""
from __future__ import annotations

import concurrent.futures
import io
import threading
import time
import types
from typing import Any, Callable, Dict, List, Optional, Union

import numpy as np

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)  # RGB


def quadrant_scene(width: int, height: int, index: int) -> np.ndarray:
    """The default scene, in R, G, B order: red, green / blue, white quadrants."""
    image = np.empty((height, width, 3), np.uint8)
    h, w = height // 2, width // 2
    image[:h, :w] = RED
    image[:h, w:] = GREEN
    image[h:, :w] = BLUE
    image[h:, w:] = WHITE
    return image


# ------------------------------------------------------------------------------------------------ libcamera


class Transform:
    """libcamera.Transform: ``Transform(hflip=1, vflip=1)``."""

    def __init__(self, hflip: int = 0, vflip: int = 0, transpose: int = 0) -> None:
        self.hflip = bool(hflip)
        self.vflip = bool(vflip)
        self.transpose = bool(transpose)

    def __repr__(self) -> str:
        return f"<libcamera.Transform hflip={int(self.hflip)} vflip={int(self.vflip)}>"


libcamera = types.ModuleType("libcamera")
libcamera.Transform = Transform  # type: ignore[attr-defined]


# ------------------------------------------------------------------------------------------------ hardware

CameraSpec = Dict[str, Any]


def csi_camera(model: str = "imx708", bus: int = 0, flips: bool = True) -> CameraSpec:
    """A CSI sensor as libcamera names it on a Pi 5 (``bus`` picks the i2c bus of the connector)."""
    return {"Model": model, "Location": 2, "Rotation": 180, "Id": f"/base/axi/pcie@120000/rp1/i2c@{bus:x}/"
            f"{model}@1a", "flips": flips}  # fmt: skip


def usb_camera(model: str = "HD Webcam C270", fmt: str = "YUYV") -> CameraSpec:
    """A UVC webcam as libcamera lists it: only YUYV or MJPEG."""
    return {"Model": model, "Location": 2, "Id": "/base/scb/pcie@7d500000/pci@0,0/usb@0,0-1:1.0-046d:0825",
            "formats": [fmt], "flips": False}  # fmt: skip


class FakeCameraSystem:
    """The attached cameras and the faults to inject. ``reset()`` restores a healthy single camera."""

    def __init__(self) -> None:
        self.cm = CameraManager()
        self.reset()

    def reset(self, cameras: Union[int, List[CameraSpec]] = 1) -> None:
        """``cameras``: how many CSI cameras, or their specs in libcamera's order (``csi_camera()``,
        ``usb_camera()``)."""
        for camera in list(getattr(self, "instances", [])):
            camera.close()
        if isinstance(cameras, int):
            cameras = [csi_camera(bus=0x80000 + 0x8000 * i) for i in range(cameras)]
        self.cameras: List[CameraSpec] = list(cameras)
        self.scene: Callable[[int, int, int], np.ndarray] = quadrant_scene
        self.fail_start: Optional[BaseException] = None  # start() raises this
        self.frames_before_hang: Optional[int] = None  # after this many frames, no frame ever comes again
        self.sensor_timestamps = True  # metadata carries SensorTimestamp
        self.max_size = (4608, 2592)  # sizes beyond this are clamped by configure()
        self.max_fps = 120.0  # frame rates beyond this are clamped by configure()
        self.acquired: set = set()  # libcamera numbers of the cameras in use
        self.instances: List[Picamera2] = []
        self.timeout_error: type = concurrent.futures.TimeoutError
        self.timeouts = 0  # capture waits that timed out
        self.changed = threading.Condition()
        self._running = threading.Event()
        self._running.set()
        self.cm.cameras.clear()

    def describe(self) -> List[Dict[str, Any]]:
        """``global_camera_info()``: sorted as picamera2 sorts it, with libcamera's number as ``Num``."""
        infos = []
        for num, spec in enumerate(self.cameras):
            info = {key: spec[key] for key in ("Model", "Location", "Rotation", "Id") if key in spec}
            infos.append(dict(info, Num=num))
        return sorted(infos, key=lambda cam: ("/usb" not in cam["Id"], cam["Id"]), reverse=True)

    def use_python310_timeouts(self) -> type:
        """Time out with a ``concurrent.futures.TimeoutError`` that is not the builtin, as before Python 3.11.
        Returns the class (patch it in as ``concurrent.futures.TimeoutError`` too)."""
        self.timeout_error = type("TimeoutError", (Exception,), {"__module__": "concurrent.futures"})
        return self.timeout_error

    def stall(self) -> None:
        """No frame comes until :meth:`resume` (a lens covered at a long exposure, a loose cable...)."""
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
        """Waits until ``predicate()`` holds, re-checked whenever a frame or a timeout happens."""
        with self.changed:
            return self.changed.wait_for(predicate, timeout)

    def notify(self) -> None:
        with self.changed:
            self.changed.notify_all()


class CameraManager:
    """picamera2's ``Picamera2._cm``: libcamera camera number -> the Picamera2 that gets its frames."""

    def __init__(self) -> None:
        self.cameras: Dict[int, Picamera2] = {}
        self.lock = threading.Lock()

    def add(self, num: int, camera: Picamera2) -> None:
        with self.lock:
            self.cameras[num] = camera

    def cleanup(self, num: int) -> None:
        with self.lock:
            self.cameras.pop(num, None)

    def route(self, num: int, request: CompletedRequest) -> None:
        """A frame completed: it goes to whichever object is registered for the camera now."""
        with self.lock:
            target = self.cameras.get(num)
        if target is None:
            request.release()
        else:
            target._process_request(request)


system = FakeCameraSystem()


# ------------------------------------------------------------------------------------------------ picamera2

_FORMAT_ORDER = {  # picamera2 format name -> index into (R, G, B) for each byte in memory, and extra X
    "RGB888": ([2, 1, 0], False),
    "BGR888": ([0, 1, 2], False),
    "XRGB8888": ([2, 1, 0], True),
    "XBGR8888": ([0, 1, 2], True),
}
_OTHER_FORMATS = ("YUYV", "MJPEG")


def _rgb_to_yuyv(rgb: np.ndarray) -> np.ndarray:
    """RGB -> YUYV (BT.601, limited range), shaped as picamera2's make_array gives it: (h, w, 2)."""
    r, g, b = (rgb[..., i].astype(np.float32) for i in range(3))
    y = 16 + 0.257 * r + 0.504 * g + 0.098 * b
    u = 128 - 0.148 * r - 0.291 * g + 0.439 * b
    v = 128 + 0.439 * r - 0.368 * g - 0.071 * b
    out = np.empty(rgb.shape[:2] + (2,), np.float32)
    out[..., 0] = y
    out[:, 0::2, 1] = (u[:, 0::2] + u[:, 1::2]) / 2
    out[:, 1::2, 1] = (v[:, 0::2] + v[:, 1::2]) / 2
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _jpeg_round_trip(rgb: np.ndarray) -> np.ndarray:
    try:
        from PIL import Image
    except ImportError:
        import cv2

        ok, data = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
        return np.ascontiguousarray(cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1])
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=95)
    return np.array(Image.open(io.BytesIO(buffer.getvalue())))


class CompletedRequest:
    """One captured frame, holding its buffer until every use is released."""

    def __init__(self, camera: Picamera2, index: int, timestamp_ns: int) -> None:
        self._camera = camera
        self._index = index
        self._timestamp_ns = timestamp_ns
        self._config = camera.camera_config
        self.ref_count = 1

    @property
    def released(self) -> bool:
        return self.ref_count == 0

    def acquire(self) -> None:
        self.ref_count += 1

    def make_array(self, name: str) -> np.ndarray:
        if self.released:
            raise RuntimeError("CompletedRequest: the request was released")
        stream = self._config[name]
        width, height = stream["size"]
        rgb = self._camera.system.scene(width, height, self._index)
        transform = self._config["transform"]
        if transform.hflip:
            rgb = rgb[:, ::-1]
        if transform.vflip:
            rgb = rgb[::-1]
        fmt = stream["format"]
        if fmt == "YUYV":
            return _rgb_to_yuyv(np.ascontiguousarray(rgb))
        if fmt == "MJPEG":  # picamera2 decodes it with PIL: R, G, B (OpenCV here when PIL is missing)
            return _jpeg_round_trip(np.ascontiguousarray(rgb))
        order, padded = _FORMAT_ORDER[fmt]
        array = rgb[..., order]
        if padded:
            array = np.concatenate([array, np.full((height, width, 1), 255, np.uint8)], axis=2)
        return np.ascontiguousarray(array)  # a copy, like make_array from the mapped buffer

    def get_metadata(self) -> Dict[str, Any]:
        if self.released:
            raise RuntimeError("CompletedRequest: the request was released")
        metadata: Dict[str, Any] = {
            "FrameDuration": self._camera._frame_duration_us,
            "ExposureTime": self._camera._frame_duration_us // 2,
            "AnalogueGain": 1.0,
        }
        if self._camera.system.sensor_timestamps:
            metadata["SensorTimestamp"] = self._timestamp_ns
        return metadata

    def release(self) -> None:
        if self.ref_count <= 0:
            raise RuntimeError("CompletedRequest: lock now has negative ref_count")
        self.ref_count -= 1
        if self.ref_count == 0:
            self._camera._buffer_returned()


_FUTURE_TIMEOUT = concurrent.futures.TimeoutError  # what Future.result raises (before any test patches the name)


class Job:
    """picamera2.job.Job: functions run on completed frames; the result through a concurrent Future."""

    def __init__(self, functions: List[Callable[[], Any]], signal_function: Optional[Callable] = None) -> None:
        self._functions = list(functions)
        self._future: concurrent.futures.Future = concurrent.futures.Future()
        self._future.set_running_or_notify_cancel()
        self._signal_function = signal_function
        self._result: Any = None

    def execute(self) -> bool:
        try:
            while self._functions:
                done, result = self._functions[0]()
                if not done:
                    break
                self._functions.pop(0)
                self._result = result
        except Exception as e:
            self._future.set_exception(e)
            self._functions = []
        return not self._functions

    def signal(self) -> None:
        if not self._future.done():
            self._future.set_result(self._result)
        if self._signal_function:
            self._signal_function(self)

    def get_result(self, timeout: Optional[float] = None) -> Any:
        try:
            return self._future.result(timeout=timeout)
        except _FUTURE_TIMEOUT:
            with system.changed:
                system.timeouts += 1
                system.changed.notify_all()
            raise system.timeout_error() from None

    def cancel(self) -> None:
        self._future.set_exception(concurrent.futures.CancelledError())


class Picamera2:
    """A fake camera: frames at the configured frame duration from a thread, faults from :data:`system`."""

    system = system
    _cm = system.cm

    @staticmethod
    def global_camera_info() -> List[Dict[str, Any]]:
        return system.describe()

    def __init__(self, camera_num: int = 0, tuning: Any = None, allocator: Any = None) -> None:
        self.is_open = False
        self.started = False
        self.camera_config: Optional[Dict[str, Any]] = None
        num = self.global_camera_info()[camera_num]["Num"]  # IndexError, as the real one
        self._cm.add(num, self)  # before the open: a failed open leaves the manager pointing here
        self.camera_idx = num
        self.spec = system.cameras[num]
        self.lock = threading.RLock()  # the job list, completed requests and buffer count
        self._job_list: List[Job] = []
        self.completed_requests: List[CompletedRequest] = []
        self._requests: List[CompletedRequest] = []  # frames delivered to an object that never runs them
        self.outstanding = 0  # buffers in use (not yet given back to the camera)
        self.frames = 0
        self.closed_count = 0
        self._frame_duration_us = 33333
        self._buffer_count = 6
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        system.instances.append(self)
        if num in system.acquired:
            # libcamera refuses a camera that is acquired (by this process or another); picamera2 says this.
            raise RuntimeError("Camera __init__ sequence did not complete.")
        system.acquired.add(num)
        self.is_open = True

    @property
    def is_usb(self) -> bool:
        return "/usb" in self.spec["Id"]

    def create_video_configuration(
        self,
        main: Optional[Dict[str, Any]] = None,
        lores: Any = None,
        raw: Any = None,
        transform: Any = None,
        colour_space: Any = None,
        buffer_count: int = 6,
        controls: Optional[Dict[str, Any]] = None,
        display: Optional[str] = "main",
        encode: Optional[str] = "main",
        **kwargs: Any,
    ) -> Dict[str, Any]:
        if not self.is_open:
            raise RuntimeError("Camera not opened")
        return {
            "use_case": "video",
            "transform": transform if transform is not None else Transform(),
            "buffer_count": buffer_count,
            "queue": True,
            "main": {"format": "XBGR8888", "size": (1280, 720), **(main or {})},
            "controls": {"FrameDurationLimits": (33333, 33333), **(controls or {})},
            "display": display,
            "encode": encode,
        }

    def configure(self, config: Dict[str, Any]) -> None:
        if not self.is_open:
            raise RuntimeError("Camera is not open")
        if self.started:
            raise RuntimeError("Camera must be stopped before configuring")
        config = {key: (dict(value) if isinstance(value, dict) else value) for key, value in config.items()}
        main = config["main"]
        if main["format"] not in _FORMAT_ORDER and main["format"] not in _OTHER_FORMATS:
            raise RuntimeError(f"Bad format {main['format']} in stream main")
        # libcamera's validate() adjusts what the camera cannot do; picamera2 writes it back into the config.
        supported = self.spec.get("formats")
        if supported and main["format"] not in supported:
            main["format"] = supported[0]
        transform = config["transform"]
        if not self.spec.get("flips", True) and (transform.hflip or transform.vflip):
            config["transform"] = Transform()
        width, height = main["size"]
        max_w, max_h = system.max_size
        main["size"] = (min(width, max_w), min(height, max_h))
        bytes_per_pixel = {"YUYV": 2, "MJPEG": 2}.get(main["format"], 4 if main["format"].startswith("X") else 3)
        main["stride"] = main["size"][0] * bytes_per_pixel
        controls = config["controls"]
        if "FrameRate" in controls:  # picamera2 turns FrameRate into FrameDurationLimits
            duration = int(1e6 / controls.pop("FrameRate"))
            controls["FrameDurationLimits"] = (duration, duration)
        shortest = int(1e6 / system.max_fps)
        duration = max(int(controls["FrameDurationLimits"][0]), shortest)
        controls["FrameDurationLimits"] = (duration, duration)
        self._frame_duration_us = duration
        self._buffer_count = int(config.get("buffer_count", 6))
        self._max_queue_len = 1 if config.get("queue", True) and self._buffer_count > 1 else 0
        self.camera_config = config

    def camera_configuration(self) -> Optional[Dict[str, Any]]:
        return self.camera_config

    def start(self, config: Any = None, show_preview: bool = False) -> None:
        if config is not None:
            self.configure(config)
        if self.camera_config is None:
            raise RuntimeError("Camera has not been configured")
        if system.fail_start is not None:
            raise system.fail_start
        if self.started:
            return
        self._stop.clear()
        self.started = True
        self._thread = threading.Thread(target=self._sensor, name="fake-libcamera", daemon=True)
        self._thread.start()

    # -------------------------------------------------------------- the sensor and picamera2's event loop

    def _sensor(self) -> None:
        period = self._frame_duration_us / 1e6
        due = time.monotonic() + period
        produced = 0
        while not self._stop.wait(max(0.0, due - time.monotonic())):
            frame_time, due = due, max(due + period, time.monotonic())
            if not system._running.is_set():
                continue
            if system.frames_before_hang is not None and produced >= system.frames_before_hang:
                continue
            with self.lock:
                if self.outstanding >= self._buffer_count:
                    continue  # no buffer queued to the camera: the frame is lost
                self.outstanding += 1
            request = CompletedRequest(self, produced, int(frame_time * 1e9))
            produced += 1
            self._cm.route(self.camera_idx, request)
            system.notify()

    def _process_request(self, request: CompletedRequest) -> None:
        """picamera2's process_requests: keep the newest frame, give frames to queued jobs in order."""
        if not self.started:
            with self.lock:
                self._requests.append(request)  # nobody runs this object's event loop
            return
        with self.lock:
            self.frames += 1
            self.completed_requests.append(request)
            finished = []
            while self._job_list and self._job_list[0].execute():
                finished.append(self._job_list.pop(0))
            while len(self.completed_requests) > self._max_queue_len:
                self.completed_requests.pop(0).release()
        for job in finished:
            job.signal()

    def _buffer_returned(self) -> None:
        with self.lock:
            self.outstanding -= 1

    def _capture_request_(self) -> Any:
        if not self.completed_requests:
            return (False, None)
        return (True, self.completed_requests.pop(0))

    def dispatch_functions(self, functions: List[Callable], wait: Any, signal_function: Any = None) -> Any:
        if wait is None:
            wait = signal_function is None
        timeout = None if wait is True else wait
        job = Job(functions, signal_function)
        finished = False
        with self.lock:
            self._job_list.append(job)
            if len(self._job_list) == 1 and self.completed_requests and job.execute():
                self._job_list.pop(0)
                finished = True
        if finished:
            job.signal()
        return job.get_result(timeout=timeout) if wait else job

    def capture_request(self, wait: Any = None, signal_function: Any = None, flush: Any = None) -> Any:
        """The next frame (a job); ``wait`` may be a timeout in seconds, or False to get the job."""
        if not self.started:
            raise RuntimeError("Camera is not running")
        return self.dispatch_functions([self._capture_request_], wait, signal_function)

    def wait(self, job: Job, timeout: Optional[float] = None) -> Any:
        return job.get_result(timeout=timeout)

    def cancel_all_and_flush(self) -> None:
        with self.lock:
            for job in self._job_list:
                job.cancel()
            self._job_list = []

    def capture_array(self, name: str = "main", wait: Any = None) -> np.ndarray:
        request = self.capture_request(wait=wait)
        try:
            return request.make_array(name)
        finally:
            request.release()

    def stop(self) -> None:
        if not self.started:
            return
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        self.started = False
        with self.lock:
            leftovers = self.completed_requests + self._requests
            self.completed_requests, self._requests = [], []
        for request in leftovers:
            request.release()

    def close(self) -> None:
        if not self.is_open:
            return
        self.stop()
        self.is_open = False
        self.closed_count += 1
        self._cm.cleanup(self.camera_idx)
        system.acquired.discard(self.camera_idx)

    def __enter__(self) -> Picamera2:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

