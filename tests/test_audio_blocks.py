"""Specification of the pure audio helpers: conversion to the speaker format and the playback buffer."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from rtcbot.devices.audio_blocks import AudioBlock, PlaybackBuffer, as_playable, check_playable
from rtcbot.errors import InvalidItemError

# --- as_playable / check_playable ---------------------------------------------------------------------


def test_int16_full_scale_maps_to_minus_one_to_one():
    block = np.array([-32768, 0, 16384, 32767], np.int16)
    out = as_playable(block, 1)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[:, 0], [-1.0, 0.0, 0.5, 32767 / 32768])


def test_int32_is_scaled_like_int16():
    out = as_playable(np.array([-(2**31), 2**30], np.int32), 1)
    np.testing.assert_allclose(out[:, 0], [-1.0, 0.5])


def test_float64_is_kept_as_float32_values():
    out = as_playable(np.array([0.25, -0.75]), 1)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out[:, 0], [0.25, -0.75])


def test_mono_block_is_copied_to_every_channel():
    out = as_playable(np.array([0.1, 0.2], np.float32), 3)
    assert out.shape == (2, 3)
    assert (out == out[:, :1]).all()


def test_one_column_2d_block_is_copied_to_every_channel():
    out = as_playable(np.array([[0.25], [0.5]], np.float32), 2)
    np.testing.assert_array_equal(out, [[0.25, 0.25], [0.5, 0.5]])


def test_stereo_block_is_mixed_down_for_a_mono_speaker():
    out = as_playable(np.array([[1.0, 0.0], [0.5, 0.5]], np.float32), 1)
    np.testing.assert_allclose(out[:, 0], [0.5, 0.5])


def test_result_is_c_contiguous_even_for_a_strided_view():
    block = np.zeros((100, 4), np.float32)[::2, :2]
    out = as_playable(block, 2)
    assert out.flags.c_contiguous and out.shape == (50, 2)


def test_empty_block_is_playable_and_empty():
    assert as_playable(np.zeros(0, np.float32), 2).shape == (0, 2)


@pytest.mark.parametrize(
    "item, fragment",
    [
        ("hello", "numpy arrays"),
        ([0.1, 0.2], "numpy arrays"),
        (np.zeros((2, 2, 2, 2), np.float32), "shape"),
        (np.zeros((), np.float32), "shape"),
        (np.zeros(4, np.uint8), "dtype"),
        (np.array(["a"]), "dtype"),
        (np.zeros((4, 3), np.float32), "3 channels"),
        (np.array([0.1, np.nan, 0.2], np.float32), "1 NaN or infinite"),
        (np.array([[0.1, np.inf], [-np.inf, 0.0]], np.float64), "2 NaN or infinite"),
        (np.array([np.nan], np.float16), "NaN"),
    ],
    ids=["string", "list", "4d", "scalar", "uint8", "unicode", "3ch-on-2ch", "nan", "inf", "nan16"],
)
def test_unplayable_items_raise_invalid_item_error_naming_the_problem(item, fragment):
    with pytest.raises(InvalidItemError, match=fragment):
        check_playable(item, 2)


def test_invalid_item_error_is_a_value_error():
    with pytest.raises(ValueError):
        as_playable("not audio", 1)


sample_dtypes = st.sampled_from([np.float32, np.float64, np.int16, np.int32])


@st.composite
def playable_blocks(draw):
    """(block, speaker_channels) pairs covering mono/multi-channel, 1-D/2-D and every accepted dtype."""
    speaker_channels = draw(st.integers(1, 4))
    dtype = np.dtype(draw(sample_dtypes))
    frames = draw(st.integers(0, 64))
    layout = draw(st.sampled_from(["1d", "mono2d", "same", "mixdown"]))
    if layout == "1d":
        shape: tuple = (frames,)
    elif layout == "mono2d":
        shape = (frames, 1)
    elif layout == "same" or speaker_channels != 1:
        shape = (frames, speaker_channels)
    else:
        shape = (frames, draw(st.integers(2, 4)))
    if dtype.kind == "f":
        elements = st.floats(-1, 1, width=32)
    else:
        info = np.iinfo(dtype)
        elements = st.integers(int(info.min), int(info.max))
    return draw(hnp.arrays(dtype, shape, elements=elements)), speaker_channels


@given(playable_blocks())
def test_any_playable_block_becomes_frames_by_speaker_channels_float32_in_range(case):
    block, channels = case
    out = as_playable(block, channels)
    assert out.shape == (len(block), channels)
    assert out.dtype == np.float32 and out.flags.c_contiguous
    assert np.all(np.abs(out) <= 1.0)


@given(playable_blocks())
def test_conversion_keeps_the_signal_of_a_single_channel_block(case):
    block, channels = case
    if block.ndim == 2 and block.shape[1] != 1:
        return  # mixing is covered separately
    mono = block.reshape(len(block)).astype(np.float64)
    scale = 1.0 if block.dtype.kind == "f" else (32768.0 if block.dtype == np.int16 else 2.0**31)
    out = as_playable(block, channels)
    for c in range(channels):
        np.testing.assert_allclose(out[:, c], mono / scale, rtol=1e-6, atol=1e-7)


# --- PlaybackBuffer -------------------------------------------------------------------------------------


def _ramp(start: int, n: int, channels: int = 1) -> np.ndarray:
    """Frames numbered start..start+n-1 (same value on every channel), so order and loss are visible."""
    return np.repeat(np.arange(start, start + n, dtype=np.float32)[:, None], channels, axis=1)


def test_read_from_an_empty_buffer_is_silence_and_not_an_underflow():
    buf = PlaybackBuffer(capacity=16, channels=2)
    out = np.full((8, 2), 7.0, np.float32)
    assert buf.read_into(out) == 0
    assert not out.any()
    assert buf.underflows == 0


def test_audio_comes_out_in_order_with_silence_after_it():
    buf = PlaybackBuffer(capacity=16, channels=1)
    buf.write(_ramp(1, 5))
    out = np.empty((8, 1), np.float32)
    assert buf.read_into(out) == 5
    np.testing.assert_array_equal(out[:, 0], [1, 2, 3, 4, 5, 0, 0, 0])


def test_running_dry_after_audio_counts_one_underflow_not_one_per_silent_read():
    buf = PlaybackBuffer(capacity=16, channels=1)
    out = np.empty((4, 1), np.float32)
    buf.write(_ramp(1, 6))
    buf.read_into(out)  # full
    buf.read_into(out)  # 2 of 4: ran dry
    buf.read_into(out)  # idle
    buf.read_into(out)  # idle
    assert buf.underflows == 1


def test_exactly_emptying_then_an_empty_read_counts_one_underflow():
    buf = PlaybackBuffer(capacity=16, channels=1)
    out = np.empty((4, 1), np.float32)
    buf.write(_ramp(1, 4))
    buf.read_into(out)
    buf.read_into(out)
    assert buf.underflows == 1


def test_writing_past_the_bound_drops_the_oldest_frames():
    buf = PlaybackBuffer(capacity=8, channels=1)
    buf.write(_ramp(0, 6))
    assert buf.write(_ramp(6, 6)) == 4
    out = np.empty((8, 1), np.float32)
    buf.read_into(out)
    np.testing.assert_array_equal(out[:, 0], np.arange(4, 12))
    assert buf.dropped == 4


def test_a_block_longer_than_the_bound_plays_whole_and_drops_everything_before_it():
    buf = PlaybackBuffer(capacity=4, channels=1)
    buf.write(_ramp(100, 2))
    assert buf.write(_ramp(0, 10)) == 2
    out = np.empty((10, 1), np.float32)
    assert buf.read_into(out) == 10
    np.testing.assert_array_equal(out[:, 0], np.arange(10))


def test_a_new_sound_cuts_what_is_left_of_a_long_one():
    buf = PlaybackBuffer(capacity=4, channels=1)
    buf.write(_ramp(0, 10))
    buf.read_into(np.empty((3, 1), np.float32))
    assert buf.write(_ramp(100, 2)) == 5  # 7 left of the long sound; only 2 of them may stay
    out = np.empty((4, 1), np.float32)
    buf.read_into(out)
    np.testing.assert_array_equal(out[:, 0], [8, 9, 100, 101])


def test_clear_forgets_queued_audio():
    buf = PlaybackBuffer(capacity=8, channels=1)
    buf.write(_ramp(1, 5))
    buf.clear()
    assert buf.frames == 0
    assert buf.read_into(np.empty((2, 1), np.float32)) == 0


def test_a_block_with_the_wrong_channel_count_is_refused():
    with pytest.raises(ValueError):
        PlaybackBuffer(capacity=8, channels=2).write(np.zeros((4, 1), np.float32))


def test_capacity_must_be_positive():
    with pytest.raises(ValueError):
        PlaybackBuffer(capacity=0, channels=1)


# A run of operations: ("w", n) writes n numbered frames, ("r", n) reads n frames.
operations = st.lists(
    st.tuples(st.sampled_from(["w", "r"]), st.integers(0, 40)), min_size=1, max_size=60
)


@settings(max_examples=300)
@given(capacity=st.integers(1, 32), channels=st.integers(1, 3), ops=operations)
def test_buffer_behaves_like_a_bounded_fifo_that_drops_oldest(capacity, channels, ops):
    """Model check: the buffer equals a plain list from whose front, before each write of n frames, old
    frames are dropped until at most `capacity` remain with the new ones (the new block is never cut)."""
    buf = PlaybackBuffer(capacity=capacity, channels=channels)
    model: list = []
    next_frame = 1
    dropped = 0
    for op, n in ops:
        if op == "w":
            excess = max(0, min(len(model), len(model) + n - capacity)) if n else 0
            dropped += excess
            del model[:excess]
            model.extend(range(next_frame, next_frame + n))
            assert buf.write(_ramp(next_frame, n, channels)) == excess
            next_frame += n
            assert n == 0 or len(model) <= max(capacity, n)
        else:
            out = np.full((n, channels), -1.0, np.float32)
            got = buf.read_into(out)
            expected = model[:n]
            del model[:n]
            assert got == len(expected)
            np.testing.assert_array_equal(out[:got, 0], expected)
            assert not out[got:].any(), "missing audio must be filled with silence"
            assert (out == out[:, :1]).all()
        assert buf.frames == len(model)
        assert buf.dropped == dropped


@given(
    blocks=st.lists(st.integers(0, 50), max_size=30),
    read_size=st.integers(1, 64),
)
def test_under_the_bound_reads_rechunk_writes_of_any_length_without_loss(blocks, read_size):
    """Re-chunking: arbitrary-length writes come out as fixed-size reads, the same frames in order."""
    total = sum(blocks)
    buf = PlaybackBuffer(capacity=max(total, 1), channels=1)
    start = 0
    for n in blocks:
        buf.write(_ramp(start, n))
        start += n
    played = []
    out = np.empty((read_size, 1), np.float32)
    while True:
        got = buf.read_into(out)
        played.extend(out[:got, 0].tolist())
        if got < read_size:
            break
    assert played == list(range(total))
    assert buf.dropped == 0


# --- AudioBlock -----------------------------------------------------------------------------------------


def test_audio_block_carries_timestamp_and_index_through_slices():
    block = AudioBlock(np.zeros((4, 2), np.float32), timestamp=12.5, index=3)
    left = block[:, 0]
    assert (left.timestamp, left.index) == (12.5, 3)


def test_audio_block_reductions_are_plain_scalars():
    block = AudioBlock(np.ones((4, 2), np.float32), timestamp=1.0, index=0)
    assert type(block.max()) is np.float32


def test_audio_block_survives_pickling_with_its_attributes():
    block = AudioBlock(np.arange(6, dtype=np.float32).reshape(3, 2), timestamp=2.0, index=7)
    copy = pickle.loads(pickle.dumps(block))
    np.testing.assert_array_equal(copy, block)
    assert (copy.timestamp, copy.index) == (2.0, 7)


def test_audio_block_is_playable():
    block = AudioBlock(np.full((4, 2), 0.5, np.float32), timestamp=0.0, index=0)
    assert as_playable(block, 2).shape == (4, 2)
