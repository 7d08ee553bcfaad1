"""A camera with a hardware-style H.264 encoder, made with PyAV (libx264): for testing passthrough.

It renders the simulated camera's test pattern, encodes it in its own thread (as a Pi's encoder delivers
from its own thread) and calls ``output(data, keyframe, timestamp)`` with each Annex B access unit, like
PiCamera2's encoder output would::

    with FakeH264Camera(source.put_encoded) as camera:
        source = EncodedVideoSource(request_keyframe=camera.request_keyframe)
"""

from __future__ import annotations

import fractions
import threading
import time
from typing import Any, Callable, Optional

import av

from rtcbot.devices.sim import render_test_pattern


class FakeH264Camera:
    def __init__(
        self,
        output: Optional[Callable[[bytes, bool, float], Any]] = None,
        width: int = 320,
        height: int = 240,
        fps: float = 30,
        keyframe_interval: int = 30,
    ) -> None:
        self.output = output
        self.width, self.height, self.fps = width, height, fps
        self.keyframe_interval = keyframe_interval
        self.frames = 0
        self.keyframes = 0
        self.keyframe_requests = 0
        self._force = threading.Event()
        self._progress = threading.Condition()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def codec(self) -> Any:
        context = av.CodecContext.create("libx264", "w")
        context.width, context.height = self.width, self.height
        context.pix_fmt = "yuv420p"
        context.time_base = fractions.Fraction(1, 90000)
        context.gop_size = self.keyframe_interval
        context.options = {"preset": "ultrafast", "tune": "zerolatency", "profile": "baseline", "level": "31"}
        return context

    def encode_all(self, count: int) -> list:
        """``count`` access units as bytes, in order (for tests that want them without a thread)."""
        context = self.codec()
        units = []
        for i in range(count):
            frame = av.VideoFrame.from_ndarray(render_test_pattern(self.width, self.height, i), format="bgr24")
            frame = frame.reformat(format="yuv420p")
            frame.pts = i * 3000
            units += [bytes(p) for p in context.encode(frame)]
        return units

    def wait_frames(self, count: int, timeout: float = 10.0) -> None:
        """Block until ``count`` frames were encoded (call with asyncio.to_thread from async code)."""
        with self._progress:
            if not self._progress.wait_for(lambda: self.frames >= count, timeout):
                raise TimeoutError(f"the fake H.264 camera encoded {self.frames} of {count} frames")

    def request_keyframe(self) -> None:
        """The next frame is an IDR (what a real encoder's 'force key frame' control does)."""
        self.keyframe_requests += 1
        self._force.set()

    def start(self) -> FakeH264Camera:
        self._thread = threading.Thread(target=self._run, name="fake-h264-camera")
        self._thread.start()
        return self

    def _run(self) -> None:
        context = self.codec()
        period = 1.0 / self.fps
        next_at = time.monotonic()
        index = 0
        while not self._stop.wait(max(0.0, next_at - time.monotonic())):
            captured = time.monotonic()
            frame = av.VideoFrame.from_ndarray(render_test_pattern(self.width, self.height, index), format="bgr24")
            frame = frame.reformat(format="yuv420p")
            frame.pts = int((captured) * 90000)
            if self._force.is_set():
                self._force.clear()
                frame.pict_type = av.video.frame.PictureType.I
            for packet in context.encode(frame):
                with self._progress:
                    self.frames += 1
                    self.keyframes += bool(packet.is_keyframe)
                    self._progress.notify_all()
                if self.output is not None:
                    self.output(bytes(packet), bool(packet.is_keyframe), captured)
            index += 1
            next_at += period

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> FakeH264Camera:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()
