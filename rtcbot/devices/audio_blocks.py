"""Audio blocks without I/O: converting what a user puts into a Speaker, and the buffer it plays from.

Nothing here touches a sound card, so all of it is tested on its own (``tests/test_audio_blocks.py``).

- :class:`AudioBlock`: what a Microphone delivers, a float32 ``(frames, channels)`` array carrying its capture
  time and sequence number.
- :func:`check_playable` / :func:`as_playable`: turn a mono or multi-channel block of float or int16 samples
  into the float32 ``(frames, channels)`` layout an output stream wants, or raise :class:`InvalidItemError`
  saying what is wrong with it.
- :class:`PlaybackBuffer`: a ring buffer of samples with a latency bound. Blocks of any length go in; the
  audio callback takes out exactly as many frames as it is asked for (the re-chunking), padded with silence
  when there is not enough; when more than the bound is queued the oldest audio is dropped, so playback never
  lags seconds behind a producer that delivers faster than real time.

::

    buf = PlaybackBuffer(capacity=9600, channels=2)       # at most 0.2 s queued at 48 kHz
    buf.write(as_playable(np.zeros(480, np.int16), 2))    # mono int16 -> stereo float32
    out = np.empty((1024, 2), np.float32)
    played = buf.read_into(out)                           # 480 frames of audio, then silence
"""
from __future__ import annotations

import collections
from typing import Any, Deque

import numpy as np

from rtcbot.errors import InvalidItemError

from .stamped import StampedArray

__all__ = ["INT_SCALES", "AudioBlock", "PlaybackBuffer", "as_playable", "check_playable"]

# Integer sample formats a Speaker accepts, with the value that maps to full scale (1.0).
INT_SCALES = {np.dtype(np.int16): 32768.0, np.dtype(np.int32): 2147483648.0}


class AudioBlock(StampedArray):
    """A block of audio samples: a numpy array that also knows when it was captured and which block it is.

    ``block.timestamp`` estimates when the block's first sample reached the sound card, in seconds on the
    ``time.monotonic()`` clock (as a camera ``Frame``'s), and ``block.index`` counts the blocks the
    microphone delivered, from 0 (a gap means blocks were lost). Use it as any array::

        block = await mic.get()                      # shape (blocksize, channels), float32
        age = time.monotonic() - block.timestamp     # how old the first sample is, in seconds
        left = block[:, 0]                           # slices keep timestamp and index
        plain = np.asarray(block)                    # a plain ndarray view, no attributes

    Reductions (``block.max()``) give plain numpy scalars. It survives pickling with its attributes.
    """


def check_playable(item: Any, channels: int) -> None:
    """Raise :class:`InvalidItemError` unless ``item`` is audio a ``channels``-channel speaker can play.

    Playable: a numpy array of float or int16/int32 samples, either 1-D (mono) or 2-D ``(frames, c)`` with
    ``c`` equal to ``channels`` or 1 (copied to every channel), or any ``c`` when ``channels`` is 1 (mixed
    down). Float samples must be finite: NaN or infinity is refused (not clipped: no sound is right for
    them, and a sound card given NaN plays noise or a full-scale click). Cheap enough (one pass over the
    samples for floats, none for ints) for a Speaker to call it in ``put_nowait``.
    """
    if not isinstance(item, np.ndarray):
        raise InvalidItemError(
            f"a Speaker plays numpy arrays of samples, got {type(item).__name__}; "
            "pass an array of shape (frames,) or (frames, channels)"
        )
    if item.dtype.kind != "f" and item.dtype not in INT_SCALES:
        raise InvalidItemError(
            f"a Speaker plays float or int16/int32 samples, got dtype {item.dtype}; "
            "convert with block.astype(np.float32) (values in -1..1)"
        )
    if item.ndim not in (1, 2):
        raise InvalidItemError(
            f"an audio block is (frames,) or (frames, channels), got shape {item.shape}"
        )
    block_channels = 1 if item.ndim == 1 else item.shape[1]
    if block_channels not in (1, channels) and channels != 1:
        raise InvalidItemError(
            f"a block with {block_channels} channels (shape {item.shape}) cannot be played on a "
            f"{channels}-channel speaker; give 1 or {channels} channels"
        )
    if item.dtype.kind == "f" and not np.isfinite(item).all():
        bad = int(np.count_nonzero(~np.isfinite(item)))
        raise InvalidItemError(
            f"an audio block of shape {item.shape} holds {bad} NaN or infinite sample(s); a Speaker refuses "
            "it rather than guess: check the computation that produced it (np.nan_to_num fixes it up)"
        )


def as_playable(item: Any, channels: int) -> np.ndarray:
    """Return ``item`` as a C-contiguous float32 array of shape ``(frames, channels)``.

    int16/int32 are scaled to -1..1, float values are kept as they are (a sound card clips beyond 1.0), a
    mono block is copied to every channel and a multi-channel block is averaged for a mono speaker::

        as_playable(np.array([0, 16384], np.int16), 2)  # -> [[0.0, 0.0], [0.5, 0.5]]

    Raises :class:`InvalidItemError` as :func:`check_playable` does.
    """
    check_playable(item, channels)
    scale = INT_SCALES.get(item.dtype)
    block = item.astype(np.float32) if scale is None else item.astype(np.float32) / np.float32(scale)
    if block.ndim == 1:
        block = block[:, np.newaxis]
    if block.shape[1] != channels:
        if block.shape[1] == 1:
            block = np.repeat(block, channels, axis=1)
        else:  # mixing down to a mono speaker
            block = block.mean(axis=1, keepdims=True, dtype=np.float32)
    return np.ascontiguousarray(block, dtype=np.float32)


class PlaybackBuffer:
    """A latency-bounded FIFO of audio frames between whoever writes blocks and the audio callback.

    ``write`` accepts ``(frames, channels)`` float32 blocks of any length (see :func:`as_playable`);
    ``read_into`` fills the callback's buffer with exactly as many frames as it asks for, padded with
    silence when there is not enough (the re-chunking). The bound: before queuing a block, the oldest
    queued frames are dropped until the total is at most ``capacity``. A block itself is never cut, so
    one long sound (a 3 s clip) plays whole, while a stream of blocks arriving faster than the sound card
    plays them never lags more than ``capacity`` frames (or one block, if blocks are longer); a new sound
    written while a long one plays cuts what is left of the old one.

    Counters: ``dropped`` (frames discarded to honour the bound) and ``underflows`` (times playback ran
    dry: a read that had to pad with silence right after audio was playing; the end of every sound counts
    once, idle silence does not).

    It keeps the blocks it is given (no copy): do not modify one after writing it. Not thread-safe: guard
    ``write`` and ``read_into`` with one lock when the callback runs on another thread. ::

        buf = PlaybackBuffer(capacity=4800, channels=1)
        buf.write(np.ones((100, 1), np.float32))
        out = np.empty((64, 1), np.float32)
        buf.read_into(out)   # -> 64
        buf.read_into(out)   # -> 36: 36 frames of audio, 28 of silence; underflows == 1
    """

    def __init__(self, capacity: int, channels: int) -> None:
        if capacity < 1 or channels < 1:
            raise ValueError(f"capacity and channels must be at least 1, got {capacity} and {channels}")
        self.capacity = capacity
        self.channels = channels
        self._blocks: Deque[np.ndarray] = collections.deque()
        self._offset = 0  # frames of the oldest block already played (or dropped)
        self._frames = 0  # frames currently queued
        self._playing = False  # the last read returned audio
        self.dropped = 0
        self.underflows = 0

    @property
    def frames(self) -> int:
        """Frames currently queued."""
        return self._frames

    def clear(self) -> None:
        """Forget everything queued (not counted as dropped)."""
        self._blocks.clear()
        self._offset = 0
        self._frames = 0

    def write(self, block: np.ndarray) -> int:
        """Queue ``block`` (``(frames, channels)`` float32) and return how many old frames were dropped."""
        n = len(block)
        if n == 0:
            return 0
        if block.ndim != 2 or block.shape[1] != self.channels:
            raise ValueError(f"expected a (frames, {self.channels}) block, got shape {block.shape}")
        excess = min(self._frames, self._frames + n - self.capacity)
        if excess > 0:
            self._discard(excess)
            self.dropped += excess
        self._blocks.append(block)
        self._frames += n
        return max(excess, 0)

    def _discard(self, frames: int) -> None:
        """Remove the oldest ``frames`` queued frames."""
        while frames > 0:
            head = self._blocks[0]
            left = len(head) - self._offset
            if frames < left:
                self._offset += frames
                self._frames -= frames
                return
            self._blocks.popleft()
            self._offset = 0
            self._frames -= left
            frames -= left

    def read_into(self, out: np.ndarray) -> int:
        """Fill ``out`` (``(frames, channels)``) with the oldest queued audio, then silence.

        Returns how many frames of audio (not silence) were written.
        """
        want = len(out)
        n = 0
        while n < want and self._blocks:
            head = self._blocks[0]
            take = min(want - n, len(head) - self._offset)
            out[n : n + take] = head[self._offset : self._offset + take]
            n += take
            self._offset += take
            self._frames -= take
            if self._offset == len(head):
                self._blocks.popleft()
                self._offset = 0
        if n < want:
            out[n:] = 0
            if n > 0 or self._playing:
                self.underflows += 1
        self._playing = n == want and n > 0
        return n
