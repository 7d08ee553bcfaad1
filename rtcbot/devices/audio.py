"""Microphone and Speaker: sound cards through PortAudio (the ``sounddevice`` package).

:class:`Microphone` is a threaded producer of :class:`~rtcbot.devices.audio_blocks.AudioBlock` arrays;
:class:`Speaker` is a consumer that plays in its own process, so a busy script does not make it stutter.
Plug one into the other for a live loopback::

    import asyncio
    from rtcbot import Microphone, Speaker

    async def main():
        with Microphone() as mic, Speaker() as speaker:
            speaker.putSubscription(mic)       # what the microphone hears comes out of the speaker
            await asyncio.sleep(10)

    if __name__ == "__main__":
        asyncio.run(main())

The conversion and buffering that need no sound card live in :mod:`rtcbot.devices.audio_blocks`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

from .._deps import require
from .._ratelimit import EverySoOften
from ..base import ProcessSubscriptionConsumer, SubscriptionClosed, ThreadedSubscriptionProducer
from ..base.waiters import Waiters
from ..errors import DeviceClosedError, DeviceLostError, DeviceOpenError, InvalidItemError, MissingDependencyError
from .audio_blocks import AudioBlock, PlaybackBuffer, as_playable, check_playable

logger = logging.getLogger("rtcbot.devices.audio")

__all__ = ["AudioBlock", "Microphone", "Speaker"]

Device = Union[int, str, None]
Channels = Union[int, Sequence[int], None]

# Rates tried when a device refuses the one asked for, to say which it takes.
_COMMON_RATES = (8000, 11025, 16000, 22050, 32000, 44100, 48000, 88200, 96000)
# ALSA's virtual "default"/"pulse" devices report 32 channels; channels=None never opens more than this.
_DEFAULT_MAX_CHANNELS = 2


def _import_sounddevice(module: str = "sounddevice") -> Any:
    """Import sounddevice; a missing PortAudio (an OSError at import) becomes MissingDependencyError."""
    try:
        return require(module)
    except OSError as e:
        raise MissingDependencyError(
            f"the sounddevice module is installed but could not load the PortAudio library ({e}). "
            "Install it: apt install libportaudio2 (Debian, Ubuntu, Raspberry Pi OS), or brew install "
            "portaudio (macOS)."
        ) from e


def _device_listing(sd: Any) -> str:
    try:
        return str(sd.query_devices())
    except Exception as e:  # the listing is advice inside another error: never hide that error
        return f"(could not list devices: {e})"


class _Settings(NamedTuple):
    """A resolved stream configuration: what to open, and which of its channels to keep."""

    device: int  # PortAudio device index
    name: str  # the device's name, for messages
    stream_channels: int  # channels the stream is opened with
    keep: Optional[Tuple[int, ...]]  # channel indices delivered (None: all of them)


def _resolve(
    sd: Any, kind: str, owner: str, device: Device, channels: Channels, samplerate: float
) -> _Settings:
    """Find ``device`` for ``kind`` ("input"/"output"), check channels and rate; DeviceOpenError if not."""
    if isinstance(device, bool) or not (device is None or isinstance(device, (int, str))):
        raise TypeError(f"{owner} device must be an index, part of a device name, or None; got {device!r}")
    try:
        info = sd.query_devices(device, kind)
    except (ValueError, sd.PortAudioError) as e:
        if device is None:
            what = f"no default {kind} device"
        elif "multiple" in str(e).lower():
            what = f"{device!r} matches several {kind} devices; give more of the name, or the index"
        else:
            what = f"no {kind} device matches {device!r}"
        raise DeviceOpenError(
            f"{owner}: {what} ({e}). Available devices (index, name, inputs/outputs):\n"
            f"{_device_listing(sd)}\nPass device=<index> or device=<part of a name> with {kind} channels; "
            "on Linux check the user is in the 'audio' group and that arecord -l / aplay -l list the card."
        ) from e
    name = str(info["name"])
    available = int(info[f"max_{kind}_channels"])
    if channels is None:
        keep = None
        stream_channels = min(available, _DEFAULT_MAX_CHANNELS)
    elif isinstance(channels, int) and not isinstance(channels, bool):
        if channels < 1:
            raise ValueError(f"{owner} channels must be at least 1, got {channels}")
        keep, stream_channels = None, channels
    elif kind == "input" and isinstance(channels, Sequence) and not isinstance(channels, str):
        keep = tuple(int(c) for c in channels)
        if not keep or min(keep) < 0:
            raise ValueError(f"{owner} channels must list channel indices from 0, got {channels!r}")
        # Open at least the device's usual channels: a 1-channel stream on a stereo source is a mix of
        # both (PulseAudio downmixes), so [0] would not be the left channel.
        stream_channels = max(max(keep) + 1, min(available, _DEFAULT_MAX_CHANNELS))
    else:
        raise TypeError(
            f"{owner} channels must be a count{' or a list of indices' * (kind == 'input')}, got {channels!r}"
        )
    if stream_channels > available:
        raise DeviceOpenError(
            f"{owner}: device {name!r} has {available} {kind} channel(s), {channels!r} asks for "
            f"{stream_channels}; pass channels=None (the device's, at most {_DEFAULT_MAX_CHANNELS}) or fewer"
        )
    check = sd.check_input_settings if kind == "input" else sd.check_output_settings
    try:
        check(device=info["index"], channels=stream_channels, dtype="float32", samplerate=samplerate)
    except sd.PortAudioError as e:
        raise DeviceOpenError(
            f"{owner}: device {name!r} refuses {stream_channels} channel(s) at {samplerate} Hz ({e}). "
            f"Its default rate is {float(info['default_samplerate']):g} Hz; "
            f"it accepts {_accepted_rates(check, info['index'], stream_channels)}. "
            "Pass samplerate= one of them."
        ) from e
    return _Settings(int(info["index"]), name, stream_channels, keep)


def _accepted_rates(check: Any, device: int, channels: int) -> str:
    accepted = []
    for rate in _COMMON_RATES:
        try:
            check(device=device, channels=channels, dtype="float32", samplerate=rate)
        except Exception:  # any refusal means "not this rate"
            continue
        accepted.append(str(rate))
    return ", ".join(accepted) + " Hz" if accepted else "none of the common rates"


def _check_positive(owner: str, **values: float) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{owner} {name} must be a number, got {value!r}")
        if not (value > 0 and math.isfinite(value)):
            raise ValueError(f"{owner} {name} must be positive and finite, got {value!r}")


class Microphone(ThreadedSubscriptionProducer):
    """A microphone: delivers blocks of float32 samples, shape ``(blocksize, channels)``, as they arrive.

    Each block is an :class:`~rtcbot.devices.audio_blocks.AudioBlock`: ``block.timestamp`` estimates when
    its first sample was captured (``time.monotonic()`` clock), ``block.index`` counts blocks from 0::

        with Microphone(samplerate=16000, channels=1) as mic:
            block = await mic.get()                 # float32, shape (1024, 1), values in -1..1
            level = float(abs(block).max())

    :param samplerate: samples per second.
    :param channels: how many channels to record (None: the device's, at most 2), or a list of channel
        indices to keep (``[1]``: only the right channel of a stereo card).
    :param blocksize: frames per block (1024 at 48 kHz is 21 ms).
    :param device: a PortAudio device index or part of its name (``"USB"``); None for the default input.
        ``python -m sounddevice`` lists them.

    ``overflows`` counts blocks during which the sound card had to discard audio because the worker was
    late; they are logged (at most every few seconds) and never stop the microphone. Subscribers get every
    block (the default subscription is an unbounded ``asyncio.Queue``): a reader that may fall behind should
    subscribe with ``BoundedQueue(n)``, and ``RebatchSubscription(frames)`` gives blocks of another size.

    The worker thread makes blocking ``stream.read()`` calls rather than using a PortAudio callback: the
    read loop is the producer loop, with no second hand-off queue, overflows come back with each read, and
    closing takes at most one block's duration.
    """

    _sounddevice_module = "sounddevice"  # tests swap in a fake module by name

    def __init__(
        self,
        samplerate: int = 48000,
        channels: Channels = None,
        blocksize: int = 1024,
        device: Device = None,
        loop: Optional[asyncio.AbstractEventLoop] = None,
    ) -> None:
        _check_positive("Microphone", samplerate=samplerate, blocksize=blocksize)
        sd = _import_sounddevice(self._sounddevice_module)
        self._settings = _resolve(sd, "input", "Microphone", device, channels, samplerate)
        self.samplerate = samplerate
        self.blocksize = int(blocksize)
        self.channels = len(self._settings.keep or ()) or self._settings.stream_channels
        self.device_name = self._settings.name
        self._overflows = 0
        self._overflow_log = EverySoOften(logger)
        super().__init__(defaultSubscriptionType=asyncio.Queue, logger=logger, loop=loop)

    @property
    def overflows(self) -> int:
        """Blocks during which the sound card dropped input because it was not read in time."""
        return self._overflows

    def _producer(self) -> None:
        sd = _import_sounddevice(self._sounddevice_module)
        settings = self._settings
        try:
            stream = sd.InputStream(
                device=settings.device,
                channels=settings.stream_channels,
                samplerate=self.samplerate,
                blocksize=self.blocksize,
                dtype="float32",
            )
        except sd.PortAudioError as e:
            raise DeviceOpenError(f"Microphone: cannot open {settings.name!r}: {e}") from e
        try:
            try:
                stream.start()
            except sd.PortAudioError as e:
                raise DeviceOpenError(
                    f"Microphone: cannot start {settings.name!r}: {e}; is another program using it?"
                ) from e
            self._setReady(True)
            self._read_loop(sd, stream)
        finally:
            stream.close()

    def _read_loop(self, sd: Any, stream: Any) -> None:
        settings = self._settings
        block_duration = self.blocksize / self.samplerate
        input_latency = float(stream.latency)
        keep: Optional[List[int]] = list(settings.keep) if settings.keep is not None else None
        index = 0
        while not self._shouldClose:
            try:
                samples, overflowed = stream.read(self.blocksize)
            except sd.PortAudioError as e:
                if self._shouldClose:
                    return
                raise DeviceLostError(
                    f"Microphone: reading {settings.name!r} failed ({e}); was it unplugged? "
                    "Check it still appears in `python -m sounddevice`."
                ) from e
            # The block ends where the frames still waiting in PortAudio's buffer begin.
            waiting = stream.read_available / self.samplerate
            captured = time.monotonic() - waiting - block_duration - input_latency
            if overflowed:
                self._overflows += 1
                self._overflow_log.warning(
                    "Microphone %r: input overflow, audio was lost (the worker thread was late)",
                    settings.name,
                )
            if keep is not None:
                samples = samples[:, keep]
            self._put_nowait(AudioBlock(samples, captured, index))
            index += 1


_REPORT_PERIOD = 0.1  # seconds between the player process's counter reports (only sent when they change)


class _SpeakerCounts(dict):
    """The Speaker's counters, as its player process last reported them (a dict of name -> int)."""

    NAMES = ("underflows", "xruns", "dropped", "queued", "skipped")

    def __init__(self, values: Optional[Dict[str, int]] = None) -> None:
        super().__init__({name: 0 for name in self.NAMES} if values is None else values)

    def add(self, name: str, amount: int = 1) -> None:
        self[name] += amount



class Speaker(ProcessSubscriptionConsumer):
    """A speaker that plays in its own process: give it blocks of samples and they play, in order.

    Blocks may have any length, be mono (shape ``(n,)`` or ``(n, 1)``, played on every channel) or have the
    speaker's channel count, and hold float samples in -1..1 or int16/int32; a Microphone's blocks fit as
    they are::

        with Speaker(samplerate=48000) as speaker:
            t = np.arange(48000) / 48000
            speaker.put_nowait(0.3 * np.sin(2 * np.pi * 440 * t))      # one second of A4
            speaker.putSubscription(mic)                               # or: play a producer, live

    When nothing arrives the speaker plays silence (never a repeat of old audio). Latency is bounded:
    before a block is queued, the oldest queued audio is dropped until at most ``max_latency`` seconds wait
    (a block itself is never cut), so a producer running faster than the sound card costs dropped audio,
    not a growing delay; one long sound plays whole, and a new sound cuts what is left of it.

    :param samplerate: samples per second; blocks are assumed to be at this rate.
    :param channels: output channels (None: the device's, at most 2).
    :param blocksize: frames the sound card asks for at a time (its callback period).
    :param device: a PortAudio device index or part of its name; None for the default output.
    :param max_latency: seconds of audio that may wait to be played before the oldest is dropped.
    :param start_method: how the player process starts; None for rtcbot's default (never ``"fork"``, see
        below).

    ``put_nowait`` raises :class:`~rtcbot.errors.InvalidItemError` for what cannot be played (a string, a
    3-D array, 3 channels on a stereo speaker, float samples with NaN or infinity: refused, not clipped,
    as no sound is right for them); such items arriving through ``putSubscription`` are logged
    (at most every few seconds), counted in ``skipped`` and skipped. Counters, readable any time:
    ``underflows`` (playback ran dry mid-sound; the end of each sound counts once), ``xruns`` (PortAudio
    reported the sound card starved: the player process was late), ``dropped`` (frames
    discarded to bound latency), ``queued`` (frames waiting to be played now). If the device disappears
    while playing, ``onError`` fires with :class:`~rtcbot.errors.DeviceLostError` and the speaker closes.

    The player process starts from a clean interpreter (rtcbot's default ``forkserver`` start method), never
    as a fork of your script: PulseAudio's client library (behind ALSA's ``default`` device on most desktops
    and on Raspberry Pi OS) refuses to work in a forked child once the parent has used it. The child does
    not run your script again, so no ``if __name__ == "__main__":`` guard is needed. Do not pass
    ``start_method="fork"`` to a Speaker.
    """

    _sounddevice_module = "sounddevice"  # tests swap in a fake module by name (it must import in the child)
    # What stays in the parent when the player starts (the base layer's declaration of what does not cross).
    _parent_only_attributes = frozenset({"_counters", "_counterWaitersLazy"})

    def __init__(
        self,
        samplerate: int = 48000,
        channels: Optional[int] = None,
        blocksize: int = 1024,
        device: Device = None,
        loop: Optional[asyncio.AbstractEventLoop] = None,
        max_latency: float = 0.2,
        *,
        start_method: Optional[str] = None,
    ) -> None:
        _check_positive("Speaker", samplerate=samplerate, blocksize=blocksize, max_latency=max_latency)
        sd = _import_sounddevice(self._sounddevice_module)
        settings = _resolve(sd, "output", "Speaker", device, channels, samplerate)
        self._settings = settings
        self.samplerate = samplerate
        self.blocksize = int(blocksize)
        self.channels = settings.stream_channels
        self.device_name = settings.name
        self.max_latency = max_latency
        # The player process reports its counters about ten times a second while they change.
        self._counters = _SpeakerCounts()
        # Never fork: libpulse (behind ALSA's default/pulse devices) refuses to work in a forked child once
        # the parent has used it, and the parent has, checking the device above. The default forkserver
        # gives a clean child.
        super().__init__(logger=logger, loop=loop, start_method=start_method)
        # Parent side only (registered after the state that crosses into the child was taken): a pending
        # next_counters() ends when the speaker closes or its process dies.
        self.onClose(self._end_waits)

    def _waiters(self) -> Waiters:
        # Created at first use, in the parent: never part of the state that crosses into the child.
        waiters = self.__dict__.get("_counterWaitersLazy")
        if waiters is None:
            waiters = self.__dict__.setdefault("_counterWaitersLazy", Waiters("Speaker.next_counters"))
            if self.closed:
                waiters.fail_all(self._closed_error())
        return waiters

    def _closed_error(self) -> BaseException:
        return self.error or DeviceClosedError(f"Speaker {self.device_name!r} is closed")

    def _end_waits(self, _value: Any = None) -> None:
        waiters = self.__dict__.get("_counterWaitersLazy")
        if waiters is not None:
            waiters.fail_all(self._closed_error())

    def _deliver(self, item: Any) -> None:
        if type(item) is _SpeakerCounts:
            self._counters = item
            waiters = self.__dict__.get("_counterWaitersLazy")
            if waiters is not None:
                waiters.wake(dict(item))
        else:
            super()._deliver(item)

    async def next_counters(self) -> Dict[str, int]:
        """Wait for the player process's next report of its counters (sent about ten times a second while they
        change) and return them::

            while speaker.queued == 0:
                await asyncio.wait_for(speaker.next_counters(), 5)

        Raises the error that stopped the speaker (:class:`~rtcbot.errors.DeviceLostError`,
        :class:`~rtcbot.errors.WorkerDiedError`...), or :class:`~rtcbot.errors.DeviceClosedError`, when it
        closes first, and at once once it is closed.
        """
        return await self._waiters().wait()

    @property
    def underflows(self) -> int:
        """Times playback ran dry while sound was playing (each sound's end counts once)."""
        return self._counters["underflows"]

    @property
    def xruns(self) -> int:
        """Times PortAudio reported an output underflow: the sound card was starved (a late callback)."""
        return self._counters["xruns"]

    @property
    def dropped(self) -> int:
        """Frames discarded, oldest first, to keep at most ``max_latency`` seconds queued."""
        return self._counters["dropped"]

    @property
    def queued(self) -> int:
        """Frames waiting to be played (as of the last block the child received or played)."""
        return self._counters["queued"]

    @property
    def skipped(self) -> int:
        """Items from a subscription that were not playable audio, logged and skipped."""
        return self._counters["skipped"]

    def put_nowait(self, data: Any) -> None:
        """Queue a block for playback; InvalidItemError (a ValueError) if it is not playable audio."""
        check_playable(data, self.channels)
        super().put_nowait(data)

    def play(self, data: Any) -> None:
        """RTCBot's name for :meth:`put_nowait`: queue a block of samples and return at once."""
        self.put_nowait(data)

    def playStream(self, stream: Any) -> None:
        """RTCBot's name for :meth:`putSubscription`: play what ``stream`` (a subscription, or a producer
        such as a Microphone) delivers, in place of what was playing."""
        self.putSubscription(stream)

    def _consumer(self) -> None:
        """Runs in the child process: the PortAudio callback plays from a PlaybackBuffer this loop fills."""
        sd = _import_sounddevice(self._sounddevice_module)
        settings = self._settings
        counters = _SpeakerCounts()
        buffer = PlaybackBuffer(round(self.max_latency * self.samplerate), self.channels)
        lock = threading.Lock()
        stopping = threading.Event()

        def report() -> None:
            # Counters reach the parent as messages: no shared block that a killed process could leave behind.
            last = None
            while True:
                done = stopping.wait(_REPORT_PERIOD)  # a status timer, not synchronisation
                with lock:
                    now = _SpeakerCounts(counters)
                if now != last:
                    try:
                        self._sendToParent(now)
                    except SubscriptionClosed:
                        return
                    last = now
                if done:
                    return

        reporter = threading.Thread(target=report, name="rtcbot-speaker-counters", daemon=True)

        def play(outdata: Any, frames: int, time_info: Any, status: Any) -> None:
            if status and status.output_underflow:
                counters.add("xruns")
            with lock:
                buffer.read_into(outdata)
                counters["underflows"] = buffer.underflows
                counters["queued"] = buffer.frames

        def finished() -> None:
            # PortAudio ended the stream: our own close, or the device went away.
            if not stopping.is_set():
                self._setError(
                    DeviceLostError(
                        f"Speaker: PortAudio stopped playback on {settings.name!r}; was it unplugged? "
                        "Check it still appears in `python -m sounddevice`."
                    )
                )
                self._close()

        try:
            stream = sd.OutputStream(
                device=settings.device,
                channels=self.channels,
                samplerate=self.samplerate,
                blocksize=self.blocksize,
                dtype="float32",
                callback=play,
                finished_callback=finished,
            )
        except sd.PortAudioError as e:
            raise DeviceOpenError(f"Speaker: cannot open {settings.name!r}: {e}") from e
        bad_items = EverySoOften(logger)
        try:
            try:
                stream.start()
            except sd.PortAudioError as e:
                raise DeviceOpenError(
                    f"Speaker: cannot start {settings.name!r}: {e}; is another program using it?"
                ) from e
            self._setReady(True)
            reporter.start()
            while True:
                item = self._get()  # SubscriptionClosed ends the loop, and the process
                try:
                    block = as_playable(item, self.channels)
                except InvalidItemError as e:
                    counters.add("skipped")
                    bad_items.warning("Speaker %r: skipped an item: %s", settings.name, e)
                    continue
                with lock:
                    buffer.write(block)
                    counters["dropped"] = buffer.dropped
                    counters["queued"] = buffer.frames
        finally:
            stopping.set()
            stream.close()
            if reporter.is_alive():
                reporter.join(1.0)
            logger.debug(
                "Speaker %r: %d underflow(s), %d xrun(s), %d frame(s) dropped to bound latency",
                settings.name,
                buffer.underflows,
                counters["xruns"],
                buffer.dropped,
            )
