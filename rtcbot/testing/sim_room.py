"""A simulated room: what a simulated speaker plays, a simulated microphone hears, after a delay.

rtcbot's :class:`~rtcbot.SimMicrophone` hears a fixed tone and :class:`~rtcbot.SimSpeaker` plays to nowhere,
so a speaker-to-microphone loopback cannot be checked on them. Here the two share a :class:`SimRoom`: audio
given to the :class:`RoomSpeaker` reaches the :class:`RoomMicrophone` ``latency`` seconds later, over a
little noise, in real time, with the same interfaces and block timestamps as the real devices::

    room = SimRoom(samplerate=48000, latency=0.03)
    with RoomSpeaker(room) as speaker, RoomMicrophone(room) as mic:
        speaker.put_nowait(tone)           # heard by mic 30 ms later
        block = await mic.get()

The rtcbot_speaker and rtcbot_microphone fixtures give this pair when they are simulated.
"""

from __future__ import annotations

import threading
import time
from typing import Any, List, Optional, Tuple

import numpy as np

from ..devices.audio_blocks import AudioBlock, as_playable
from ..devices.sim import SimMicrophone, SimSpeaker
from ..errors import InvalidItemError

__all__ = ["RoomMicrophone", "RoomSpeaker", "SimRoom"]


class SimRoom:
    """The air between a simulated speaker and microphone: a timeline of played samples (mono, float32).

    ``latency`` is the delay from a block reaching the speaker to the microphone hearing its first sample
    (a sound card's output and input buffers, and the distance); blocks queue one after the other, as on a
    sound card, and a block arriving after the queue ran dry starts ``latency`` after its arrival.
    """

    def __init__(self, samplerate: int = 48000, latency: float = 0.03, gain: float = 1.0) -> None:
        if samplerate <= 0 or latency < 0:
            raise ValueError(f"SimRoom needs a positive samplerate and latency >= 0, got {samplerate}, {latency}")
        self.samplerate = int(samplerate)
        self.latency = float(latency)
        self.gain = float(gain)
        self._origin = time.monotonic()
        self._lock = threading.Lock()
        self._segments: List[Tuple[int, np.ndarray]] = []  # (first sample, samples), in order
        self._cursor = 0  # the sample where queued audio ends

    def sample_at(self, t: float) -> int:
        """The timeline position of ``time.monotonic()`` value ``t``."""
        return round((t - self._origin) * self.samplerate)

    def play(self, samples: np.ndarray, now: Optional[float] = None) -> int:
        """Queue mono samples played at ``now`` (default: the current time); returns their first position."""
        now = time.monotonic() if now is None else now
        mono = np.asarray(samples, dtype=np.float32).reshape(len(samples), -1).mean(axis=1)
        with self._lock:
            start = max(self.sample_at(now + self.latency), self._cursor)
            self._segments.append((start, self.gain * mono))
            self._cursor = start + len(mono)
        return start

    def hear(self, start: int, frames: int) -> np.ndarray:
        """The samples at positions ``start .. start + frames`` (zeros where nothing played); audio before
        ``start`` is forgotten, as the microphone reads in order."""
        out = np.zeros(frames, dtype=np.float32)
        end = start + frames
        with self._lock:
            self._segments = [(s, x) for s, x in self._segments if s + len(x) > start]
            segments = list(self._segments)
        for s, x in segments:
            if s >= end:
                break
            lo, hi = max(s, start), min(s + len(x), end)
            out[lo - start : hi - start] += x[lo - s : hi - s]
        return out


class RoomSpeaker(SimSpeaker):
    """A :class:`~rtcbot.SimSpeaker` whose audio goes into a :class:`SimRoom` (and is measured, as before)."""

    def __init__(self, room: SimRoom, channels: int = 1, blocksize: int = 1024, **kwargs: Any) -> None:
        self.room = room
        super().__init__(samplerate=room.samplerate, channels=channels, blocksize=blocksize, **kwargs)
        self.device_name = "simulated speaker (in a simulated room)"

    def _get(self) -> Any:
        item = super()._get()
        try:
            self.room.play(as_playable(item, self.channels))
        except InvalidItemError:
            pass  # SimSpeaker reports it
        return item


class RoomMicrophone(SimMicrophone):
    """A :class:`~rtcbot.SimMicrophone` that hears a :class:`SimRoom` over Gaussian noise (``noise``, the
    noise's standard deviation: 0.003 is about -50 dBFS), instead of its own tone."""

    def __init__(self, room: SimRoom, channels: int = 1, blocksize: int = 1024, noise: float = 0.003,
                 **kwargs: Any) -> None:
        self.room = room
        super().__init__(samplerate=room.samplerate, channels=channels, blocksize=blocksize, amplitude=0.0,
                         noise=noise, **kwargs)
        self.device_name = "simulated microphone (in a simulated room)"

    def _put_nowait(self, element: Any) -> None:
        if isinstance(element, AudioBlock) and element.timestamp is not None:
            heard = self.room.hear(self.room.sample_at(element.timestamp), len(element))
            mixed = np.clip(np.asarray(element) + heard[:, None], -1.0, 1.0).astype(np.float32)
            element = AudioBlock(mixed, element.timestamp, element.index)
        super()._put_nowait(element)
