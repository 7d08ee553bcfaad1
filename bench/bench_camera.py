"""CVCamera benchmarks, on generated 640x480 MJPG files (no camera needed).

- throughput: frames/s CVCamera delivers from an unpaced file (``pace=False``) against a bare
  ``cap.read()`` loop on the same file, the median of 5 alternating runs (target: at least 0.95x), and the
  CPU seconds per 1,000 frames of each, over all runs (target: at most 1.1x the bare loop's).
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

from ._cpu import CpuMeter, CpuTotals
from ._table import row

WIDTH, HEIGHT = 640, 480
ROUNDS = 5  # alternating runs of each; the figure is their median


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


def _bare_read_fps(path: str, cpu: CpuTotals) -> float:
    import cv2

    with CpuMeter() as meter:
        start = time.perf_counter()
        cap = cv2.VideoCapture(path)
        frames = 0
        while True:
            ok, _ = cap.read()
            if not ok:
                break
            frames += 1
        cap.release()
        elapsed = time.perf_counter() - start
    cpu.add(meter, frames)
    return frames / elapsed


class _Counter:
    """The cheapest subscription: counts what it is given."""

    def __init__(self) -> None:
        self.count = 0

    def put_nowait(self, item: Any) -> None:
        self.count += 1


async def _camera_fps(path: str, cpu: CpuTotals) -> float:
    from rtcbot.devices.camera import CVCamera

    with CpuMeter() as meter:
        start = time.perf_counter()
        camera = CVCamera(cameranumber=path, pace=False)
        counter = camera.subscribe(_Counter())
        await asyncio.wait_for(camera.onClose(), 120)
        elapsed = time.perf_counter() - start
    if camera.error is not None:
        raise camera.error
    cpu.add(meter, counter.count)
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


def run(quick: bool) -> List[Dict[str, Any]]:
    # 1,800 frames (about 1.2 s) per run in a full run: at 600 a run lasted 0.4 s and one preemption moved it.
    # The median of 5 still moves by about 5% either way with the host (0.87x-1.05x over 23 runs of the same
    # code on a shared 2-core VM): compare several runs, not one.
    frames = 150 if quick else 1800
    reads = 20 if quick else 100
    bare_cpu, ours_cpu = CpuTotals(), CpuTotals()
    with tempfile.TemporaryDirectory(prefix="rtcbot-bench-camera-") as tmp:
        unpaced = _write_video(Path(tmp) / "throughput.avi", frames, 30)
        bare: List[float] = []
        ours: List[float] = []
        for _ in range(ROUNDS):  # alternate, so background load hits both alike; the median of each
            bare.append(_bare_read_fps(unpaced, bare_cpu))
            ours.append(asyncio.run(_camera_fps(unpaced, ours_cpu)))
        paced = _write_video(Path(tmp) / "staleness.avi", 90, 30)
        stale = asyncio.run(_staleness(paced, reads))
    case = f"{WIDTH}x{HEIGHT} MJPG file, {frames} frames, pace=False, median of {ROUNDS}"
    reader = f"reader at 10 frames/s, {WIDTH}x{HEIGHT} file at 30 frames/s, {reads} reads"
    ours_fps, bare_fps = float(np.median(ours)), float(np.median(bare))
    return [
        row("camera", case, "frames/s", ours_fps, "frames/s", "bare cap.read() loop", bare_fps, ">= 0.95x",
            ours_fps >= 0.95 * bare_fps, cpu=ours_cpu.per_1k(), baseline_cpu=bare_cpu.per_1k(), cpu_limit=1.1),
        row("camera", reader, "max age (default subscription)", stale["newest_max"], "frames",
            "asyncio.Queue subscription, max age", stale["fifo_max"], "<= 1 frame", stale["newest_max"] <= 1),
        row("camera", reader, "mean age (default subscription)", stale["newest_mean"], "frames"),
    ]  # fmt: skip


if __name__ == "__main__":
    from ._table import format_table

    print(format_table(run(quick=True)))
