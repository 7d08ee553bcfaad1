"""Microphone and Speaker on the real sound card, through the rtcbot plugin's ``rtcbot_microphone`` and
``rtcbot_speaker`` (the default devices, or ``[tool.rtcbot.hw.microphone]`` / ``--hw-device
microphone=name:USB``). Skipped unless asked for::

    pytest hw_tests/test_audio_hw.py --hw
    pytest hw_tests/test_audio_hw.py --hw --hw-device microphone=name:USB --hw-device speaker=name:USB

The acoustic round trip (the speaker's tone heard by the microphone) also needs ``RTCBOT_AUDIO_LOOPBACK=1``:
a cable from the output to the input, or a microphone close to the speaker in a quiet room. Without it the
microphone is only shown to be live (not digital silence), never to hear a signal.
"""
from __future__ import annotations

import asyncio
import math
import os

import numpy as np
import pytest

pytestmark = pytest.mark.hw

RATE = 48000
WAIT = 10.0

needs_loopback = pytest.mark.skipif(
    os.environ.get("RTCBOT_AUDIO_LOOPBACK") != "1",
    reason="needs an acoustic path from the speaker to the microphone: set RTCBOT_AUDIO_LOOPBACK=1",
)


def tone(frequency: float, frames: int) -> np.ndarray:
    return (0.3 * np.sin(2 * np.pi * frequency * np.arange(frames) / RATE)).astype(np.float32)


@pytest.mark.hw_microphone
def test_microphone_delivers_consecutive_live_blocks(rtcbot_run, rtcbot_microphone, rtcbot_subscribe):
    blocks = rtcbot_subscribe(rtcbot_microphone)

    async def main():
        return [await asyncio.wait_for(blocks.get(), WAIT) for _ in range(20)], rtcbot_microphone.overflows

    got, overflows = rtcbot_run(main())
    size = rtcbot_microphone.blocksize
    assert all(b.shape[0] == size and b.dtype == np.float32 for b in got)
    assert [b.index for b in got] == list(range(got[0].index, got[0].index + 20))
    assert np.all(np.diff([b.timestamp for b in got]) > 0)
    samples = np.concatenate(got)
    assert np.all(np.isfinite(samples)) and np.abs(samples).max() <= 1.0
    # A live input always has some noise; exact zeros mean a muted capture or the wrong device.
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    assert rms > 0 and 20 * math.log10(rms) > -90, "digital silence: is the input muted (alsamixer) or wrong?"
    assert overflows == 0


@pytest.mark.hw_speaker
def test_speaker_plays_a_tone_to_its_end_without_glitches(rtcbot_run, rtcbot_speaker):
    async def main():
        speaker = rtcbot_speaker
        before = speaker.underflows
        speaker.put_nowait(tone(440, RATE // 2))
        # The end of the tone is one underflow, reported by the player process when playback runs dry.
        while speaker.underflows == before:
            await asyncio.wait_for(speaker.next_counters(), WAIT)
        return speaker.underflows - before, speaker.xruns, speaker.queued, speaker.error

    underflows, xruns, queued, error = rtcbot_run(main())
    assert (underflows, xruns, queued, error) == (1, 0, 0, None)


@needs_loopback
@pytest.mark.hw_microphone
@pytest.mark.hw_speaker
def test_speaker_tone_is_heard_by_the_microphone(rtcbot_check):
    result = rtcbot_check.audio_loopback(frequency=1000, seconds=1.0)
    assert result.heard, result
    assert abs(result.frequency_hz - 1000) < 5, result


@needs_loopback
@pytest.mark.hw_microphone
@pytest.mark.hw_speaker
def test_nothing_is_heard_when_nothing_plays(rtcbot_run, rtcbot_speaker, rtcbot_microphone):
    from rtcbot.testing import audio_loopback

    result = rtcbot_run(audio_loopback(rtcbot_speaker, rtcbot_microphone, amplitude=0.0))
    assert not result.heard, result


@pytest.mark.hw_microphone
def test_unknown_device_lists_the_real_devices():
    from rtcbot import DeviceOpenError
    from rtcbot.devices.audio import Microphone

    with pytest.raises(DeviceOpenError, match="Available devices"):
        Microphone(device="no such card, surely")
