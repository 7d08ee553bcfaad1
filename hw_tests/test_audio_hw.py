"""Microphone and Speaker on the real sound card (RTCBOT_AUDIO_DEVICE: an index or part of a name; default:
the system default devices). Skipped unless asked for::

    RTCBOT_HW=1 pytest hw_tests/test_audio_hw.py
    RTCBOT_HW=1 RTCBOT_AUDIO_DEVICE=USB pytest hw_tests/test_audio_hw.py

The acoustic round trip (the speaker's tone heard by the microphone) also needs RTCBOT_AUDIO_LOOPBACK=1:
a cable from the output to the input, or a microphone close to the speaker in a quiet room.
"""
from __future__ import annotations

import asyncio
import os
from typing import Any, Optional, Union

import numpy as np
import pytest

pytestmark = pytest.mark.hw

WAIT = 10.0
RATE = 48000


def _device() -> Optional[Union[int, str]]:
    value = os.environ.get("RTCBOT_AUDIO_DEVICE")
    if not value:
        return None
    return int(value) if value.isdigit() else value


DEVICE = _device()


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 60))


@pytest.fixture(autouse=True)
def sounddevice() -> Any:
    return pytest.importorskip("sounddevice", reason="sounddevice (and libportaudio2) are needed")


def tone(frequency: float, frames: int) -> np.ndarray:
    return (0.3 * np.sin(2 * np.pi * frequency * np.arange(frames) / RATE)).astype(np.float32)


def test_microphone_records_blocks_from_the_real_input():
    from rtcbot.devices.audio import Microphone

    async def main():
        with Microphone(samplerate=RATE, device=DEVICE, blocksize=1024) as mic:
            subscription = mic.subscribe()
            blocks = [await asyncio.wait_for(subscription.get(), WAIT) for _ in range(20)]
            return blocks, mic.overflows

    blocks, overflows = run(main())
    assert all(b.shape[0] == 1024 and b.dtype == np.float32 for b in blocks)
    assert [b.index for b in blocks] == list(range(blocks[0].index, blocks[0].index + 20))
    stamps = np.array([b.timestamp for b in blocks])
    assert np.all(np.diff(stamps) > 0)
    samples = np.concatenate(blocks)
    assert np.all(np.isfinite(samples)) and np.abs(samples).max() <= 1.0
    assert overflows == 0


def test_speaker_plays_a_tone_on_the_real_output_without_glitches():
    from rtcbot.devices.audio import Speaker

    async def main():
        with Speaker(samplerate=RATE, device=DEVICE) as speaker:
            await asyncio.wait_for(speaker.onReady(), WAIT)
            speaker.put_nowait(tone(440, RATE // 2))
            # Half a second of tone: the speaker must stay open through it and after it.
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(speaker.onClose(), 1.0)
            return speaker.underflows, speaker.xruns, speaker.error

    underflows, xruns, error = run(main())
    assert error is None
    assert underflows == 1  # the end of the tone
    assert xruns == 0


@pytest.mark.skipif(os.environ.get("RTCBOT_AUDIO_LOOPBACK") != "1", reason="set RTCBOT_AUDIO_LOOPBACK=1")
def test_speaker_tone_is_heard_by_the_microphone():
    from rtcbot.devices.audio import Microphone, Speaker

    async def main():
        with Speaker(samplerate=RATE, device=DEVICE, max_latency=2.0) as speaker, Microphone(
            samplerate=RATE, channels=1, device=DEVICE
        ) as mic:
            await asyncio.wait_for(speaker.onReady(), WAIT)
            subscription = mic.subscribe()
            await asyncio.wait_for(subscription.get(), WAIT)
            speaker.put_nowait(tone(1000, RATE * 2))
            blocks = [await asyncio.wait_for(subscription.get(), WAIT) for _ in range(RATE // 1024)]
            return np.concatenate(blocks)[:, 0]

    recording = run(main())[RATE // 4 :]
    spectrum = np.abs(np.fft.rfft(recording * np.hanning(len(recording))))
    spectrum[:10] = 0
    assert abs(np.argmax(spectrum) * RATE / len(recording) - 1000) < 5


def test_unknown_device_lists_the_real_devices():
    from rtcbot import DeviceOpenError
    from rtcbot.devices.audio import Microphone

    with pytest.raises(DeviceOpenError, match="Available devices"):
        Microphone(device="no such card, surely")
