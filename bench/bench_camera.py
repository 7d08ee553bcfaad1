"""CVCamera benchmarks, on generated 640x480 MJPG files (no camera needed).

- throughput: frames/s CVCamera delivers from an unpaced file (``pace=False``) against a bare
  ``cap.read()`` loop on the same file, best of a few alternating runs (target: at least 0.95x).
- staleness: a reader taking 10 frames/s from a 30 frames/s file through the default subscription: how many
  newer frames existed when it got its frame (target: at most 1), against a FIFO queue on the same camera.

    python -m bench                 # every bench module
    python -c "import bench.bench_camera as b; print(b.run(quick=True))"
"""
from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

WIDTH, HEIGHT = 640, 480


def _write_video(path: Path, frames: int, fps: float) -> str:
    import cv2

    # A textured, changing picture, so decoding costs what a real camera's frames cost.
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    base = np.stack([(x * 255 // WIDTH), (y * 255 // HEIGHT), ((x + y) * 255 // (WIDTH + HEIGHT))], axis=2)
    base = base.astype(np.uint8)
    rng = np.random.default_rng(0)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, (WIDTH, HEIGHT))
    for i in range(frames):
        image = np.roll(base, 4 * i, axis=1)
        noise = rng.integers(0, 24, (HEIGHT // 8, WIDTH // 8, 1), dtype=np.uint8)
        image = image + np.kron(noise, np.ones((8, 8, 1), np.uint8))
        cv2.putText(image, str(i), (40, 240), cv2.FONT_HERSHEY_SIMPLEX, 4, (255, 255, 255), 8)
        writer.write(image)
    writer.release()
    return str(path)


def _bare_read_fps(path: str) -> float:
    import cv2

    start = time.perf_counter()
    cap = cv2.VideoCapture(path)
    frames = 0
    while True:
        ok, _ = cap.read()
        if not ok:
            break
        frames += 1
    cap.release()
    return frames / (time.perf_counter() - start)


class _Counter:
    """The cheapest subscription: counts what it is given."""

    def __init__(self) -> None:
        self.count = 0

    def put_nowait(self, item: Any) -> None:
        self.count += 1


async def _camera_fps(path: str) -> float:
    from rtcbot.devices.camera import CVCamera

    start = time.perf_counter()
    camera = CVCamera(cameranumber=path, pace=False)
    counter = camera.subscribe(_Counter())
    await asyncio.wait_for(camera.onClose(), 120)
    elapsed = time.perf_counter() - start
    if camera.error is not None:
        raise camera.error
    return counter.count / elapsed


async def _staleness(path: str, reads: int) -> Dict[str, float]:
    from rtcbot.devices.camera import CVCamera

    newest_ages: List[int] = []
    fifo_ages: List[int] = []
    with CVCamera(cameranumber=path, repeat=True) as camera:
        newest = camera.subscribe()  # the default: MostRecentSubscription
        fifo = camera.subscribe(asyncio.Queue())
        await asyncio.wait_for(camera.onReady(), 10)
        for _ in range(reads):
            frame = await asyncio.wait_for(newest.get(), 10)
            newest_ages.append(camera.frame_count - 1 - frame.index)
            frame = await asyncio.wait_for(fifo.get(), 10)
            fifo_ages.append(camera.frame_count - 1 - frame.index)
            await asyncio.sleep(0.1)  # the slow reader's work: 10 frames/s
    return {
        "newest_max": float(max(newest_ages)),
        "newest_mean": float(np.mean(newest_ages)),
        "fifo_max": float(max(fifo_ages)),
    }


def _row(case: str, metric: str, value: float, unit: str, baseline: Any = None, baseline_value: Any = None,
         target: Any = None) -> Dict[str, Any]:
    ratio = value / baseline_value if baseline_value else None
    return {"bench": "camera", "case": case, "metric": metric, "value": value, "unit": unit,
            "baseline": baseline, "baseline_value": baseline_value, "ratio": ratio, "target": target}


def run(quick: bool) -> List[Dict[str, Any]]:
    frames = 150 if quick else 600
    rounds = 3 if quick else 5
    reads = 20 if quick else 100
    with tempfile.TemporaryDirectory(prefix="rtcbot-bench-camera-") as tmp:
        unpaced = _write_video(Path(tmp) / "throughput.avi", frames, 30)
        bare: List[float] = []
        ours: List[float] = []
        for _ in range(rounds):  # alternate, so background load hits both alike; keep each one's best
            bare.append(_bare_read_fps(unpaced))
            ours.append(asyncio.run(_camera_fps(unpaced)))
        paced = _write_video(Path(tmp) / "staleness.avi", 90, 30)
        stale = asyncio.run(_staleness(paced, reads))
    case = f"{WIDTH}x{HEIGHT} MJPG file, {frames} frames, pace=False"
    reader = f"reader at 10 frames/s, {WIDTH}x{HEIGHT} file at 30 frames/s, {reads} reads"
    return [
        _row(case, "frames/s", max(ours), "frames/s", "bare cap.read() loop", max(bare), ">= 0.95x"),
        _row(reader, "max age (default subscription)", stale["newest_max"], "frames",
             "asyncio.Queue subscription, max age", stale["fifo_max"], "<= 1 frame"),
        _row(reader, "mean age (default subscription)", stale["newest_mean"], "frames"),
    ]


if __name__ == "__main__":
    for row in run(quick=True):
        print(row)
