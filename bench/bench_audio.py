"""Speaker latency on real PortAudio through a private PulseAudio null sink (no sound card needed).

- end to end: ``Speaker.put_nowait(burst)`` to the burst's onset in a Microphone recording of the null
  sink's monitor (p50 and max over a few bursts), against the same burst written, from the main process, into
  a sounddevice OutputStream that is already running with the same block size and the same callback design
  (a PlaybackBuffer). The difference is what the Speaker's worker process adds: the hop to the child and
  its queueing.
- busy parent: a 440 Hz tone streamed in 1024-frame blocks, 170 ms ahead, while the main thread holds the
  GIL for ~60 ms at a time (one long C call, as a busy library call does); underflows of the Speaker
  (playing in its own process) against the in-process OutputStream (whose Python callback needs the GIL).
  Glitches = underflows mid-tone + PortAudio xruns.

- CPU: a tone streamed in real time (no GIL hog) to each player; CPU seconds per 1,000 blocks of this
  process and its workers (the Speaker's player process; the PulseAudio server counts for both alike).

The busy case has no target: on a loaded machine the player process itself can be starved of CPU, so read
it as a comparison. Both sides are measured with the same Microphone, whose block timestamps estimate
capture time, so the estimate's error is common to both. Skipped (no rows) when PulseAudio is not installed.

    python -m bench --only audio
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from ._cpu import CpuMeter
from ._table import row

BENCH = "audio"
RATE = 48000
BLOCK = 1024
FREQUENCY = 1000.0
THRESHOLD = 0.05  # |sample| above this is the burst (its amplitude is 0.5; the null sink is silent)
TIMEOUT = 10.0
AHEAD = 8  # blocks queued ahead while streaming (170 ms: more than one GIL-holding stretch)
HOG = 0.06  # seconds the main thread holds the GIL at a time in the busy case

logger = logging.getLogger("rtcbot.bench.audio")


def _burst(frames: int = RATE // 10) -> np.ndarray:
    t = np.arange(frames) / RATE
    return (0.5 * np.sin(2 * np.pi * FREQUENCY * t)).astype(np.float32)


class _DirectPlayer:
    """The baseline: an OutputStream in this process, playing from a PlaybackBuffer as Speaker's child does."""

    def __init__(self, sd: Any) -> None:
        from rtcbot.devices.audio_blocks import PlaybackBuffer

        self.buffer = PlaybackBuffer(capacity=int(0.2 * RATE), channels=1)
        self._lock = threading.Lock()
        self.xruns = 0
        self.stream = sd.OutputStream(
            device="pulse", channels=1, samplerate=RATE, blocksize=BLOCK, dtype="float32", callback=self._play
        )
        self.stream.start()

    def _play(self, outdata: Any, frames: int, time_info: Any, status: Any) -> None:
        if status and status.output_underflow:
            self.xruns += 1
        with self._lock:
            self.buffer.read_into(outdata)

    def put_nowait(self, block: np.ndarray) -> None:
        with self._lock:
            self.buffer.write(block.reshape(-1, 1))

    def close(self) -> None:
        self.stream.close()


async def _onset_after(listening: Any, started: float) -> float:
    """Seconds from ``started`` to the first loud sample in the microphone blocks read from ``listening``."""
    while True:
        block = await asyncio.wait_for(listening.get(), TIMEOUT)
        loud = np.flatnonzero(np.abs(block[:, 0]) > THRESHOLD)
        if len(loud):
            return float(block.timestamp) + loud[0] / RATE - started


async def _quiet(listening: Any, seconds: float = 0.15) -> None:
    """Read until ``seconds`` of consecutive silence have been recorded (the previous burst is over)."""
    quiet = 0
    while quiet < seconds * RATE:
        block = await asyncio.wait_for(listening.get(), TIMEOUT)
        quiet = 0 if np.abs(block).max() > THRESHOLD else quiet + len(block)


async def _latencies(players: Dict[str, Any], mic: Any, trials: int) -> Dict[str, List[float]]:
    """Onset latencies of each player, trials interleaved (ABAB...) so machine load hits both alike."""
    listening = mic.subscribe()
    try:
        results: Dict[str, List[float]] = {name: [] for name in players}
        burst = _burst()
        phases = np.random.default_rng(1).random(trials)
        for phase in phases:
            for name, player in players.items():
                await _quiet(listening)
                # A random offset within a callback period: the figures average over the callback's phase.
                await asyncio.sleep(phase * BLOCK / RATE)
                started = time.monotonic()
                player.put_nowait(burst)
                results[name].append(await _onset_after(listening, started))
        return results
    finally:
        mic.unsubscribe(listening)


class _GilHog:
    """One C call that holds the GIL for about ``seconds`` (sorting a list): a script busy in a library call."""

    def __init__(self, seconds: float) -> None:
        rng = np.random.default_rng(0)
        size = 200_000
        for _ in range(2):  # sorting is close to linear at these sizes: two rounds of scaling suffice
            self.data = rng.random(size).tolist()
            started = time.perf_counter()
            sorted(self.data)
            took = time.perf_counter() - started
            size = max(10_000, int(size * seconds / max(took, 1e-4)))
        self.seconds = took

    def __call__(self) -> None:
        sorted(self.data)


async def _busy_glitches(player: Any, glitches: Callable[[], int], seconds: float, hog: _GilHog) -> int:
    """Stream a tone in real time, AHEAD blocks ahead, while the main thread keeps holding the GIL for
    stretches shorter than what is queued; return the glitches (underflows mid-tone and xruns) it caused:
    with enough queued, they come from a callback that cannot run."""
    signal = (0.3 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * RATE)) / RATE)).astype(np.float32)
    before = glitches()
    start = time.monotonic()
    for index, first in enumerate(range(0, len(signal), BLOCK)):
        due = start + max(0, index - AHEAD) * BLOCK / RATE
        while time.monotonic() < due:
            await asyncio.sleep(0.002)  # the event loop runs: the Speaker's feed task sends what was put
            hog()
        player.put_nowait(signal[first : first + BLOCK])
    drained = asyncio.get_running_loop().time() + (AHEAD + 2) * BLOCK / RATE
    await asyncio.sleep(max(0.0, drained - asyncio.get_running_loop().time()))  # the tail plays out
    # The end of the tone counts once, if it was reported by now: in two runs it was not yet, and the row
    # said -1 glitches.
    return max(0, glitches() - before - 1)


def _no_hog() -> None:
    """The streaming loop without any GIL-holding work."""


async def _streaming_cpu(player: Any, seconds: float) -> Any:
    """CPU seconds per 1,000 blocks while ``player`` plays a ``seconds`` tone streamed in real time."""
    with CpuMeter() as cpu:
        await _busy_glitches(player, lambda: 0, seconds, _no_hog)  # type: ignore[arg-type]
    return cpu.per_1k(int(seconds * RATE) // BLOCK)


async def _measure(quick: bool) -> List[Dict[str, Any]]:
    import importlib

    from rtcbot.devices.audio import Microphone, Speaker

    sd = importlib.import_module("sounddevice")
    trials = 8 if quick else 30
    busy_seconds = 2.0 if quick else 5.0
    hog = _GilHog(HOG)
    rows: List[Dict[str, Any]] = []
    with Microphone(channels=1, blocksize=256, device="pulse") as mic, Speaker(
        channels=1, blocksize=BLOCK, device="pulse"
    ) as speaker:
        await asyncio.wait_for(mic.onReady(), TIMEOUT)
        await asyncio.wait_for(speaker.onReady(), TIMEOUT)
        direct = _DirectPlayer(sd)
        try:
            latencies = await _latencies({"speaker": speaker, "direct": direct}, mic, trials)
            base_glitches = await _busy_glitches(
                direct, lambda: direct.buffer.underflows + direct.xruns, busy_seconds, hog
            )
            ours_glitches = await _busy_glitches(
                speaker, lambda: speaker.underflows + speaker.xruns, busy_seconds, hog
            )
            base_cpu = await _streaming_cpu(direct, busy_seconds)
            ours_cpu = await _streaming_cpu(speaker, busy_seconds)
        finally:
            direct.close()
    ours, base = latencies["speaker"], latencies["direct"]
    case = f"{BLOCK}-frame blocks at {RATE} Hz, null sink"
    ms = 1000.0
    p50, base_p50 = float(np.median(ours)) * ms, float(np.median(base)) * ms
    rows.append(row(BENCH, case, "end-to-end latency p50", p50, "ms", "sounddevice in-process", base_p50))
    rows.append(row(BENCH, case, "end-to-end latency max", max(ours) * ms, "ms", "sounddevice in-process",
                    max(base) * ms))  # fmt: skip
    rows.append(row(BENCH, case, "Speaker added latency p50", p50 - base_p50, "ms", None, None, "< 25 ms",
                    p50 - base_p50 < 25))  # fmt: skip
    busy = f"{busy_seconds:.0f} s tone, GIL held {hog.seconds * 1000:.0f} ms at a time"
    rows.append(row(BENCH, busy, "glitches (underflows + xruns)", ours_glitches,
                    "count", "sounddevice in-process", base_glitches))  # fmt: skip
    streamed = f"{busy_seconds:.0f} s tone streamed in {BLOCK}-frame blocks, no load"
    rows.append(row(BENCH, streamed, "CPU per 1,000 blocks", ours_cpu or 0.0, "s", "sounddevice in-process",
                    base_cpu, cpu=ours_cpu, baseline_cpu=base_cpu))  # fmt: skip
    return rows


def run(quick: bool) -> List[Dict[str, Any]]:
    """Benchmark rows (see the module docstring); none when PulseAudio is not installed here."""
    from tests.pulse import missing_reason, pulseaudio_server

    reason: Optional[str] = missing_reason()
    if reason is not None:
        logger.warning("audio bench skipped: %s", reason)
        return []
    with pulseaudio_server():
        return asyncio.run(asyncio.wait_for(_measure(quick), 120))


if __name__ == "__main__":
    import sys

    from ._table import format_table

    print(format_table(run(quick="--quick" in sys.argv)))
