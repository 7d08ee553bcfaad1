"""The speaker-to-microphone loopback: play a tone, listen for it; was it heard, at what frequency and
level, over what noise floor, and how long after it was played::

    result = await audio_loopback(speaker, microphone, frequency=1000)
    assert result.heard, result             # "heard 1000.2 Hz at -16.1 dBFS, 34 dB over the noise, 48 ms"

It works on real devices (a cable from output to input, or a microphone near the speaker), on PulseAudio's
null sink (its monitor hears what is played) and on the simulated room of :mod:`rtcbot.testing.sim_room`.
Silence is never "heard": the tone must stand ``min_snr_db`` above the noise floor measured just before it,
at the right frequency.

The analysis is a pure function, :func:`analyse_loopback`, usable on any recording.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import numpy as np

__all__ = ["AudioLoopbackResult", "analyse_loopback", "audio_loopback", "tone"]

_WINDOW = 0.01  # seconds of audio per amplitude measurement
_HOP = 0.0025  # seconds between measurements (the latency's resolution)


def tone(frequency: float, seconds: float, samplerate: int, amplitude: float = 0.3) -> np.ndarray:
    """A sine tone, float32, with no fade (a sharp onset to time)."""
    t = np.arange(int(seconds * samplerate)) / samplerate
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


@dataclass
class AudioLoopbackResult:
    """What :func:`audio_loopback` measured. ``heard``: the tone stood ``min_snr_db`` over the noise floor at
    the frequency played (within ``max(5 Hz, 1 %)``). Figures are None when no tone was found."""

    played_hz: float
    frequency_hz: Optional[float]
    level_dbfs: Optional[float]
    noise_floor_dbfs: float
    latency_ms: Optional[float]
    min_snr_db: float

    @property
    def snr_db(self) -> Optional[float]:
        return None if self.level_dbfs is None else self.level_dbfs - self.noise_floor_dbfs

    @property
    def heard(self) -> bool:
        if self.frequency_hz is None or self.snr_db is None:
            return False
        close = abs(self.frequency_hz - self.played_hz) <= max(5.0, 0.01 * self.played_hz)
        return close and self.snr_db >= self.min_snr_db

    ok = heard

    def figures(self) -> Dict[str, Any]:
        return {
            "heard": int(self.heard),
            "frequency_hz": _nan(self.frequency_hz),
            "level_dbfs": _nan(self.level_dbfs),
            "noise_floor_dbfs": self.noise_floor_dbfs,
            "snr_db": _nan(self.snr_db),
            "latency_ms": _nan(self.latency_ms),
        }

    def __str__(self) -> str:
        if self.frequency_hz is None:
            return (
                f"the {self.played_hz:g} Hz tone was not heard: nothing stood {self.min_snr_db:g} dB over the "
                f"noise floor ({self.noise_floor_dbfs:.1f} dBFS); is the speaker connected and loud enough, "
                "the microphone the right one?"
            )
        verdict = "heard" if self.heard else "NOT heard (wrong frequency or too quiet)"
        return (
            f"{self.played_hz:g} Hz tone {verdict}: {self.frequency_hz:.1f} Hz at {self.level_dbfs:.1f} dBFS, "
            f"{self.snr_db:.1f} dB over the noise floor ({self.noise_floor_dbfs:.1f} dBFS), "
            f"{self.latency_ms:.0f} ms after it was played"
        )


def _nan(value: Optional[float]) -> float:
    return float("nan") if value is None else float(value)


def _dbfs(samples: np.ndarray) -> float:
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if len(samples) else 0.0
    return 20 * math.log10(rms) if rms > 0 else -math.inf


def _tone_amplitudes(x: np.ndarray, frequency: float, samplerate: int) -> np.ndarray:
    """The tone's amplitude in sliding windows (``_WINDOW`` long, every ``_HOP``): a Goertzel-like measure."""
    n = max(8, int(_WINDOW * samplerate))
    hop = max(1, int(_HOP * samplerate))
    if len(x) < n:
        return np.zeros(0)
    phase = np.exp(-2j * np.pi * frequency * np.arange(len(x)) / samplerate)
    cumulative = np.concatenate([[0], np.cumsum(x * phase)])
    starts = np.arange(0, len(x) - n + 1, hop)
    return 2 * np.abs(cumulative[starts + n] - cumulative[starts]) / n


def _peak_frequency(x: np.ndarray, samplerate: int) -> float:
    """The strongest frequency in ``x`` (Hann window, zero-padded FFT, parabolic interpolation)."""
    size = 1 << int(math.ceil(math.log2(max(len(x), 1) * 4)))
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x)), size))
    spectrum[:3] = 0  # DC
    k = int(np.argmax(spectrum))
    if 0 < k < len(spectrum) - 1:
        a, b, c = np.log(spectrum[k - 1 : k + 2] + 1e-20)
        k = k + 0.5 * (a - c) / (a - 2 * b + c) if (a - 2 * b + c) != 0 else k
    return float(k * samplerate / size)


def analyse_loopback(
    quiet: np.ndarray,
    recording: np.ndarray,
    recording_start: float,
    played_at: float,
    frequency: float,
    samplerate: int,
    min_snr_db: float = 10.0,
) -> AudioLoopbackResult:
    """Find the tone of ``frequency`` in ``recording`` (mono, its first sample at ``recording_start`` on the
    monotonic clock), after ``quiet`` (the noise before it). Pure: no device, no clock."""
    noise_floor = _dbfs(quiet)
    not_found = AudioLoopbackResult(frequency, None, None, noise_floor, None, min_snr_db)
    amplitudes = _tone_amplitudes(recording, frequency, samplerate)
    noise = _tone_amplitudes(quiet, frequency, samplerate)
    noise_amplitude = float(np.percentile(noise, 99)) if len(noise) else 0.0
    if not len(amplitudes):
        return not_found
    loud = amplitudes > max(noise_amplitude * 10 ** (min_snr_db / 20), 1e-6)
    if not loud.any():
        return not_found
    steady = float(np.percentile(amplitudes[loud], 90))
    onset_window = int(np.argmax(amplitudes >= 0.5 * steady))
    n = max(8, int(_WINDOW * samplerate))
    hop = max(1, int(_HOP * samplerate))
    onset = onset_window * hop + n // 2  # half the window holds tone at half the steady amplitude
    above = np.nonzero(amplitudes >= 0.5 * steady)[0]
    end = int(above[-1]) * hop + n // 2
    margin = n
    segment = recording[onset + margin : max(onset + margin, end - margin)]
    if len(segment) < n:
        segment = recording[onset:end]
    if len(segment) < 8:
        return not_found
    latency = recording_start + onset / samplerate - played_at
    return AudioLoopbackResult(
        frequency, _peak_frequency(segment, samplerate), _dbfs(segment), noise_floor, latency * 1000, min_snr_db
    )


async def _record(subscription: Any, frames: int, timeout: float) -> List[Any]:
    blocks: List[Any] = []
    got = 0
    while got < frames:
        block = await asyncio.wait_for(subscription.get(), timeout)
        blocks.append(block)
        got += len(block)
    return blocks


def _mono(blocks: List[Any]) -> np.ndarray:
    samples = np.concatenate([np.asarray(b, dtype=np.float32).reshape(len(b), -1) for b in blocks])
    return samples.mean(axis=1)


async def audio_loopback(
    speaker: Any,
    microphone: Any,
    frequency: float = 1000.0,
    seconds: float = 0.5,
    amplitude: float = 0.3,
    max_latency: float = 1.0,
    noise_seconds: float = 0.25,
    min_snr_db: float = 10.0,
    block_timeout: float = 5.0,
) -> AudioLoopbackResult:
    """Measure the noise for ``noise_seconds``, play a ``seconds`` tone on ``speaker``, record until it
    must have been heard (``max_latency`` later) and analyse it with :func:`analyse_loopback`."""
    rate = int(microphone.samplerate)
    blocks = microphone.subscribe(asyncio.Queue())
    try:
        await asyncio.wait_for(speaker.onReady(), block_timeout)
        await asyncio.wait_for(blocks.get(), block_timeout)  # the microphone is running
        quiet = _mono(await _record(blocks, int(noise_seconds * rate), block_timeout))
        played_at = time.monotonic()
        speaker.put_nowait(tone(frequency, seconds, int(speaker.samplerate), amplitude))
        recorded = await _record(blocks, int((seconds + max_latency) * rate), block_timeout)
    finally:
        microphone.unsubscribe(blocks)
    return analyse_loopback(
        quiet, _mono(recorded), float(recorded[0].timestamp), played_at, frequency, rate, min_snr_db
    )
