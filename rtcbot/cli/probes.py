"""Device checks for ``rtcbot check``: one :class:`Probe` per kind of device, all run the same way.

A probe opens its device through rtcbot's own class (``create``), follows it while :func:`run_probe` lets
it run (``started``, then ``tick`` a few times a second), says how it did (``report``) and closes it
(``close``)::

    probe = CameraProbe("sim-camera", SimCamera)
    result = await run_probe(probe, seconds=3, progress=Progress(sys.stdout))
    print(result.ok, result.summary)                  # True  30.0 fps (asked 30)  320x240  90 frames

A new kind of device needs one subclass with those four methods, nothing else.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from ..errors import RtcbotError
from .output import Progress, error_text

__all__ = ["Result", "Probe", "CameraProbe", "MicrophoneProbe", "SpeakerProbe", "SerialProbe", "run_probe"]

#: Seconds a device gets to deliver its first item (or open) before the check calls it failed.
OPEN_TIMEOUT = 5.0


@dataclass
class Result:
    label: str
    ok: bool
    summary: str


class Probe:
    """Checks one device: ``create`` opens it, ``started``/``tick`` follow it, ``report`` judges it,
    ``close`` releases it (idempotent, also after a failed ``create``).

    ``make`` is called with no arguments and returns the rtcbot device object (a producer or consumer).
    """

    #: What ``report`` says when the device never started within :data:`OPEN_TIMEOUT`.
    not_started = "did not start"
    #: Whether the device counts as started when it is ready; otherwise the probe calls
    #: :meth:`_mark_started` (e.g. at the first frame).
    starts_when_ready = True

    def __init__(self, label: str, make: Callable[[], Any]) -> None:
        self.label = label
        self.make = make
        self.device: Any = None
        self.started: Optional[asyncio.Event] = None

    def create(self) -> Any:
        """Open the device (raises RtcbotError if it cannot) and start watching it. Runs on the event loop;
        :attr:`started` is set once the device works (by default: when it is ready)."""
        self.started = asyncio.Event()
        self.device = self.make()
        if self.starts_when_ready:
            self.device.onReady(self._mark_started)
        return self.device

    def _mark_started(self) -> None:
        if self.started is not None:
            self.started.set()

    def tick(self, elapsed: float) -> str:
        """Called a few times a second while it runs (a speaker is fed here); returns the status line."""
        return f"{elapsed:4.1f} s"

    def report(self, seconds: float) -> Result:
        """How it did, after running ``seconds`` (called only if it started and did not fail)."""
        return Result(self.label, True, "ok")

    def close(self) -> None:
        if self.device is not None:
            self.device.close()


async def run_probe(probe: Probe, seconds: float, progress: Progress) -> Result:
    """Open, run for ``seconds`` after the device started, report and close: a failure is a Result, not an
    exception (the next device is checked either way)."""
    label = probe.label
    progress.start(label, seconds)
    try:
        try:
            device = probe.create()
        except RtcbotError as e:
            return Result(label, False, error_text(e))
        try:
            await _run_for(device, seconds, lambda elapsed: progress.update(label, probe.tick(elapsed)), probe)
        except TimeoutError as e:
            return Result(label, False, f"{probe.not_started}: {e}")
        finally:
            probe.close()
        if device.error is not None:
            return Result(label, False, error_text(device.error))
        return probe.report(seconds)
    finally:
        probe.close()


async def _run_for(device: Any, seconds: float, tick: Callable[[float], None], probe: Probe) -> None:
    """Let ``device`` run for ``seconds`` after ``probe.started`` is set, calling ``tick(elapsed)`` a few times a
    second; returns early if the device closes (an error). TimeoutError if it never starts."""

    async def wait_closed() -> None:
        await device.onClose()

    assert probe.started is not None, "create() first"
    closed = asyncio.ensure_future(wait_closed())
    started = asyncio.ensure_future(probe.started.wait())
    try:
        deadline = time.monotonic() + OPEN_TIMEOUT
        while not started.done():  # woken by the start; the timeout only paces the status line
            await asyncio.wait({closed, started}, timeout=0.25, return_when=asyncio.FIRST_COMPLETED)
            if closed.done():
                return
            if not started.done() and time.monotonic() > deadline:
                raise TimeoutError(f"nothing in {OPEN_TIMEOUT:g} s")
            tick(0.0)
        t_start = time.monotonic()
        while True:
            elapsed = time.monotonic() - t_start
            if elapsed >= seconds:
                return
            await asyncio.wait({closed}, timeout=min(0.25, seconds - elapsed))
            if closed.done():
                return
            tick(time.monotonic() - t_start)
    finally:
        for task in (closed, started):
            task.cancel()
        await asyncio.gather(closed, started, return_exceptions=True)


# ---------------------------------------------------------------------------------------------------------


class CameraProbe(Probe):
    """Frames per second (from the frames' capture stamps), size and count."""

    not_started = "no frames"
    starts_when_ready = False  # at the first frame

    def __init__(self, label: str, make: Callable[[], Any]) -> None:
        super().__init__(label, make)
        self.times: List[float] = []
        self.shape: Any = None

    def create(self) -> Any:
        camera = super().create()
        camera.subscribe(self._on_frame)
        return camera

    def _on_frame(self, frame: Any) -> None:
        # capture time when the camera stamps its frames (Frame.timestamp), arrival time otherwise
        self.times.append(getattr(frame, "timestamp", None) or time.monotonic())
        self.shape = getattr(frame, "shape", None)
        self._mark_started()

    def _fps(self) -> float:
        t = self.times
        return (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 and t[-1] > t[0] else 0.0

    def _size(self) -> str:
        s = self.shape
        return f"{s[1]}x{s[0]}" if s is not None and len(s) >= 2 else "?"

    def tick(self, elapsed: float) -> str:
        return f"{elapsed:4.1f} s  {len(self.times):4d} frames  {self._fps():5.1f} fps  {self._size()}"

    def report(self, seconds: float) -> Result:
        asked = getattr(self.device, "fps", None)
        asked_text = f" (asked {asked:g})" if asked else ""
        return Result(self.label, True, f"{self._fps():5.1f} fps{asked_text}  {self._size()}  {len(self.times)} frames")


def dbfs(sum_squares: float, count: float) -> float:
    """RMS level in dB relative to full scale (a full-scale sine is -3 dBFS); -inf for silence."""
    if count == 0 or sum_squares <= 0:
        return -math.inf
    return 10 * math.log10(sum_squares / count)


def as_float_audio(block: np.ndarray) -> np.ndarray:
    """Audio samples scaled to [-1, 1] whatever the sample type."""
    if np.issubdtype(block.dtype, np.integer):
        return block.astype(np.float64) / float(np.iinfo(block.dtype).max + 1)
    return block.astype(np.float64)


class MicrophoneProbe(Probe):
    """Sound level (dBFS), format, blocks and overflows; warns when every sample is zero."""

    not_started = "no sound blocks"
    starts_when_ready = False  # at the first block

    def __init__(self, label: str, make: Callable[[], Any]) -> None:
        super().__init__(label, make)
        self.sum_squares = 0.0
        self.count = 0
        self.blocks = 0
        self.all_zero = True

    def create(self) -> Any:
        mic = super().create()
        mic.subscribe(self._on_block)
        return mic

    def _on_block(self, block: Any) -> None:
        samples = as_float_audio(np.asarray(block))
        self.sum_squares += float(np.sum(samples * samples))
        self.count += samples.size
        self.blocks += 1
        self.all_zero = self.all_zero and not np.any(samples)
        self._mark_started()

    def _text(self) -> str:
        rate, channels = getattr(self.device, "samplerate", None), getattr(self.device, "channels", None)
        fmt = f"  {rate:g} Hz {channels} ch" if rate and channels else ""
        parts = [f"level {dbfs(self.sum_squares, self.count):5.1f} dBFS{fmt}", f"{self.blocks} blocks"]
        overflows = getattr(self.device, "overflows", None)
        if overflows is not None:
            parts.append(f"{overflows} overflows")
        return "  ".join(parts)

    def tick(self, elapsed: float) -> str:
        return f"{elapsed:4.1f} s  {self._text()}"

    def report(self, seconds: float) -> Result:
        warning = "  (all samples zero: muted, or the wrong input?)" if self.all_zero else ""
        return Result(self.label, True, self._text() + warning)


class SpeakerProbe(Probe):
    """Opens the output and plays silence (nothing audible), counting underflows."""

    BLOCK_SECONDS = 0.1

    def __init__(self, label: str, make: Callable[[], Any]) -> None:
        super().__init__(label, make)
        self.sent = 0

    def _format(self) -> tuple[int, int]:
        rate = int(getattr(self.device, "samplerate", 48000) or 48000)
        return rate, int(getattr(self.device, "channels", 1) or 1)

    def tick(self, elapsed: float) -> str:
        rate, channels = self._format()
        block = np.zeros((int(rate * self.BLOCK_SECONDS), channels), dtype=np.float32)
        while self.sent * self.BLOCK_SECONDS < elapsed + 0.2:  # keep ~200 ms queued ahead
            self.device.put_nowait(block)
            self.sent += 1
        return f"{elapsed:4.1f} s  playing silence"

    def report(self, seconds: float) -> Result:
        rate, channels = self._format()
        underflows = getattr(self.device, "underflows", None)
        extra = f"  {underflows} underflows" if underflows is not None else ""
        return Result(self.label, True, f"opened, played {seconds:g} s of silence ({rate} Hz, {channels} ch){extra}")


class SerialProbe(Probe):
    """Opens the port and counts what arrives: bytes for a raw port, messages for a port with a protocol.

    ``cleanup`` runs after the port closes (e.g. to stop the simulated Arduino serving it).
    """

    not_started = "did not open"

    def __init__(self, label: str, make: Callable[[], Any], cleanup: Optional[Callable[[], None]] = None) -> None:
        super().__init__(label, make)
        self.counts: Dict[str, int] = {"items": 0, "bytes": 0}
        self._cleanup = cleanup

    def create(self) -> Any:
        port = super().create()
        port.subscribe(self._on_item)
        return port

    def _on_item(self, item: Any) -> None:
        self.counts["items"] += 1
        if isinstance(item, (bytes, bytearray)):
            self.counts["bytes"] += len(item)

    def _received(self, seconds: float) -> str:
        if self.counts["bytes"]:
            return f"{self.counts['bytes']} bytes received ({self.counts['bytes'] / seconds:.0f} B/s)"
        if self.counts["items"]:
            return f"{self.counts['items']} messages received ({self.counts['items'] / seconds:.1f}/s)"
        return "nothing received"

    def tick(self, elapsed: float) -> str:
        return f"{elapsed:4.1f} s  open, {self._received(max(elapsed, 0.001))}"

    def report(self, seconds: float) -> Result:
        hint = "" if self.counts["items"] else " (it sent nothing: is a sketch running, at the right baud rate?)"
        dropped = getattr(self.device, "read_dropped", 0)
        dropped_text = f", {dropped} corrupt messages dropped" if dropped else ""
        return Result(self.label, True, f"open, {self._received(seconds)}{dropped_text}{hint}")

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self._cleanup is not None:
                cleanup, self._cleanup = self._cleanup, None
                cleanup()
