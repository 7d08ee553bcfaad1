"""Soak: every kind of device running for a long time, with a slow consumer; memory and handles must stay flat.

What runs (all at once, in this process and its workers):

- a simulated camera, 640x480 at 30 frames/s, read by a fast reader (``camera.get()``) and by a slow
  consumer: a worker *process* that takes ~0.1 s per frame (frames cross through shared memory, and the
  camera's newest-frame subscription drops what it is too slow for);
- a simulated microphone at 48 kHz (480-sample blocks) played by a Speaker (a worker process, on the fake
  sounddevice from ``tests/fakes``: no sound card needed);
- a SerialConnection to a simulated Arduino (a separate process on a pty): 1,000 motor commands/s written,
  each answered with a sensor reading (1,000 readings/s read back).

Every ``sample_every`` seconds it records RSS, threads, file descriptors, shared-memory segments
(``/dev/shm`` files and memfd regions mapped by this process) and child processes, and the rates achieved.
After ``warmup`` seconds, RSS must grow by less than 5 MB and the counts must not change::

    python -m bench --only soak            # 10 minutes, a line every 30 s
    python -m bench --only soak --quick    # 20 s
    python -m bench.bench_soak --minutes 3 # any length, printing the samples as they come

``tests/test_soak.py`` runs the 20-second version.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

import psutil

from rtcbot.base import ProcessSubscriptionConsumer
from rtcbot.devices.arduino_sim import SERIAL_OPTIONS
from rtcbot.devices.audio import Speaker
from rtcbot.devices.serial import SerialConnection
from rtcbot.devices.sim import SimCamera, SimMicrophone
from rtcbot.subscriptions import BoundedQueue

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAKE_SOUNDDEVICE = "tests.fakes.sounddevice"
MB = 1024 * 1024

CAMERA_FPS = 30
AUDIO_RATE = 48000
AUDIO_BLOCK = 480
SERIAL_RATE = 1000  # motor commands written per second (each answered with a reading)
SLOW_WORK = 0.1  # seconds the slow consumer spends on each frame
RSS_LIMIT_MB = 5.0


@dataclass
class Sample:
    """One measurement of the process, ``t`` seconds into the soak."""

    t: float
    rss_mb: float
    threads: int
    fds: int
    segments: int
    children: int
    frames: int  # frames the fast reader got
    camera_frames: int  # frames the camera produced
    readings: int
    audio_blocks: int
    workers_mb: Dict[str, float] = field(default_factory=dict)  # RSS of each worker process

    def line(self) -> str:
        return (
            f"{self.t:7.1f} s  RSS {self.rss_mb:7.1f} MB  threads {self.threads:3d}  fds {self.fds:4d}  "
            f"segments {self.segments:2d}  children {self.children}  frames {self.frames}  "
            f"of {self.camera_frames}  readings {self.readings}  audio blocks {self.audio_blocks}  workers "
            + " ".join(f"{name} {mb:.1f}" for name, mb in sorted(self.workers_mb.items()))
            + " MB"
        )


@dataclass
class SoakResult:
    """The samples and what they show; ``warm`` is the sample taken at the end of the warm-up."""

    samples: List[Sample]
    warmup: float
    speaker_dropped: int = 0
    writes_dropped: int = 0
    errors: Dict[str, str] = field(default_factory=dict)

    @property
    def warm(self) -> Sample:
        return next(s for s in self.samples if s.t >= self.warmup)

    @property
    def after_warmup(self) -> List[Sample]:
        return [s for s in self.samples if s.t >= self.warmup]

    @property
    def rss_growth_mb(self) -> float:
        """Largest RSS after the warm-up minus RSS at its end."""
        return max(s.rss_mb for s in self.after_warmup) - self.warm.rss_mb

    @property
    def worker_growth_mb(self) -> Dict[str, float]:
        """Per worker process: largest RSS after the warm-up minus its RSS at the end of it."""
        warm = self.warm.workers_mb
        return {
            name: max(s.workers_mb.get(name, 0.0) for s in self.after_warmup) - mb for name, mb in warm.items()
        }

    def spread(self, name: str) -> int:
        """How far a count moved after the warm-up (max - min)."""
        values = [getattr(s, name) for s in self.after_warmup]
        return max(values) - min(values)

    def rate(self, name: str) -> float:
        """Items per second of a counter over the samples after the warm-up."""
        first, last = self.warm, self.samples[-1]
        return (getattr(last, name) - getattr(first, name)) / max(1e-9, last.t - first.t)


class SlowConsumer(ProcessSubscriptionConsumer):
    """A consumer in its own process that takes ``SLOW_WORK`` seconds over each frame."""

    def __init__(self, work: float) -> None:
        self.work = work
        super().__init__()

    def _consumer(self) -> None:
        self._setReady(True)
        while True:
            frame = self._get()
            frame.mean()  # looks at the frame, so the copy is really made and used
            if self._wait_closed(self.work):  # the "work": a slow vision step, interrupted by close()
                return


class _FakeSpeaker(Speaker):
    _sounddevice_module = FAKE_SOUNDDEVICE


def _fake_speaker() -> Speaker:
    """A Speaker playing on the fake sounddevice (imported in its worker process by module name)."""
    if ROOT not in sys.path:  # tests.fakes is imported by name, here and in the worker
        sys.path.insert(0, ROOT)
    return _FakeSpeaker(samplerate=AUDIO_RATE, blocksize=AUDIO_BLOCK)


async def _started(name: str, device: Any, timeout: float = 30.0) -> None:
    """Wait until ``device`` is ready; raise if it fails (or takes ``timeout`` seconds) instead."""
    ready = asyncio.ensure_future(device.onReady().get())
    failed = asyncio.ensure_future(device.onError().get())
    try:
        await asyncio.wait({ready, failed}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in (ready, failed):
            waiter.cancel()
        await asyncio.gather(ready, failed, return_exceptions=True)
    if device.error is not None:
        raise RuntimeError(f"the soak's {name} failed to start: {device.error!r}")
    if not device.ready:
        raise RuntimeError(f"the soak's {name} was not ready within {timeout} s")


def _worker_rss_mb(devices: Dict[str, Any]) -> Dict[str, float]:
    """RSS of each device's worker process, in MB."""
    sizes = {}
    for name, device in devices.items():
        process = getattr(device, "_process", None)
        if process is not None and process.pid is not None:
            with contextlib.suppress(psutil.NoSuchProcess):
                sizes[name] = psutil.Process(process.pid).memory_info().rss / MB
    return sizes


def _segments() -> int:
    """Shared memory this process maps: /dev/shm files and memfd regions, each counted once."""
    names = set()
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            if len(fields) == 6 and (fields[5].startswith("/dev/shm/") or "memfd:" in fields[5]):
                names.add((fields[4], fields[5].strip()))  # (inode, name)
    return len(names)


@contextlib.contextmanager
def _simulated_arduino() -> Any:
    """The simulated Arduino in its own process (as a real board is): yields its port."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "rtcbot.devices.arduino_sim", "--period", "0.05", "--watchdog", "0.5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        port = proc.stdout.readline().strip()
        if not port:
            raise RuntimeError("the simulated Arduino did not start")
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()


async def _soak(
    duration: float, sample_every: float, warmup: float, report: Optional[Callable[[Sample], None]]
) -> SoakResult:
    me = psutil.Process()
    counts = {"frames": 0, "readings": 0, "audio": 0}
    result = SoakResult([], warmup)
    stop = asyncio.Event()

    with contextlib.ExitStack() as stack:
        port = stack.enter_context(_simulated_arduino())
        speaker = stack.enter_context(_fake_speaker())  # spawned first: see tests/scripts/all_devices.py
        slow = stack.enter_context(SlowConsumer(SLOW_WORK))
        camera = stack.enter_context(SimCamera(640, 480, fps=CAMERA_FPS))
        mic = stack.enter_context(SimMicrophone(samplerate=AUDIO_RATE, blocksize=AUDIO_BLOCK))
        conn = stack.enter_context(SerialConnection(port, **SERIAL_OPTIONS))
        devices = {"speaker": speaker, "slow": slow, "camera": camera, "mic": mic, "serial": conn}
        for name, device in devices.items():
            await _started(name, device)
        speaker.putSubscription(mic)
        slow.putSubscription(camera)

        async def read_frames() -> None:
            while not stop.is_set():
                await camera.get()
                counts["frames"] += 1

        async def read_audio() -> None:
            blocks = mic.subscribe(BoundedQueue(64))
            while not stop.is_set():
                await blocks.get()
                counts["audio"] += 1

        async def read_serial() -> None:
            readings = conn.subscribe(BoundedQueue(4096))
            while not stop.is_set():
                await readings.get()
                counts["readings"] += 1

        async def write_serial() -> None:
            loop = asyncio.get_running_loop()
            batch = SERIAL_RATE // 100
            due = loop.time()
            n = 0
            while not stop.is_set():
                for _ in range(batch):
                    n += 1
                    conn.put_nowait({"left": n % 200, "right": -(n % 200)})
                due += 0.01
                await asyncio.sleep(max(0.0, due - loop.time()))  # pacing the writes, 100 batches/s

        tasks = [
            asyncio.ensure_future(coro)
            for coro in (read_frames(), read_audio(), read_serial(), write_serial())
        ]
        try:
            start = time.monotonic()
            next_sample = start
            while True:
                now = time.monotonic()
                sample = Sample(
                    t=now - start,
                    rss_mb=me.memory_info().rss / MB,
                    threads=len(os.listdir("/proc/self/task")),
                    fds=len(os.listdir("/proc/self/fd")),
                    segments=_segments(),
                    children=len(me.children(recursive=True)),
                    frames=counts["frames"],
                    camera_frames=camera.frame_count,
                    readings=counts["readings"],
                    audio_blocks=counts["audio"],
                    workers_mb=_worker_rss_mb(devices),
                )
                result.samples.append(sample)
                if report is not None:
                    report(sample)
                for name, device in devices.items():
                    if device.error is not None:
                        result.errors[name] = repr(device.error)
                if result.errors or sample.t >= duration:
                    break
                next_sample += sample_every
                await asyncio.sleep(max(0.0, next_sample - time.monotonic()))  # the sampling period
        finally:
            stop.set()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            result.speaker_dropped = speaker.dropped
            result.writes_dropped = conn.writes_dropped
    return result


def soak(
    duration: float, sample_every: float, warmup: float, report: Optional[Callable[[Sample], None]] = None
) -> SoakResult:
    """Run the soak for ``duration`` seconds in a fresh event loop; ``report`` sees each sample."""
    return asyncio.run(_soak(duration, sample_every, warmup, report))


def _print_sample(sample: Sample) -> None:
    print("  soak", sample.line(), flush=True)


def _print_progress(sample: Sample) -> None:
    """Samples as the soak goes, on stderr: stdout keeps the results table and summary on one screen."""
    print("  soak", sample.line(), file=sys.stderr, flush=True)


def run(quick: bool) -> List[Dict[str, Any]]:
    from ._cpu import CpuMeter
    from ._table import row

    duration, every, warmup = (20.0, 2.0, 5.0) if quick else (600.0, 30.0, 60.0)
    with CpuMeter() as cpu:  # this process and every worker and simulated board
        result = soak(duration, every, warmup, report=_print_progress)
    case = f"{duration:.0f} s, warm-up {warmup:.0f} s"
    growth = result.rss_growth_mb
    rows = [
        row("soak", case, "RSS growth after warm-up", growth, "MB", None, None, f"< {RSS_LIMIT_MB} MB",
            growth < RSS_LIMIT_MB),
    ]
    for name, growth in sorted(result.worker_growth_mb.items()):
        rows.append(row("soak", case, f"{name} worker RSS growth after warm-up", growth, "MB", None, None,
                        f"< {RSS_LIMIT_MB} MB", growth < RSS_LIMIT_MB))
    for name in ("threads", "fds", "segments", "children"):
        spread = result.spread(name)
        rows.append(row("soak", case, f"{name} change after warm-up", spread, "count", None, None, "0",
                        spread == 0))
    rows += [
        row("soak", case, "camera frames read", result.rate("frames"), "frames/s", "configured",
            CAMERA_FPS),
        row("soak", case, "audio blocks read", result.rate("audio_blocks") * AUDIO_BLOCK, "samples/s",
            "configured", AUDIO_RATE),
        row("soak", case, "serial readings read", result.rate("readings"), "messages/s", "commands sent",
            SERIAL_RATE),
    ]
    frames = result.rate("frames") * duration
    rows.append(row("soak", case, "CPU, every device at once (CPU s/1k: per camera frame)",
                    (cpu.seconds or 0.0) / duration, "cores", cpu=cpu.per_1k(frames)))  # fmt: skip
    if result.errors:
        raise RuntimeError(f"devices failed during the soak: {result.errors}")
    return rows


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Soak every device and print memory and handle counts.")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--every", type=float, default=30.0, help="seconds between samples")
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds before the baseline sample")
    args = parser.parse_args(argv)
    result = soak(args.minutes * 60, args.every, args.warmup, report=_print_sample)
    print(
        f"RSS growth after warm-up {result.rss_growth_mb:.2f} MB (workers: "
        + ", ".join(f"{name} {mb:.2f}" for name, mb in sorted(result.worker_growth_mb.items()))
        + f" MB); change after warm-up: threads "
        f"{result.spread('threads')}, fds {result.spread('fds')}, segments {result.spread('segments')}, "
        f"children {result.spread('children')}; rates: camera {result.rate('frames'):.1f} frames/s, audio "
        f"{result.rate('audio_blocks') * AUDIO_BLOCK:.0f} samples/s, serial {result.rate('readings'):.0f} "
        f"readings/s; errors {result.errors or 'none'}"
    )
    return 0 if not result.errors else 1


if __name__ == "__main__":
    raise SystemExit(main())
