"""The camera check: for a few seconds, how many frames arrive against the rate the camera reports (and the
one asked for), how old they are when they arrive, and how many were captured but never delivered::

    result = await camera_rate(camera, seconds=2, asked_fps=30)
    print(result.delivered_fps, result.reported_fps, result.age_p50_ms, result.dropped)

``reported_fps`` is what the camera says it delivers (``camera.fps``: for a V4L2 camera, what the driver
accepted, from ``CAP_PROP_FPS``), which is the figure delivery is judged against: a camera may refuse the
asked rate, and a low-light webcam may halve it; ``asked_fps`` is kept to show the difference.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import numpy as np

__all__ = ["CameraRateResult", "camera_rate"]


@dataclass
class CameraRateResult:
    """What :func:`camera_rate` measured. ``ok``: the delivered rate is within ``tolerance`` of the
    reported one and no frame was lost on the way."""

    frames: int
    seconds: float  # from the first frame's capture to the last's
    reported_fps: float
    asked_fps: Optional[float]
    dropped: int  # frames the camera counted (index) but this subscriber never got
    ages_ms: List[float]  # per frame: arrival at the subscriber minus capture time
    tolerance: float = 0.15

    @property
    def delivered_fps(self) -> float:
        return (self.frames - 1) / self.seconds if self.frames > 1 and self.seconds > 0 else 0.0

    @property
    def age_p50_ms(self) -> float:
        return float(np.percentile(self.ages_ms, 50)) if self.ages_ms else float("nan")

    @property
    def age_max_ms(self) -> float:
        return max(self.ages_ms) if self.ages_ms else float("nan")

    @property
    def ok(self) -> bool:
        if self.frames < 2 or self.reported_fps <= 0:
            return False
        return abs(self.delivered_fps - self.reported_fps) <= self.tolerance * self.reported_fps and self.dropped == 0

    def figures(self) -> Dict[str, Any]:
        figures: Dict[str, Any] = {
            "delivered_fps": self.delivered_fps,
            "reported_fps": self.reported_fps,
            "frame_age_p50_ms": self.age_p50_ms,
            "frame_age_max_ms": self.age_max_ms,
            "dropped_frames": self.dropped,
        }
        if self.asked_fps is not None:
            figures["asked_fps"] = self.asked_fps
        return figures

    def __str__(self) -> str:
        asked = f" (asked {self.asked_fps:g})" if self.asked_fps is not None else ""
        return (
            f"camera: {self.frames} frames in {self.seconds:.2f} s = {self.delivered_fps:.1f} fps delivered, "
            f"{self.reported_fps:g} reported{asked}; frame age p50 {self.age_p50_ms:.1f} ms, "
            f"max {self.age_max_ms:.1f} ms; {self.dropped} dropped"
        )


async def camera_rate(
    camera: Any, seconds: float = 2.0, asked_fps: Optional[float] = None, first_frame_timeout: float = 10.0,
    tolerance: float = 0.15,
) -> CameraRateResult:
    """Receive every frame ``camera`` delivers for ``seconds`` (after the first one) and measure them."""
    frames = camera.subscribe(asyncio.Queue())
    got: List[Any] = []
    ages: List[float] = []
    try:
        first = await asyncio.wait_for(frames.get(), first_frame_timeout)
        got.append(first)
        ages.append((time.monotonic() - first.timestamp) * 1000)
        end = time.monotonic() + seconds
        while True:
            remaining = end - time.monotonic()
            if remaining <= 0:
                break
            try:
                frame = await asyncio.wait_for(frames.get(), remaining)
            except asyncio.TimeoutError:
                break
            ages.append((time.monotonic() - frame.timestamp) * 1000)
            got.append(frame)
    finally:
        camera.unsubscribe(frames)
    span = got[-1].timestamp - got[0].timestamp
    dropped = (got[-1].index - got[0].index + 1) - len(got)
    return CameraRateResult(len(got), span, float(camera.fps), asked_fps, dropped, ages, tolerance)
