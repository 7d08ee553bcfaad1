"""The simulated camera and microphone: their pure generators, then the devices in real time."""

from __future__ import annotations

import asyncio
import math
import time

import numpy as np
import pytest

from rtcbot.devices import sim
from rtcbot.devices.audio_blocks import AudioBlock
from rtcbot.devices.camera import Frame
from rtcbot.devices.sim import SimCamera, SimMicrophone, SimSpeaker, render_test_pattern, tone_block
from rtcbot.errors import InvalidItemError
from tests.helpers import next_item, run

# ------------------------------------------------------------------------------------------ test pattern


def test_pattern_has_the_asked_size_as_bgr_bytes():
    frame = render_test_pattern(160, 90, 0)
    assert frame.shape == (90, 160, 3)
    assert frame.dtype == np.uint8


def test_pattern_shows_eight_colour_bars_below_the_counter():
    row = render_test_pattern(320, 240, 0)[200]
    colours = {tuple(px) for px in row}
    assert len(colours) == 8
    assert (0, 255, 255) in colours  # yellow, in BGR


def test_pattern_bars_move_from_frame_to_frame():
    a, b = render_test_pattern(320, 240, 10)[200], render_test_pattern(320, 240, 11)[200]
    assert not np.array_equal(a, b)
    assert np.array_equal(np.roll(a, 4, axis=0), b)  # 4 pixels right per frame


def test_pattern_draws_the_frame_counter_in_the_top_left_corner():
    a, b = render_test_pattern(320, 240, 123), render_test_pattern(320, 240, 124)
    corner = (slice(0, 60), slice(0, 100))
    assert np.any(a[corner] == 255) and np.any(a[corner] == 0)  # white digits on black
    assert not np.array_equal(a[corner], b[corner])


def test_pattern_counter_is_drawn_without_opencv(monkeypatch):
    monkeypatch.setattr(sim, "_cv2_or_none", lambda: None)
    a, b = render_test_pattern(320, 240, 7), render_test_pattern(320, 240, 8)
    corner = (slice(0, 30), slice(0, 20))
    assert np.any(a[corner] == 255)
    assert not np.array_equal(a[corner], b[corner])


def test_pattern_renders_tiny_frames_with_long_counters():
    frame = render_test_pattern(8, 4, 123456, use_cv2=False)
    assert frame.shape == (4, 8, 3)


def test_pattern_rejects_an_empty_size():
    with pytest.raises(ValueError, match="0x10"):
        render_test_pattern(0, 10, 0)


# ------------------------------------------------------------------------------------------ tone


def test_tone_block_has_microphone_layout():
    block = tone_block(0, 256, channels=2)
    assert block.shape == (256, 2)
    assert block.dtype == np.float32


def test_tone_blocks_join_without_a_click():
    whole = tone_block(0, 2048, noise=0)
    halves = np.concatenate([tone_block(0, 1024, noise=0), tone_block(1024, 1024, noise=0)])
    np.testing.assert_allclose(whole, halves, atol=1e-6)


def test_tone_is_at_the_asked_frequency():
    block = tone_block(0, 48000, samplerate=48000, frequency=1000, noise=0)[:, 0]
    spectrum = np.abs(np.fft.rfft(block))
    assert np.argmax(spectrum) == 1000  # 1 Hz per bin for one second of samples


def test_tone_level_follows_the_amplitude():
    block = tone_block(0, 48000, amplitude=0.5, noise=0)
    dbfs = 20 * math.log10(float(np.sqrt(np.mean(block.astype(np.float64) ** 2))))
    assert dbfs == pytest.approx(20 * math.log10(0.5 / math.sqrt(2)), abs=0.1)


def test_tone_noise_is_added_and_samples_stay_in_full_scale():
    block = tone_block(0, 4096, amplitude=0.9, noise=0.5, rng=np.random.default_rng(1))
    clean = tone_block(0, 4096, amplitude=0.9, noise=0)
    assert not np.allclose(block, clean)
    assert block.min() >= -1.0 and block.max() <= 1.0


# ------------------------------------------------------------------------------------------ SimCamera


def test_sim_camera_delivers_frames_of_the_asked_size(no_leaks):
    async def main():
        with SimCamera(width=64, height=48, fps=60) as camera:
            return await next_item(camera.subscribe())

    frame = run(main())
    assert isinstance(frame, Frame)
    assert frame.shape == (48, 64, 3)
    assert frame.index is not None and frame.index >= 0  # the newest frame, like CVCamera
    assert frame.timestamp == pytest.approx(time.monotonic(), abs=5)


def test_sim_camera_runs_at_the_asked_rate(no_leaks):
    async def main():
        with SimCamera(width=64, height=48, fps=20) as camera:
            sub = camera.subscribe(asyncio.Queue())
            return [await next_item(sub) for _ in range(11)]

    frames = run(main())
    assert [f.index for f in frames] == list(range(11))
    # 10 periods of 50 ms: paced, never faster (late frames catch up to the schedule, never ahead of it);
    # the upper bound leaves a loaded 2-core machine a stall of most of a second
    assert 0.45 <= frames[-1].timestamp - frames[0].timestamp <= 1.5


def stall_once(at_index: int, seconds: float):
    """A preprocessframe that blocks the camera's worker once, like a busy machine would."""

    def preprocess(frame):
        if frame.index == at_index:
            time.sleep(seconds)  # fault injection: the worker stalls (not synchronisation)
        return frame

    return preprocess


def test_sim_camera_catches_up_after_a_short_stall():
    async def main():
        with SimCamera(width=32, height=24, fps=20, preprocessframe=stall_once(2, 0.2)) as camera:
            sub = camera.subscribe(asyncio.Queue())
            return [await next_item(sub) for _ in range(21)]

    frames = run(main())
    # 20 periods of 50 ms: the 200 ms stall is made up, not added (it would give 1.2 s)
    assert 0.9 <= frames[-1].timestamp - frames[0].timestamp <= 1.12


def test_sim_camera_skips_frames_after_a_long_stall():
    async def main():
        with SimCamera(width=32, height=24, fps=20, preprocessframe=stall_once(2, 0.7)) as camera:
            sub = camera.subscribe(asyncio.Queue())
            return [await next_item(sub) for _ in range(10)]

    frames = run(main())
    assert frames[-1].timestamp - frames[0].timestamp >= 0.7 + 6 * 0.05  # the stall was not made up


def test_sim_camera_has_cvcamera_properties():
    async def main():
        with SimCamera(width=64, height=48, fps=60) as camera:
            await next_item(camera.subscribe())
            return camera.width, camera.height, camera.fps, camera.frame_count

    width, height, fps, count = run(main())
    assert (width, height, fps) == (64, 48, 60.0)
    assert count >= 1


def test_sim_camera_gives_subscribers_what_preprocessframe_returns():
    async def main():
        with SimCamera(width=64, height=48, fps=60, preprocessframe=lambda f: f[:10, :20]) as camera:
            return await next_item(camera.subscribe())

    frame = run(main())
    assert frame.shape == (10, 20, 3)
    assert frame.index == 0


def test_sim_camera_close_is_prompt_and_idempotent(no_leaks):
    closes = []

    async def main():
        camera = SimCamera(fps=0.2)  # a frame every 5 s: close must not wait for the next one
        camera.onClose(lambda: closes.append("closed"))
        await camera.onReady()
        t = time.monotonic()
        camera.close()
        camera.close()
        await asyncio.wait_for(camera, 5)
        camera.close()
        return time.monotonic() - t, camera.error, camera.closed

    elapsed, error, closed = run(main())
    assert elapsed < 2.5  # well under the 5 s the next frame would take
    assert error is None and closed
    assert closes == ["closed"]  # onClose fired once, however many close() calls


def test_sim_camera_rejects_a_zero_rate():
    with pytest.raises(ValueError, match="fps"):
        SimCamera(fps=0)


# ------------------------------------------------------------------------------------------ SimMicrophone


def test_sim_microphone_delivers_blocks_of_the_asked_shape(no_leaks):
    async def main():
        with SimMicrophone(samplerate=16000, channels=2, blocksize=160) as mic:
            return await next_item(mic.subscribe())

    block = run(main())
    assert isinstance(block, AudioBlock)
    assert block.shape == (160, 2)
    assert block.dtype == np.float32
    assert block.index == 0


def test_sim_microphone_is_not_silent():
    async def main():
        with SimMicrophone(blocksize=480) as mic:
            return await next_item(mic.subscribe())

    block = run(main())
    assert float(np.sqrt(np.mean(np.square(block, dtype=np.float64)))) > 0.1


def test_sim_microphone_delivers_in_real_time(no_leaks):
    async def main():
        with SimMicrophone(samplerate=8000, blocksize=400) as mic:  # 50 ms blocks
            sub = mic.subscribe(asyncio.Queue())
            first = await next_item(sub)
            blocks = [await next_item(sub) for _ in range(10)]
            # From the start of the first block's audio to the arrival of the eleventh block's end.
            return first, blocks, time.monotonic() - first.timestamp

    first, blocks, elapsed = run(main())
    assert [b.index for b in blocks] == list(range(1, 11))
    # 11 blocks of 50 ms: a block is never delivered before its last sample was "recorded" (a late first
    # block only makes the rest arrive sooner after it, so this counts from its timestamp); late on a
    # loaded machine, so the upper bound is generous.
    assert 0.55 - 0.01 <= elapsed <= 2.5
    assert blocks[-1].timestamp - first.timestamp == pytest.approx(0.5, abs=0.15)


def test_sim_microphone_blocks_continue_the_tone():
    async def main():
        with SimMicrophone(samplerate=8000, blocksize=80, noise=0) as mic:
            sub = mic.subscribe(asyncio.Queue())
            return [await next_item(sub) for _ in range(3)]

    blocks = run(main())
    expected = tone_block(0, 240, samplerate=8000, noise=0)
    np.testing.assert_allclose(np.concatenate(blocks), expected, atol=1e-6)


def test_sim_microphone_rejects_a_zero_blocksize():
    with pytest.raises(ValueError, match="blocksize=0"):
        SimMicrophone(blocksize=0)


# ------------------------------------------------------------------------------------------ SimSpeaker


def test_sim_speaker_measures_what_it_is_given(no_leaks):
    async def main():
        with SimSpeaker(samplerate=8000) as speaker:
            speaker.put_nowait(tone_block(0, 4000, samplerate=8000, amplitude=0.5, noise=0))
            speaker.put_nowait((np.ones(4000) * 0.5 * 32767).astype(np.int16) * 0)  # int16 silence
            await asyncio.wait_for(speaker.received(8000), 5)
            return speaker.frames, speaker.level_dbfs

    frames, level = run(main())
    assert frames == 8000
    # half the time a -9 dBFS tone, half silence: 3 dB lower
    assert level == pytest.approx(20 * math.log10(0.5 / math.sqrt(2)) - 3.01, abs=0.1)


def test_sim_speaker_refuses_what_a_speaker_cannot_play():
    async def main():
        with SimSpeaker(channels=2) as speaker:
            with pytest.raises(InvalidItemError, match="3 channels"):
                speaker.put_nowait(np.zeros((10, 3), np.float32))

    run(main())


def test_sim_speaker_plays_a_producer_through_putsubscription():
    async def main():
        with SimMicrophone(samplerate=8000, blocksize=400) as mic, SimSpeaker(samplerate=8000) as speaker:
            speaker.putSubscription(mic)
            await asyncio.wait_for(speaker.received(1200), 5)
            return speaker.level_dbfs

    assert run(main()) == pytest.approx(-9.0, abs=0.5)


def test_sim_speaker_received_ends_with_device_closed_when_it_closes(no_leaks):
    from rtcbot.errors import DeviceClosedError

    async def main():
        speaker = SimSpeaker(samplerate=8000)
        waiting = asyncio.ensure_future(speaker.received(10**9))
        speaker.put_nowait(np.zeros(100, np.float32))
        await asyncio.wait_for(speaker.onReady(), 5)
        speaker.close()
        with pytest.raises(DeviceClosedError, match="closed after"):
            await asyncio.wait_for(waiting, 5)

    run(main())


# --------------------------------------------------------------------------------- edges of the settings


@pytest.mark.parametrize("use_cv2", [True, False])
@pytest.mark.parametrize("width, height", [(1, 1), (2, 1), (1, 2), (3, 3), (8, 1), (1, 60)])
def test_pattern_renders_every_size_from_one_pixel(width, height, use_cv2):
    frame = render_test_pattern(width, height, 12345, use_cv2=use_cv2)
    assert frame.shape == (height, width, 3) and frame.dtype == np.uint8 and frame.flags.writeable


def test_sim_camera_of_one_pixel_delivers_frames(no_leaks):
    async def main():
        with SimCamera(width=1, height=1, fps=60) as camera:
            return await next_item(camera.subscribe())

    assert run(main()).shape == (1, 1, 3)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"samplerate": 1}, "take 1024 s"),
        ({"samplerate": 8000, "blocksize": 800_000}, "take 100 s"),
        ({"frequency": float("nan")}, "frequency"),
        ({"amplitude": float("inf")}, "amplitude"),
    ],
)
def test_sim_microphone_settings_that_cannot_work_fail_at_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SimMicrophone(**kwargs)
