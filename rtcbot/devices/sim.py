"""Simulated camera and microphone: the same interfaces as the real devices, for work without hardware.

:class:`SimCamera` produces moving colour bars with the frame counter drawn in, at the asked size and rate;
:class:`SimMicrophone` produces a sine tone plus a little noise, in real time, in blocks like
:class:`rtcbot.Microphone`; :class:`SimSpeaker` takes what a :class:`rtcbot.Speaker` takes and measures it
instead of playing it. All run anywhere (numpy only; OpenCV is used for the counter text when it is
installed)::

    import asyncio
    from rtcbot import SimCamera, SimMicrophone

    async def main():
        with SimCamera(width=640, height=480, fps=15) as camera, SimMicrophone() as mic:
            frame = await camera.get()      # a Frame (numpy uint8, shape (480, 640, 3), BGR) like CVCamera
            block = await mic.get()         # numpy float32 array, shape (1024, 1)

    asyncio.run(main())

The generators are pure functions (:func:`render_test_pattern`, :func:`tone_block`), usable on their own.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import math
import time
from typing import Any, Callable, Optional

import numpy as np

from ..base import SubscriptionClosed, ThreadedSubscriptionConsumer, ThreadedSubscriptionProducer
from ..base.waiters import Waiters
from ..errors import DeviceClosedError
from ..subscriptions import MostRecentSubscription
from .audio_blocks import AudioBlock, as_playable, check_playable
from .frame import Frame
from .frame_emitter import FrameEmitter

logger = logging.getLogger("rtcbot.devices.sim")

__all__ = ["SimCamera", "SimMicrophone", "SimSpeaker", "render_test_pattern", "tone_block"]

# The longest block a SimMicrophone may take to "record": beyond this its first block (and ready) would come
# so late that the settings are certainly a mistake (samplerate=1 would take 17 minutes per block).
_MAX_BLOCK_SECONDS = 10.0

# How far (seconds) a simulated device may fall behind its schedule, on a busy machine, and still catch up by
# delivering the late items at once; beyond that the missed ones are skipped.
_MAX_LAG = 0.5

# The eight classic colour bars, in BGR order (the channel order OpenCV and CVCamera use).
_BARS_BGR = np.array(
    [
        (255, 255, 255),  # white
        (0, 255, 255),  # yellow
        (255, 255, 0),  # cyan
        (0, 255, 0),  # green
        (255, 0, 255),  # magenta
        (0, 0, 255),  # red
        (255, 0, 0),  # blue
        (0, 0, 0),  # black
    ],
    dtype=np.uint8,
)

# A 3x5 pixel font for the digits, used when OpenCV is not installed: each string is 5 rows of 3 pixels.
_DIGITS_3X5 = {
    "0": "111101101101111",
    "1": "010110010010111",
    "2": "111001111100111",
    "3": "111001111001111",
    "4": "101101111001001",
    "5": "111100111001111",
    "6": "111100111101111",
    "7": "111001001001001",
    "8": "111101111101111",
    "9": "111101111001111",
}
_GLYPHS = {d: np.array([c == "1" for c in bits], dtype=bool).reshape(5, 3) for d, bits in _DIGITS_3X5.items()}


def _cv2_or_none() -> Optional[Any]:
    """OpenCV if installed (for nicer text), else None: the simulator must work without it."""
    if importlib.util.find_spec("cv2") is None:
        return None
    import cv2

    return cv2


def _draw_number_numpy(frame: np.ndarray, text: str, x: int, y: int, scale: int) -> None:
    """Draw the digits of ``text`` in white at (x, y) with the 3x5 font magnified ``scale`` times."""
    h, w = frame.shape[:2]
    for i, ch in enumerate(text):
        glyph = np.kron(_GLYPHS[ch], np.ones((scale, scale), dtype=bool))
        gx = x + i * 4 * scale
        gh, gw = min(glyph.shape[0], h - y), min(glyph.shape[1], w - gx)
        if gh <= 0 or gw <= 0:
            return
        frame[y : y + gh, gx : gx + gw][glyph[:gh, :gw]] = 255


def render_test_pattern(width: int, height: int, frame_number: int, *, use_cv2: bool = True) -> np.ndarray:
    """One frame of the test pattern: eight colour bars, shifted right 4 pixels per frame, with
    ``frame_number`` written in white on a black box at the top left.

    Returns a ``(height, width, 3)`` uint8 BGR array, the same layout CVCamera frames have::

        frame = render_test_pattern(320, 240, 42)
        assert frame.shape == (240, 320, 3)

    ``use_cv2=False`` draws the counter with a built-in pixel font even when OpenCV is installed.
    """
    if width < 1 or height < 1:
        raise ValueError(f"test pattern size must be positive, got {width}x{height}")
    shift = (frame_number * 4) % width
    columns = (np.arange(width) - shift) % width
    row = _BARS_BGR[columns * len(_BARS_BGR) // width]
    frame = np.broadcast_to(row, (height, width, 3)).copy()  # a writable copy, whatever the size

    text = str(frame_number)
    scale = max(1, min(width, height) // 60)
    cv2 = _cv2_or_none() if use_cv2 else None
    if cv2 is not None:
        font_scale = 0.5 * scale
        thickness = max(1, scale)
        (tw, th), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness)
        pad = 2 * scale
        frame[: th + baseline + 2 * pad, : tw + 2 * pad] = 0
        cv2.putText(
            frame, text, (pad, pad + th), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (255, 255, 255), thickness
        )
    else:
        pad = scale
        frame[: 5 * scale + 2 * pad, : 4 * scale * len(text) + pad] = 0
        _draw_number_numpy(frame, text, pad, pad, scale)
    return frame


def tone_block(
    start_sample: int,
    frames: int,
    *,
    samplerate: int = 48000,
    channels: int = 1,
    frequency: float = 440.0,
    amplitude: float = 0.5,
    noise: float = 0.01,
    rng: Optional[np.random.Generator] = None,
) -> np.ndarray:
    """``frames`` samples of a sine tone plus Gaussian noise, starting at sample ``start_sample``.

    Consecutive blocks join without a click because the phase comes from the absolute sample index. Returns
    a float32 array of shape ``(frames, channels)`` in [-1, 1], the layout Microphone blocks have::

        a = tone_block(0, 1024)
        b = tone_block(1024, 1024)      # continues a
    """
    t = (start_sample + np.arange(frames, dtype=np.float64)) / samplerate
    signal = amplitude * np.sin(2 * math.pi * frequency * t)
    block = np.repeat(signal[:, None], channels, axis=1)
    if noise > 0:
        rng = rng if rng is not None else np.random.default_rng()
        block += noise * rng.standard_normal(block.shape)
    return np.clip(block, -1.0, 1.0).astype(np.float32)


class SimCamera(FrameEmitter, ThreadedSubscriptionProducer):
    """A test-pattern camera with CVCamera's interface: moving colour bars and a frame counter.

    Frames are :class:`~rtcbot.devices.camera.Frame` objects (``(height, width, 3)`` uint8 BGR arrays
    with ``timestamp`` and ``index``), delivered at ``fps`` frames per second, paced against a monotonic
    clock: frames late by less than half a second (a busy machine) are delivered at once to keep the rate,
    longer stalls are skipped. Like CVCamera, the default subscription keeps only the newest frame::

        with SimCamera(width=640, height=480, fps=15) as camera:
            frame = await camera.get()
            print(frame.shape, frame.index)      # (480, 640, 3) 0

    ``preprocessframe`` works as CVCamera's: called with each frame in the worker thread, its result is
    what subscribers get (None skips the frame).
    """

    def __init__(
        self,
        width: int = 320,
        height: int = 240,
        fps: float = 30,
        preprocessframe: Callable[[Frame], Any] = lambda x: x,
        loop: Optional[asyncio.AbstractEventLoop] = None,
        *,
        use_cv2: bool = True,
    ) -> None:
        if width < 1 or height < 1:
            raise ValueError(f"SimCamera size must be positive, got width={width} height={height}")
        if not fps > 0:
            raise ValueError(f"SimCamera fps must be positive, got {fps!r}")
        self._width = int(width)
        self._height = int(height)
        self._fps = float(fps)
        self._preprocessframe = preprocessframe
        # Import OpenCV here, not in the capture thread: while it imports, OpenCV's loader puts its own folder
        # on sys.path, and a worker process started at that moment (a Speaker) would import cv2's "typing"
        # module for the standard one and die. It also keeps a close() during the import prompt.
        self._use_cv2 = use_cv2 and _cv2_or_none() is not None
        self._frame_count = 0
        super().__init__(defaultSubscriptionType=MostRecentSubscription, logger=logger, loop=loop)

    def describe(self) -> str:
        """Names the source in messages, like CVCamera.describe()."""
        return f"simulated camera {self._width}x{self._height} at {self._fps:g} fps"

    def _producer(self) -> None:
        period = 1.0 / self._fps
        deadline = None  # when the next frame is due; the schedule starts at the first frame
        while not self._shouldClose:
            index = self._frame_count
            image = render_test_pattern(self._width, self._height, index, use_cv2=self._use_cv2)
            timestamp = time.monotonic()  # "captured" once the image exists (the first one imports cv2)
            self._emit_frame(image, timestamp)
            deadline = timestamp + period if deadline is None else deadline + period
            now = time.monotonic()
            if deadline < now - _MAX_LAG:
                # A long stall (a very busy machine): skip the missed frames, as a real camera would. A
                # shorter one is made up at once, so the rate over a second stays the one asked for.
                deadline = now
            if self._wait_closed(max(0.0, deadline - now)):
                return


class SimMicrophone(ThreadedSubscriptionProducer):
    """A microphone with Microphone's interface that hears a sine tone plus noise.

    Blocks are :class:`~rtcbot.devices.audio_blocks.AudioBlock` objects (float32 arrays of shape
    ``(blocksize, channels)`` with ``timestamp`` and ``index``), delivered in real time: one block every
    ``blocksize / samplerate`` seconds, each once its last sample would have been recorded::

        with SimMicrophone(frequency=1000, noise=0.05) as mic:
            block = await mic.get()

    ``amplitude`` is the tone's peak (0.5 is about -9 dBFS RMS); ``noise`` the standard deviation of the
    added Gaussian noise. ``overflows`` counts stalls of the worker longer than half a second, whose audio
    is skipped (as a sound card's input overflow loses it); shorter delays are caught up at once.
    """

    def __init__(
        self,
        samplerate: int = 48000,
        channels: int = 1,
        blocksize: int = 1024,
        frequency: float = 440.0,
        noise: float = 0.01,
        amplitude: float = 0.5,
        loop: Optional[asyncio.AbstractEventLoop] = None,
    ) -> None:
        if samplerate <= 0 or channels <= 0 or blocksize <= 0:
            raise ValueError(
                f"SimMicrophone needs positive samplerate, channels and blocksize, got "
                f"samplerate={samplerate} channels={channels} blocksize={blocksize}"
            )
        if int(blocksize) / int(samplerate) > _MAX_BLOCK_SECONDS:
            raise ValueError(
                f"SimMicrophone blocksize={blocksize} at samplerate={samplerate} makes every block (and the "
                f"first one, which makes it ready) take {int(blocksize) / int(samplerate):g} s, more than "
                f"{_MAX_BLOCK_SECONDS:g} s: check the samplerate (in Hz, e.g. 48000) and the blocksize (in frames)"
            )
        for name, value in (("frequency", frequency), ("noise", noise), ("amplitude", amplitude)):
            if not math.isfinite(value):
                raise ValueError(f"SimMicrophone {name} must be a finite number, got {value!r}")
        self.samplerate = int(samplerate)
        self.channels = int(channels)
        self.blocksize = int(blocksize)
        self.frequency = float(frequency)
        self.noise = float(noise)
        self.amplitude = float(amplitude)
        self.overflows = 0
        self.samples = 0
        super().__init__(defaultSubscriptionType=asyncio.Queue, logger=logger, loop=loop)

    def _producer(self) -> None:
        rng = np.random.default_rng()
        period = self.blocksize / self.samplerate
        # Like a real sound card, a block is available only once its last sample was "recorded".
        deadline = time.monotonic() + period
        while not self._shouldClose:
            now = time.monotonic()
            if deadline < now - _MAX_LAG:
                # Stalled longer than a sound card buffers: that audio is lost, like an input overflow.
                self.overflows += 1
                deadline = now
            if self._wait_closed(max(0.0, deadline - now)):
                break
            block = tone_block(
                self.samples,
                self.blocksize,
                samplerate=self.samplerate,
                channels=self.channels,
                frequency=self.frequency,
                amplitude=self.amplitude,
                noise=self.noise,
                rng=rng,
            )
            index = self.samples // self.blocksize
            self.samples += self.blocksize
            self._put_nowait(AudioBlock(block, deadline - period, index))
            if index == 0:
                self._setReady(True)
            deadline += period


class SimSpeaker(ThreadedSubscriptionConsumer):
    """A speaker with Speaker's interface that plays to nowhere: it takes the same blocks (float or int16,
    mono or ``channels`` wide), checks them as a Speaker does, and measures them::

        with SimSpeaker(samplerate=48000) as speaker:
            speaker.put_nowait(0.3 * np.sin(2 * np.pi * 440 * np.arange(48000) / 48000))
            ...
            print(speaker.frames, speaker.level_dbfs)   # 48000  -13.5

    ``frames`` counts the sample frames received and ``await speaker.received(n)`` waits until ``n`` were;
    ``level_dbfs`` is the RMS level of everything received (-inf before anything arrived). Items it cannot
    play raise InvalidItemError from ``put_nowait``.
    """

    def __init__(
        self,
        samplerate: int = 48000,
        channels: int = 1,
        blocksize: int = 1024,
        loop: Optional[asyncio.AbstractEventLoop] = None,
    ) -> None:
        if samplerate <= 0 or channels <= 0 or blocksize <= 0:
            raise ValueError(
                f"SimSpeaker needs positive samplerate, channels and blocksize, got "
                f"samplerate={samplerate} channels={channels} blocksize={blocksize}"
            )
        self.samplerate = int(samplerate)
        self.channels = int(channels)
        self.blocksize = int(blocksize)
        self.device_name = "simulated speaker"
        self.frames = 0
        self._sum_squares = 0.0
        self._received = Waiters("SimSpeaker.received")
        super().__init__(logger=logger, loop=loop)
        self.onClose(self._end_waits)  # a pending received() ends when the speaker closes

    def _end_waits(self, _value: Any = None) -> None:
        self._received.fail_all(self.error or DeviceClosedError("SimSpeaker is closed"))

    async def received(self, frames: int) -> None:
        """Wait until at least ``frames`` sample frames have been taken in (wrap in wait_for for a timeout).

        Raises :class:`~rtcbot.errors.DeviceClosedError` if the speaker closes first."""
        while self.frames < frames:
            if self.closed:
                raise DeviceClosedError(f"SimSpeaker closed after {self.frames} of {frames} frames")
            try:
                await self._received.wait()
            except DeviceClosedError as e:
                raise DeviceClosedError(f"SimSpeaker closed after {self.frames} of {frames} frames") from e

    @property
    def level_dbfs(self) -> float:
        """RMS level of all audio received, in dB relative to full scale."""
        count = self.frames * self.channels
        if count == 0 or self._sum_squares <= 0:
            return -math.inf
        return 10 * math.log10(self._sum_squares / count)

    def put_nowait(self, data: Any) -> None:
        """Queue a block; InvalidItemError (a ValueError) if a Speaker could not play it."""
        check_playable(data, self.channels)
        super().put_nowait(data)

    def _consumer(self) -> None:
        self._setReady(True)
        while True:
            try:
                item = self._get()
            except SubscriptionClosed:
                return
            block = as_playable(item, self.channels)
            self._sum_squares += float(np.square(block, dtype=np.float64).sum())
            self.frames += len(block)
            self._received.wake()  # from this thread: each waiter is woken on its own loop
