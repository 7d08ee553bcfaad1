"""A stand-in for the ``picamera2`` module (and the ``libcamera`` module it uses), for machines without
a Raspberry Pi camera.

It follows the real API as far as rtcbot uses it: ``Picamera2(camera_num)``, ``global_camera_info()``,
``create_video_configuration(main=..., controls=..., transform=...)``, ``configure``, ``start``,
``capture_request(wait=...)`` returning a request with ``make_array(name)``, ``get_metadata()`` and
``release()``, ``capture_array``, ``stop`` and ``close``. Frames come at the configured frame duration, and
byte order follows picamera2's (libcamera/DRM) naming: ``"RGB888"`` is B, G, R in memory (what OpenCV
wants), ``"BGR888"`` is R, G, B; ``"XBGR8888"`` is R, G, B, X and ``"XRGB8888"`` is B, G, R, X.

The "hardware" is the module-level :data:`system`; tests arrange cameras and faults on it::

    from tests.fakes import picamera2 as fake
    monkeypatch.setitem(sys.modules, "picamera2", fake)
    monkeypatch.setitem(sys.modules, "libcamera", fake.libcamera)
    fake.system.reset(cameras=1)
    fake.system.fail_start = RuntimeError("Failed to start camera")

The scene is an RGB image split in quadrants: top-left red, top-right green, bottom-left blue, bottom-right
white, so a frame shows both its channel order and any flip.
"""
from __future__ import annotations

import threading
import time
import types
from typing import Any, Callable, Dict, List, Optional

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


class FakeCameraSystem:
    """The attached cameras and the faults to inject. ``reset()`` restores a healthy single camera."""

    def __init__(self) -> None:
        self.reset()

    def reset(self, cameras: int = 1) -> None:
        self.cameras: List[Dict[str, Any]] = [
            {"Model": "imx708", "Location": 2, "Rotation": 180, "Id": f"/base/axi/rp1/i2c@{8 + i}/imx708@1a"}
            for i in range(cameras)
        ]
        self.scene: Callable[[int, int, int], np.ndarray] = quadrant_scene
        self.fail_start: Optional[BaseException] = None  # start() raises this
        self.frames_before_hang: Optional[int] = None  # after this many frames, no frame ever comes again
        self.sensor_timestamps = True  # metadata carries SensorTimestamp
        self.max_size = (4608, 2592)  # sizes beyond this are clamped by configure()
        self.max_fps = 120.0  # frame rates beyond this are clamped by configure()
        self.acquired: set = set()
        self.instances: List[Picamera2] = []

    def describe(self) -> List[Dict[str, Any]]:
        return [dict(info, Num=num) for num, info in enumerate(self.cameras)]


system = FakeCameraSystem()


# ------------------------------------------------------------------------------------------------ picamera2

_FORMAT_ORDER = {  # picamera2 format name -> index into (R, G, B) for each byte in memory, and extra X
    "RGB888": ([2, 1, 0], False),
    "BGR888": ([0, 1, 2], False),
    "XRGB8888": ([2, 1, 0], True),
    "XBGR8888": ([0, 1, 2], True),
}


class CompletedRequest:
    """One captured frame, holding its buffer until ``release()``."""

    def __init__(self, camera: Picamera2, index: int, timestamp_ns: int) -> None:
        self._camera = camera
        self._index = index
        self._timestamp_ns = timestamp_ns
        self._config = camera.camera_config
        self.released = False

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
        order, padded = _FORMAT_ORDER[stream["format"]]
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
        if self.released:
            raise RuntimeError("CompletedRequest: lock now has negative ref_count")
        self.released = True
        self._camera.outstanding -= 1


class Picamera2:
    """A fake camera: frames at the configured frame duration, faults from :data:`system`."""

    system = system

    @staticmethod
    def global_camera_info() -> List[Dict[str, Any]]:
        return system.describe()

    def __init__(self, camera_num: int = 0, tuning: Any = None, allocator: Any = None) -> None:
        self.is_open = False
        self.started = False
        num = self.global_camera_info()[camera_num]["Num"]  # IndexError, as the real one
        if num in system.acquired:
            # libcamera refuses a camera another process holds; picamera2 reports it like this.
            raise RuntimeError("Camera __init__ sequence did not complete.")
        system.acquired.add(num)
        system.instances.append(self)
        self.camera_idx = num
        self.is_open = True
        self.camera_config: Optional[Dict[str, Any]] = None
        self.outstanding = 0  # requests captured and not yet released
        self.frames = 0
        self.closed_count = 0
        self._frame_duration_us = 33333
        self._stopped = threading.Event()
        self._next_frame_at = 0.0

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
        return {
            "use_case": "video",
            "transform": transform if transform is not None else Transform(),
            "buffer_count": buffer_count,
            "main": {"format": "XBGR8888", "size": (1280, 720), **(main or {})},
            "controls": {"FrameDurationLimits": (33333, 33333), **(controls or {})},
            "display": display,
            "encode": encode,
        }

    def configure(self, config: Dict[str, Any]) -> None:
        if not self.is_open:
            raise RuntimeError("Camera is not open")
        config = {key: (dict(value) if isinstance(value, dict) else value) for key, value in config.items()}
        main = config["main"]
        if main["format"] not in _FORMAT_ORDER:
            raise RuntimeError(f"Format {main['format']} not supported")
        width, height = main["size"]
        max_w, max_h = system.max_size
        main["size"] = (min(width, max_w), min(height, max_h))
        main["stride"] = main["size"][0] * (4 if _FORMAT_ORDER[main["format"]][1] else 3)
        controls = config["controls"]
        if "FrameRate" in controls:  # picamera2 turns FrameRate into FrameDurationLimits
            duration = int(1e6 / controls.pop("FrameRate"))
            controls["FrameDurationLimits"] = (duration, duration)
        shortest = int(1e6 / system.max_fps)
        duration = max(int(controls["FrameDurationLimits"][0]), shortest)
        controls["FrameDurationLimits"] = (duration, duration)
        self._frame_duration_us = duration
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
        self._stopped.clear()
        self.started = True
        self._next_frame_at = time.monotonic() + self._frame_duration_us / 1e6

    def capture_request(self, wait: Any = None, flush: Any = None) -> CompletedRequest:
        """The next frame, waiting for it; ``wait`` may be a timeout in seconds (then TimeoutError)."""
        if not self.started:
            raise RuntimeError("Camera is not running")
        timeout = None if wait in (None, True) else float(wait)
        hung = system.frames_before_hang is not None and self.frames >= system.frames_before_hang
        due = float("inf") if hung else self._next_frame_at
        now = time.monotonic()
        if timeout is not None and due - now > timeout:
            self._stopped.wait(timeout)
            raise TimeoutError("fake picamera2: no frame within the timeout")
        if hung:
            self._stopped.wait()
            raise RuntimeError("Camera stopped")
        if due > now and self._stopped.wait(due - now):
            raise RuntimeError("Camera stopped")
        period = self._frame_duration_us / 1e6
        self._next_frame_at = max(due + period, time.monotonic())
        request = CompletedRequest(self, self.frames, int(due * 1e9))
        self.frames += 1
        self.outstanding += 1
        return request

    def capture_array(self, name: str = "main", wait: Any = None) -> np.ndarray:
        request = self.capture_request(wait=wait)
        try:
            return request.make_array(name)
        finally:
            request.release()

    def stop(self) -> None:
        self.started = False
        self._stopped.set()

    def close(self) -> None:
        if not self.is_open:
            return
        self.stop()
        self.is_open = False
        self.closed_count += 1
        system.acquired.discard(self.camera_idx)

    def __enter__(self) -> Picamera2:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
