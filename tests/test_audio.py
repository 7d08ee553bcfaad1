"""Microphone and Speaker on real PortAudio through a private PulseAudio null sink (tests/pulse.py), and the
faults only a fake sounddevice can produce (tests/fakes/sounddevice.py)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import sys
from typing import Any, Iterator

import numpy as np
import pytest

from rtcbot import DeviceLostError, DeviceOpenError, InvalidItemError, MissingDependencyError
from rtcbot.devices.audio import Microphone, Speaker
from rtcbot.devices.audio_blocks import AudioBlock
from tests.fakes import sounddevice as fake_sd
from tests.helpers import run

RATE = 48000
WAIT = 10.0  # seconds any single await may take before the test fails


# ------------------------------------------------------------------------------------------------ fixtures


@pytest.fixture
def sd(pulse) -> Any:
    """The real sounddevice module, seeing the private server's devices."""
    return importlib.import_module("sounddevice")


@pytest.fixture
def fake(monkeypatch) -> Any:
    """Swap in the fake sounddevice; returns a function that sets its faults (see its docstring)."""
    monkeypatch.setitem(sys.modules, "sounddevice", fake_sd)
    monkeypatch.delenv(fake_sd.ENV, raising=False)

    def faults(**config: Any) -> None:
        monkeypatch.setenv(fake_sd.ENV, json.dumps(config))

    return faults


# ------------------------------------------------------------------------------------------------ helpers


def tone(frequency: float, frames: int, start: int = 0, amplitude: float = 0.5) -> np.ndarray:
    t = (np.arange(frames) + start) / RATE
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


@contextlib.contextmanager
def playing(sd: Any, frequency: float, device: str = "pulse") -> Iterator[None]:
    """Play a continuous tone with sounddevice directly (not through rtcbot) while the block runs."""
    position = [0]

    def callback(outdata, frames, time_info, status):
        outdata[:, 0] = tone(frequency, frames, position[0])
        position[0] += frames

    with sd.OutputStream(device=device, channels=1, samplerate=RATE, blocksize=1024, callback=callback):
        yield


def peak_frequency(samples: np.ndarray) -> float:
    """The frequency (Hz) of the strongest component of a mono recording."""
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    spectrum[0] = 0
    return float(np.argmax(spectrum) * RATE / len(samples))


async def record(mic: Microphone, seconds: float) -> np.ndarray:
    """Concatenate the microphone's next blocks until ``seconds`` of audio are in."""
    subscription = mic.subscribe()
    blocks = []
    total = 0
    while total < seconds * mic.samplerate:
        block = await asyncio.wait_for(subscription.get(), WAIT)
        blocks.append(block)
        total += len(block)
    mic.unsubscribe(subscription)
    return np.concatenate(blocks)


# ----------------------------------------------------------------------------------- Microphone, real audio


def test_microphone_delivers_float32_blocks_of_blocksize_and_channels(pulse):
    async def main():
        with Microphone(channels=2, blocksize=512, device="pulse") as mic:
            first = await asyncio.wait_for(mic.get(), WAIT)
            second = await asyncio.wait_for(mic.get(), WAIT)
        return first, second

    first, second = run(main())
    assert isinstance(first, AudioBlock)
    assert first.shape == (512, 2) and first.dtype == np.float32
    assert second.index == first.index + 1
    assert 0 < second.timestamp - first.timestamp < 0.2  # ~512/48000 s apart


def test_microphone_records_a_tone_played_on_the_null_sink(sd):
    async def main():
        with playing(sd, 440), Microphone(channels=1, device="pulse") as mic:
            await asyncio.wait_for(mic.onReady(), WAIT)
            return await record(mic, 1.0)

    recording = run(main())[:, 0]
    assert abs(peak_frequency(recording[-RATE // 2 :]) - 440) < 5


def test_microphone_hears_silence_when_nothing_plays(pulse):
    async def main():
        with Microphone(channels=1, device="pulse") as mic:
            return await record(mic, 0.3)

    assert np.sqrt(np.mean(run(main()) ** 2)) < 1e-3


def test_microphone_channel_list_keeps_only_those_channels(pulse):
    async def main():
        with Microphone(channels=[1], blocksize=256, device="pulse") as mic:
            return await asyncio.wait_for(mic.get(), WAIT)

    block = run(main())
    assert block.shape == (256, 1)


def test_microphone_is_ready_once_the_stream_started(pulse):
    async def main():
        with Microphone(device="pulse") as mic:
            await asyncio.wait_for(mic.onReady(), WAIT)
            return mic.ready

    assert run(main()) is True


def test_unknown_microphone_name_raises_device_open_error_listing_devices(pulse):
    with pytest.raises(DeviceOpenError, match="no input device matches 'no such mic'") as info:
        Microphone(device="no such mic")
    assert "pulse" in str(info.value)  # the listing of what is available


def test_unsupported_sample_rate_raises_device_open_error_naming_accepted_rates(pulse):
    with pytest.raises(DeviceOpenError, match="1000000 Hz") as info:
        Microphone(samplerate=1_000_000, device="pulse")
    assert "48000" in str(info.value)


def test_too_many_channels_raises_device_open_error(pulse):
    with pytest.raises(DeviceOpenError, match="channel"):
        Microphone(channels=64, device="pulse")


def test_nonpositive_blocksize_is_a_value_error():
    with pytest.raises(ValueError, match="blocksize"):
        Microphone(blocksize=0)


# ------------------------------------------------------------------------------------- Microphone, faults


def test_microphone_lost_mid_stream_reports_device_lost_and_closes(fake):
    fake(lose_after=3)

    async def main():
        mic = Microphone(blocksize=64)
        error = await asyncio.wait_for(mic.onError(), WAIT)
        await asyncio.wait_for(mic.onClose(), WAIT)
        return mic, error

    mic, error = run(main())
    assert isinstance(error, DeviceLostError) and "unplugged" in str(error)
    assert mic.closed


def test_microphone_stream_error_at_start_reports_device_open_error(fake):
    fake(start_error="Device unavailable [PaErrorCode -9985]")

    async def main():
        mic = Microphone()
        try:
            return await asyncio.wait_for(mic.onError(), WAIT)
        finally:
            mic.close()

    error = run(main())
    assert isinstance(error, DeviceOpenError) and "Device unavailable" in str(error)


def test_microphone_overflows_are_counted_and_logged_but_not_fatal(fake, caplog):
    fake(overflow_every=2)

    async def main():
        with Microphone(blocksize=32) as mic:
            subscription = mic.subscribe()
            for _ in range(8):
                await asyncio.wait_for(subscription.get(), WAIT)
            return mic.overflows, mic.closed

    with caplog.at_level(logging.WARNING, logger="rtcbot.devices.audio"):
        overflows, closed = run(main())
    assert overflows >= 3 and not closed
    warnings = [r for r in caplog.records if "overflow" in r.getMessage()]
    assert len(warnings) == 1  # rate-limited: not one per overflow


def test_closing_the_microphone_stops_its_thread_and_closes_the_stream(fake, tmp_path, no_leaks):
    events = tmp_path / "events"
    fake(events=str(events))

    async def main():
        mic = Microphone(blocksize=64)
        await asyncio.wait_for(mic.get(), WAIT)
        mic.close()
        return mic

    assert run(main()).closed
    assert events.read_text().splitlines()[-1] == "close"


def test_microphone_selects_channels_by_index(fake):
    async def main():
        with Microphone(channels=[1], blocksize=16) as mic:
            return await asyncio.wait_for(mic.get(), WAIT)

    block = run(main())
    np.testing.assert_allclose(block, 0.2)  # the fake's channel 1 reads 0.2


@pytest.mark.parametrize("device_class", [Microphone, Speaker])
def test_missing_portaudio_raises_missing_dependency_error_naming_the_package(device_class, tmp_path, monkeypatch):
    (tmp_path / "sounddevice.py").write_text("raise OSError('PortAudio library not found')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    with pytest.raises(MissingDependencyError, match="apt install libportaudio2"):
        device_class()


# -------------------------------------------------------------------------------------- Speaker, real audio

WINDOW = 12  # blocks of 1024 frames (~0.26 s) analysed together when listening for a tone


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))


async def listen_for(subscription: Any, frequency: float, timeout: float = WAIT) -> float:
    """Read microphone blocks until the last WINDOW of them hold a clear tone at ``frequency`` (within 5
    Hz); return the timestamp of the newest block. Fails the test after ``timeout`` seconds."""

    async def scan() -> float:
        window: list = []
        while True:
            block = await subscription.get()
            window = (window + [block])[-WINDOW:]
            if len(window) < WINDOW:
                continue
            samples = np.concatenate(window)[:, 0]
            if rms(samples) > 0.05 and abs(peak_frequency(samples) - frequency) < 5:
                return float(block.timestamp)

    return await asyncio.wait_for(scan(), timeout)


def test_speaker_tone_is_recorded_by_the_microphone_at_its_frequency(pulse):
    async def main():
        with Speaker(channels=1, device="pulse") as speaker, Microphone(channels=1, device="pulse") as mic:
            await asyncio.wait_for(speaker.onReady(), WAIT)
            listening = mic.subscribe()
            await asyncio.wait_for(listening.get(), WAIT)  # the microphone is running
            speaker.put_nowait(tone(440, RATE * 2))
            await listen_for(listening, 440)
            recording = await record(mic, 0.5)
        return recording[:, 0]

    assert abs(peak_frequency(run(main())) - 440) < 5


def test_speaker_plays_silence_once_its_audio_ran_out_never_a_repeat(pulse):
    async def main():
        with Speaker(channels=1, device="pulse") as speaker, Microphone(channels=1, device="pulse") as mic:
            await asyncio.wait_for(speaker.onReady(), WAIT)
            listening = mic.subscribe()
            await asyncio.wait_for(listening.get(), WAIT)
            speaker.put_nowait(tone(440, RATE // 2))  # 0.5 s
            await listen_for(listening, 440)
            mic.unsubscribe(listening)
            recording = await record(mic, 1.5)
            return recording[-RATE // 2 :, 0], speaker.underflows

    tail, underflows = run(main())
    assert rms(tail) < 1e-3
    assert underflows == 1  # the end of the sound, once


def test_speaker_switches_to_a_new_subscription_mid_stream(pulse):
    from rtcbot.devices.sim import SimMicrophone

    async def main():
        with (
            Speaker(channels=1, device="pulse") as speaker,
            Microphone(channels=1, device="pulse") as mic,
            SimMicrophone(frequency=440, noise=0) as low,
            SimMicrophone(frequency=880, noise=0) as high,
        ):
            listening = mic.subscribe()
            speaker.putSubscription(low)
            await listen_for(listening, 440)
            speaker.putSubscription(high)
            await listen_for(listening, 880)
            return speaker.subscription is high

    assert run(main())


def test_speaker_fed_faster_than_it_plays_drops_the_oldest_audio_not_adding_delay(pulse):
    async def main():
        with (
            Speaker(channels=1, device="pulse", max_latency=0.2) as speaker,
            Microphone(channels=1, device="pulse") as mic,
        ):
            await asyncio.wait_for(speaker.onReady(), WAIT)
            listening = mic.subscribe()
            await asyncio.wait_for(listening.get(), WAIT)
            signal = tone(440, RATE * 3)
            for start in range(0, len(signal), 1024):  # 3 s of blocks at once: all but 0.2 s must go
                speaker.put_nowait(signal[start : start + 1024])
            await listen_for(listening, 440)
            mic.unsubscribe(listening)
            recording = await record(mic, 1.0)
            return recording[:, 0], speaker.dropped

    recording, dropped = run(main())
    # Of the 3 s, at most 0.2 s (and one block) stay queued; the rest is dropped, less what played while the
    # blocks were still crossing into the player process (milliseconds, but much more on a loaded machine).
    assert dropped >= RATE * 2
    assert rms(recording[-RATE // 2 :]) < 1e-3  # long over: the 3 s were not all played


def tone_energy(samples: np.ndarray, frequency: float) -> float:
    """Energy of ``samples`` within 20 Hz of ``frequency``."""
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples)))) ** 2
    freqs = np.fft.rfftfreq(len(samples), 1 / RATE)
    return float(spectrum[np.abs(freqs - frequency) < 20].sum())


def test_speaker_past_max_latency_drops_the_oldest_blocks_so_the_newest_is_heard(pulse):
    # Every block says which it was by its tone: the first 2.5 s are 440 Hz, the newest 0.5 s 880 Hz. With
    # max_latency=0.3 only the newest blocks may stay queued: the 880 Hz tone must be what plays.
    async def main():
        with (
            Speaker(channels=1, device="pulse", max_latency=0.3) as speaker,
            Microphone(channels=1, device="pulse") as mic,
        ):
            await asyncio.wait_for(speaker.onReady(), WAIT)
            listening = mic.subscribe()
            await asyncio.wait_for(listening.get(), WAIT)
            old, new = tone(440, RATE * 5 // 2), tone(880, RATE // 2)
            for start in range(0, len(old), 1024):
                speaker.put_nowait(old[start : start + 1024])
            for start in range(0, len(new), 1024):
                speaker.put_nowait(new[start : start + 1024])
            mic.unsubscribe(listening)
            recording = await record(mic, 1.5)
            return recording[:, 0], speaker.dropped

    recording, dropped = run(main())
    assert dropped >= RATE * 2
    heard_new, heard_old = tone_energy(recording, 880), tone_energy(recording, 440)
    assert heard_new > 5 * heard_old, (heard_new, heard_old)


def test_microphone_channel_list_selects_that_channel_on_the_real_sink(pulse):
    # The left channel plays 440 Hz, the right 880 Hz: channels=[0] must hear only the first, [1] the second.
    async def main():
        with (
            Speaker(channels=2, device="pulse") as speaker,
            Microphone(channels=[0], device="pulse") as left,
            Microphone(channels=[1], device="pulse") as right,
        ):
            await asyncio.wait_for(speaker.onReady(), WAIT)
            heard_left, heard_right = left.subscribe(), right.subscribe()
            await asyncio.wait_for(heard_left.get(), WAIT)
            await asyncio.wait_for(heard_right.get(), WAIT)
            speaker.put_nowait(np.stack([tone(440, RATE * 4), tone(880, RATE * 4)], axis=1))
            await asyncio.gather(listen_for(heard_left, 440), listen_for(heard_right, 880))
            left.unsubscribe(heard_left)
            right.unsubscribe(heard_right)
            from_left, from_right = await asyncio.gather(record(left, 0.5), record(right, 0.5))
            return from_left[:, 0], from_right[:, 0]

    from_left, from_right = run(main())
    assert tone_energy(from_left, 440) > 20 * tone_energy(from_left, 880)
    assert tone_energy(from_right, 880) > 20 * tone_energy(from_right, 440)


def test_speaker_accepts_int16_stereo_blocks_of_any_length(pulse):
    async def main():
        with Speaker(channels=2, device="pulse") as speaker, Microphone(channels=1, device="pulse") as mic:
            listening = mic.subscribe()
            await asyncio.wait_for(speaker.onReady(), WAIT)
            signal = (tone(440, RATE) * 32767).astype(np.int16)
            stereo = np.stack([signal, signal], axis=1)
            for start in range(0, RATE, 777):  # odd-sized pieces, re-chunked by the speaker
                speaker.put_nowait(stereo[start : start + 777])
            await listen_for(listening, 440)

    run(main())


def test_speaker_rejects_unplayable_items_in_put_nowait_and_keeps_playing(pulse):
    async def main():
        with Speaker(channels=2, device="pulse") as speaker, Microphone(channels=1, device="pulse") as mic:
            listening = mic.subscribe()
            for bad in ("hello", np.zeros((2, 2, 2, 2), np.float32), np.zeros((10, 3), np.float32)):
                with pytest.raises(InvalidItemError):
                    speaker.put_nowait(bad)
            speaker.put_nowait(tone(440, RATE))
            await listen_for(listening, 440)
            return speaker.closed

    assert run(main()) is False


def test_speaker_skips_unplayable_items_from_a_subscription_and_keeps_playing(pulse):
    async def main():
        with Speaker(channels=1, device="pulse") as speaker, Microphone(channels=1, device="pulse") as mic:
            listening = mic.subscribe()
            source: asyncio.Queue = asyncio.Queue()
            speaker.putSubscription(source)
            source.put_nowait(np.zeros((4, 4, 4), np.float32))
            source.put_nowait(tone(440, RATE))
            await listen_for(listening, 440)
            while speaker.skipped == 0:  # the count travels in the player's next report (every 0.1 s)
                await asyncio.wait_for(speaker.next_counters(), WAIT)
            return speaker.skipped, speaker.closed

    assert run(main()) == (1, False)


def test_unknown_speaker_name_raises_device_open_error_listing_devices(pulse):
    with pytest.raises(DeviceOpenError, match="no output device matches 'hdmi 7'") as info:
        Speaker(device="hdmi 7")
    assert "pulse" in str(info.value)


def test_speaker_unsupported_sample_rate_raises_device_open_error(pulse):
    with pytest.raises(DeviceOpenError, match="44100"):
        Speaker(samplerate=1, device="pulse")


def test_ambiguous_device_name_raises_device_open_error_asking_for_more(fake):
    with pytest.raises(DeviceOpenError, match="matches several input devices"):
        Microphone(device="hw:")


def test_speaker_channels_must_be_a_count(fake):
    with pytest.raises(TypeError, match="channels"):
        Speaker(channels=[0, 1])


def test_speaker_on_an_input_only_device_raises_device_open_error(fake):
    with pytest.raises(DeviceOpenError, match="no output device matches 'usb mic'"):
        Speaker(device="usb mic")


def test_speaker_max_latency_must_be_positive(fake):
    with pytest.raises(ValueError, match="max_latency"):
        Speaker(max_latency=0)


@pytest.mark.parametrize("value", [float("inf"), float("nan")])
def test_speaker_max_latency_must_be_finite(fake, value):
    with pytest.raises(ValueError, match="max_latency must be positive and finite"):
        Speaker(max_latency=value)


# ------------------------------------------------------------------------------------------ Speaker, faults


class FakeSpeaker(Speaker):
    """A Speaker whose child process imports the fake sounddevice (a module attribute cannot cross)."""

    _sounddevice_module = fake_sd.__name__


def test_speaker_lost_mid_stream_reports_device_lost_and_closes(fake):
    fake(lose_after=3)

    async def main():
        speaker = FakeSpeaker(blocksize=256)
        error = await asyncio.wait_for(speaker.onError(), WAIT)
        await asyncio.wait_for(speaker.onClose(), WAIT)
        return speaker, error

    speaker, error = run(main())
    assert isinstance(error, DeviceLostError) and "unplugged" in str(error)
    assert speaker.closed


def test_speaker_stream_error_at_start_reports_device_open_error(fake):
    fake(start_error="Device unavailable [PaErrorCode -9985]")

    async def main():
        speaker = FakeSpeaker()
        try:
            return await asyncio.wait_for(speaker.onError(), WAIT)
        finally:
            speaker.close()

    error = run(main())
    assert isinstance(error, DeviceOpenError) and "Device unavailable" in str(error)


def test_speaker_stream_that_cannot_be_opened_reports_device_open_error(fake, no_leaks):
    fake(open_error="Device unavailable [PaErrorCode -9985]")

    async def main():
        speaker = FakeSpeaker()
        try:
            error = await asyncio.wait_for(speaker.onError(), WAIT)
            await asyncio.wait_for(speaker.onClose(), WAIT)
            return error, speaker.ready
        finally:
            speaker.close()

    error, ready = run(main())
    assert isinstance(error, DeviceOpenError) and "cannot open" in str(error) and "Device unavailable" in str(error)
    assert not ready


def test_speaker_counts_one_underflow_per_sound_that_ran_out_and_none_for_idle_silence(fake, no_leaks):
    async def main():
        with FakeSpeaker(blocksize=256) as speaker:
            await asyncio.wait_for(speaker.onReady(), WAIT)
            for sound in range(1, 5):
                speaker.put_nowait(np.full(1024, 0.1, np.float32))  # 21 ms, then silence
                while speaker.underflows < sound:
                    await asyncio.wait_for(speaker.next_counters(), WAIT)
                # Silence kept playing since the previous sound ran out: had it counted, this would be more.
                assert speaker.underflows == sound
            return speaker.xruns

    assert run(main()) == 0


def test_start_method_is_the_one_the_player_process_is_started_with(fake, no_leaks):
    import multiprocessing

    async def main():
        with FakeSpeaker(start_method="spawn") as speaker:
            await asyncio.wait_for(speaker.onReady(), WAIT)
            (child,) = multiprocessing.active_children()
            with open(f"/proc/{child.pid}/cmdline", "rb") as f:
                return f.read()

    assert b"spawn_main" in run(main())


def test_next_counters_raises_when_the_speaker_closes(fake, no_leaks):
    from rtcbot.errors import DeviceClosedError

    async def main():
        speaker = FakeSpeaker()
        await asyncio.wait_for(speaker.onReady(), WAIT)
        waiting = asyncio.ensure_future(speaker.next_counters())
        await asyncio.sleep(0)  # it is waiting: nothing plays, no report is coming
        speaker.close()
        with pytest.raises(DeviceClosedError, match="closed"):
            await asyncio.wait_for(waiting, WAIT)
        with pytest.raises(DeviceClosedError):  # and at once, once closed
            await asyncio.wait_for(speaker.next_counters(), WAIT)

    run(main())


def test_next_counters_raises_when_the_player_process_dies(fake, no_leaks):
    import multiprocessing
    import os
    import signal

    from rtcbot.errors import WorkerDiedError

    async def main():
        speaker = FakeSpeaker()
        try:
            await asyncio.wait_for(speaker.onReady(), WAIT)
            waiting = asyncio.ensure_future(speaker.next_counters())
            await asyncio.sleep(0)
            (child,) = multiprocessing.active_children()
            os.kill(child.pid, signal.SIGKILL)
            with pytest.raises(WorkerDiedError):
                await asyncio.wait_for(waiting, WAIT)
        finally:
            speaker.close()

    run(main())


def test_closing_while_playing_stops_the_stream_and_the_process_promptly(fake, tmp_path, no_leaks):
    events = tmp_path / "events"
    fake(events=str(events))

    async def main():
        speaker = FakeSpeaker(blocksize=256)
        await asyncio.wait_for(speaker.onReady(), WAIT)
        speaker.put_nowait(tone(440, RATE * 10))  # ten seconds to play
        started = asyncio.get_running_loop().time()
        speaker.close()
        await asyncio.wait_for(speaker.onClose(), WAIT)
        return speaker, asyncio.get_running_loop().time() - started

    speaker, took = run(main())
    assert speaker.closed and speaker.error is None
    assert took < 2.0
    assert events.read_text().splitlines()[-1] == "close"
    assert speaker.underflows == 0  # counters stay readable after close


def test_speaker_close_is_idempotent_and_fires_on_close_once(fake, no_leaks):
    closes = []

    async def main():
        speaker = FakeSpeaker()
        speaker.onClose(lambda: closes.append("closed"))
        await asyncio.wait_for(speaker.onReady(), WAIT)
        speaker.close()
        speaker.close()
        await asyncio.wait_for(speaker, WAIT)
        speaker.close()
        return speaker.closed, speaker.ready, speaker.error

    assert run(main()) == (True, False, None)
    assert closes == ["closed"]
