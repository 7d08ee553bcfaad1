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

Encoders (``picamera2.encoders``, ``picamera2.outputs``; modelled on picamera2 0.3.25's
``encoders/encoder.py``, ``encoders/v4l2_encoder.py``, ``encoders/h264_encoder.py``, ``outputs/output.py``):
``Picamera2.start_encoder(encoder, output)`` / ``stop_encoder(encoders)``; the camera thread hands every
frame to each running encoder (``encoder.encode(name, request)``, which holds the request's buffer), and
:class:`H264Encoder` encodes it with PyAV's libx264 into real Annex-B H.264 on its own output thread, as
the V4L2 hardware encoder's poll thread does, calling ``output.outputframe(bytes, keyframe, timestamp_us)``
with microseconds since the encoder's first frame. SPS/PPS come before every IDR (``repeat=True``), one IDR
every ``iperiod`` frames (60 when None). The encoder has a ``vd`` file (here /dev/null, so the V4L2
``VIDIOC_S_CTRL`` ioctl fails as on a machine without the codec); :attr:`FakeCameraSystem.encoded_frames`
counts frames encoded, ``encoder.force_key_frame()`` is the hook a test uses in place of the ioctl.

The scene is an RGB image split in quadrants: top-left red, top-right green, bottom-left blue, bottom-right
white, so a frame shows both its channel order and any flip.
"""
from __future__ import annotations

import concurrent.futures
import fractions
import io
import queue
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
        self.encoded_frames = 0  # frames the fake H.264 encoders have put out
        self.encoder_starts = 0  # H264Encoder.start() calls (a restart counts)
        self.encoders_running_at_close = 0  # encoders a Picamera2.close() found still running
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
        self._encoders: set = set()
        self.encode_stream_name = "main"
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
            encoders = list(self._encoders)
        for encoder in encoders:
            if encoder.name in self.camera_config:
                encoder.encode(encoder.name, request)
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

    def start_encoder(
        self, encoder: Any = None, output: Any = None, pts: Any = None, quality: Any = None, name: Any = None
    ) -> None:
        """picamera2's start_encoder: the encoder takes the stream's size, format and stride, then starts."""
        if encoder is None:
            if len(self._encoders) != 1:
                raise RuntimeError("No encoder specified")
            encoder = next(iter(self._encoders))
        if output is not None:
            encoder.output = output
        streams = self.camera_configuration()
        name = name or self.encode_stream_name
        if streams is None or streams.get(name) is None:
            raise RuntimeError(f"Encode stream {name} was not defined")
        encoder.name = name
        encoder.width, encoder.height = streams[name]["size"]
        encoder.format = streams[name]["format"]
        encoder.stride = streams[name]["stride"]
        if getattr(encoder, "framerate", 0) is None:
            encoder.framerate = 1e6 / max(self._frame_duration_us, 33333)
        encoder.start(quality=quality)
        with self.lock:
            self._encoders.add(encoder)

    def stop_encoder(self, encoders: Any = None) -> None:
        """picamera2's stop_encoder: stops one encoder, a list or set of them, or all (None)."""
        if encoders is None:
            chosen = list(self._encoders)
        elif isinstance(encoders, (list, set)):
            chosen = list(encoders)
        else:
            chosen = [encoders]
        for encoder in chosen:
            encoder.stop()
        with self.lock:
            for encoder in chosen:
                self._encoders.remove(encoder)  # KeyError for an encoder not started here, as picamera2

    @property
    def encoders(self) -> set:
        return self._encoders

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
        with self.lock:
            leftover, self._encoders = list(self._encoders), set()
        system.encoders_running_at_close += len(leftover)  # a user of picamera2 should have stopped them
        for encoder in leftover:
            encoder.stop()
        self.is_open = False
        self.closed_count += 1
        self._cm.cleanup(self.camera_idx)
        system.acquired.discard(self.camera_idx)

    def __enter__(self) -> Picamera2:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()



# ------------------------------------------------------------------------------------------------ encoders


class Output:
    """picamera2.outputs.Output: what an encoder writes its frames to; subclasses override ``outputframe``."""

    def __init__(self, pts: Any = None) -> None:
        self.recording = False
        self.ptsoutput = pts
        self.needs_pacing = False

    def start(self) -> None:
        self.recording = True

    def stop(self) -> None:
        self.recording = False

    def outputframe(
        self, frame: Any, keyframe: bool = True, timestamp: Optional[int] = None, packet: Any = None,
        audio: bool = False,
    ) -> None:
        """One encoded frame: ``frame`` bytes, ``timestamp`` in microseconds."""

    def outputtimestamp(self, timestamp: Optional[int]) -> None:
        pass

    def _add_stream(self, encoder_stream: Any, *args: Any, **kwargs: Any) -> None:
        pass


class Encoder:
    """picamera2.encoders.Encoder: size/format set by ``start_encoder``, outputs, start/stop, timestamps."""

    def __init__(self) -> None:
        self.width = 0
        self.height = 0
        self.stride = 0
        self.format: Optional[str] = None
        self.name: Optional[str] = None
        self._output: List[Output] = []
        self._running = False
        self._lock = threading.Lock()
        self._output_lock = threading.Lock()
        self.firsttimestamp: Optional[int] = None

    @property
    def running(self) -> bool:
        return self._running

    @property
    def output(self) -> Any:
        return self._output[0] if len(self._output) == 1 else self._output

    @output.setter
    def output(self, value: Any) -> None:
        outputs = value if isinstance(value, list) else [value]
        if not all(isinstance(out, Output) for out in outputs):
            raise RuntimeError("Must pass Output")
        self._output = outputs

    def encode(self, stream: Any, request: CompletedRequest) -> None:
        with self._lock:
            self._encode(stream, request)

    def _encode(self, stream: Any, request: CompletedRequest) -> None:
        raise NotImplementedError

    def start(self, quality: Any = None) -> None:
        with self._lock:
            if self._running:
                raise RuntimeError("Encoder already running")
            self._running = True
            self.firsttimestamp = None
            for out in self._output:
                out.start()
            self._start()

    def _start(self) -> None:
        pass

    def stop(self) -> None:
        with self._lock:
            if not self._running:
                raise RuntimeError("Encoder already stopped")
            self._running = False
            self._stop()
            for out in self._output:
                out.stop()

    def _stop(self) -> None:
        pass

    def outputframe(
        self, frame: Any, keyframe: bool = True, timestamp: Optional[int] = None, packet: Any = None,
        audio: bool = False,
    ) -> None:
        with self._output_lock:
            for out in self._output:
                out.outputframe(frame, keyframe, timestamp, packet, audio)

    def _timestamp(self, request: CompletedRequest) -> int:
        """Microseconds since this encoder's first frame, from the sensor timestamp."""
        ts = int(request.get_metadata().get("SensorTimestamp", time.monotonic_ns()) / 1000)
        if self.firsttimestamp is None:
            self.firsttimestamp = ts
        return ts - self.firsttimestamp


_PIX_FMT = {"RGB888": "bgr24", "BGR888": "rgb24", "XBGR8888": "rgba", "XRGB8888": "bgra"}


class H264Encoder(Encoder):
    """picamera2's V4L2 H264Encoder, with PyAV's libx264 in place of the Pi's codec: real H.264 bytes."""

    def __init__(
        self, bitrate: Optional[int] = None, repeat: bool = True, iperiod: Optional[int] = None,
        framerate: Optional[float] = None, enable_sps_framerate: bool = False, qp: Optional[int] = None,
        profile: Optional[str] = None,
    ) -> None:
        super().__init__()
        self.bitrate = bitrate
        self.repeat = repeat
        self.iperiod = iperiod
        self.framerate = framerate
        self.qp = qp
        self.profile = profile
        self.vd: Any = None
        self._frames: queue.Queue = queue.Queue()
        self._thread: Optional[threading.Thread] = None
        self._codec: Any = None
        self._force_key = threading.Event()

    def force_key_frame(self) -> None:
        """What ``VIDIOC_S_CTRL(V4L2_CID_MPEG_VIDEO_FORCE_KEY_FRAME)`` does on a Pi: the next frame is an IDR."""
        self._force_key.set()

    def _start(self) -> None:
        import av

        if self.profile is not None and self.profile.lower() not in (
            "baseline", "constrained baseline", "main", "high"
        ):
            raise RuntimeError("Profile " + self.profile + " not recognised")
        if self.format not in _PIX_FMT:
            raise RuntimeError("Unrecognised format", self.format, "for V4L2")
        self.vd = open("/dev/null", "rb+", buffering=0)  # the codec device node, /dev/video11 on a Pi
        codec = av.CodecContext.create("libx264", "w")
        codec.width, codec.height, codec.pix_fmt = self.width, self.height, "yuv420p"
        codec.time_base = fractions.Fraction(1, 1000000)
        codec.gop_size = self.iperiod or 60
        if self.bitrate:
            codec.bit_rate = int(self.bitrate)
        profile = (self.profile or "constrained baseline").lower()
        codec.options = {
            "preset": "ultrafast", "tune": "zerolatency", "profile": profile.replace("constrained ", ""),
            "repeat-headers": "1" if self.repeat else "0",
        }
        self._codec = codec
        with system.changed:
            system.encoder_starts += 1
            system.changed.notify_all()
        self._thread = threading.Thread(target=self._thread_poll, name="fake-v4l2-encoder", daemon=True)
        self._thread.start()

    def _encode(self, stream: Any, request: CompletedRequest) -> None:
        if self.vd is None or self.vd.closed:
            return
        request.acquire()  # the buffer stays with the encoder until its frame is out
        self._frames.put((request, self._timestamp(request)))

    def _thread_poll(self) -> None:
        import av

        while True:
            item = self._frames.get()
            if item is None:
                return
            request, timestamp_us = item
            try:
                image = request.make_array(self.name or "main")
            finally:
                request.release()
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image[..., :3]), format=_PIX_FMT[self.format])
            frame = frame.reformat(format="yuv420p")
            frame.pts = timestamp_us
            if self._force_key.is_set():
                self._force_key.clear()
                frame.pict_type = av.video.frame.PictureType.I
            for packet in self._codec.encode(frame):
                self.outputframe(bytes(packet), bool(packet.is_keyframe), int(packet.pts))
                with system.changed:
                    system.encoded_frames += 1
                    system.changed.notify_all()

    def _stop(self) -> None:
        self._frames.put(None)  # the frames already queued are encoded first, as the V4L2 poll thread does
        if self._thread is not None:
            self._thread.join()
        self._thread = None
        if self.vd is not None:
            self.vd.close()
        self._codec = None


encoders = types.ModuleType("picamera2.encoders")
encoders.Encoder = Encoder  # type: ignore[attr-defined]
encoders.H264Encoder = H264Encoder  # type: ignore[attr-defined]
outputs = types.ModuleType("picamera2.outputs")
outputs.Output = Output  # type: ignore[attr-defined]


def install(monkeypatch: Any) -> None:
    """Puts this fake in place of ``picamera2`` (with its ``encoders``/``outputs``) and ``libcamera``."""
    import sys

    monkeypatch.setitem(sys.modules, "picamera2", sys.modules[__name__])
    monkeypatch.setitem(sys.modules, "picamera2.encoders", encoders)
    monkeypatch.setitem(sys.modules, "picamera2.outputs", outputs)
    monkeypatch.setitem(sys.modules, "libcamera", libcamera)
