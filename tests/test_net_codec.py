"""The network codec: every item round-trips exactly, and bad samples raise DecodeError and nothing else."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from rtcbot.errors import EncodeError
from rtcbot.net.codec import DecodeError, SampleTooLargeError, decode, encode, is_frame, jpeg_size


def roundtrip(item, **kw):
    enc = encode(item, **kw)
    return decode(enc.encoding, enc.payload)


@pytest.mark.parametrize(
    "array",
    [
        np.arange(480 * 640 * 3, dtype=np.uint8).reshape(480, 640, 3),
        np.linspace(-1, 1, 1024 * 2, dtype=np.float32).reshape(1024, 2),  # an audio block
        np.arange(960, dtype=np.int16).reshape(480, 2),
        np.array(3.5),
        np.zeros((0, 3), dtype=np.float64),
        np.array([True, False]),
        np.arange(6, dtype=">i4").reshape(2, 3),
        np.array([1 + 2j], dtype=np.complex128),
    ],
    ids=["frame", "audio-f32", "audio-i16", "scalar", "empty", "bool", "big-endian", "complex"],
)
def test_arrays_round_trip_with_dtype_and_shape(array):
    out = roundtrip(array)
    assert out.dtype == array.dtype and out.shape == array.shape
    np.testing.assert_array_equal(out, array)


def test_decoded_array_is_writable():
    out = roundtrip(np.zeros((2, 2), np.uint8))
    out[0, 0] = 1


def test_non_contiguous_array_round_trips():
    array = np.arange(24).reshape(4, 6)[:, ::2]
    np.testing.assert_array_equal(roundtrip(array), array)


@pytest.mark.parametrize(
    "item",
    [
        b"\x00\xffraw",
        "héllo",
        {"left": 0.5, "right": -0.5, "tags": ["a", 1, None, True]},
        [1, 2, 3],
        42,
        None,
    ],
)
def test_plain_values_round_trip_exactly(item):
    out = roundtrip(item)
    assert out == item and type(out) is type(item)


def test_numpy_scalars_in_json_become_python_numbers():
    assert roundtrip({"speed": np.float32(0.5), "n": np.int64(3)}) == {"speed": 0.5, "n": 3}


@pytest.mark.parametrize("item", [{1, 2}, object(), {"x": float("nan")}, np.array([object()])])
def test_items_without_an_encoding_raise_encode_error(item):
    with pytest.raises(EncodeError):
        encode(item)


@pytest.mark.parametrize("shape", [(480, 640, 3), (120, 160)])
def test_jpeg_frames_decode_to_the_same_shape(shape):
    ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]]
    gradient = ((xs + ys) % 256).astype(np.uint8)
    frame = gradient if len(shape) == 2 else np.stack([gradient, gradient[::-1], 255 - gradient], axis=2)
    enc = encode(frame, jpeg_quality=90)
    assert enc.encoding == "image/jpeg" and len(enc.payload) < frame.nbytes
    out = decode(enc.encoding, enc.payload)
    assert out.shape == frame.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - frame).mean() < 4


def test_jpeg_is_only_used_for_frames():
    audio = np.zeros((480, 2), np.float32)
    assert not is_frame(audio)
    assert encode(audio, jpeg_quality=80).encoding.startswith("rtcbot/ndarray")


def test_jpeg_quality_out_of_range_is_an_encode_error():
    with pytest.raises(EncodeError):
        encode(np.zeros((8, 8, 3), np.uint8), jpeg_quality=0)


def test_jpeg_size_reads_the_header():
    enc = encode(np.zeros((48, 64, 3), np.uint8), jpeg_quality=50)
    assert jpeg_size(enc.payload) == (48, 64, 3)


def test_jpeg_claiming_a_huge_image_is_refused_before_decoding():
    enc = encode(np.zeros((48, 64), np.uint8), jpeg_quality=50)
    with pytest.raises(SampleTooLargeError):
        decode(enc.encoding, enc.payload, max_bytes=48 * 64 - 1)


def test_oversized_payload_raises_sample_too_large():
    with pytest.raises(SampleTooLargeError):
        decode("zenoh/bytes", b"x" * 101, max_bytes=100)


def test_array_header_claiming_more_than_max_bytes_raises_sample_too_large():
    with pytest.raises(SampleTooLargeError):
        decode("rtcbot/ndarray;<f8;100000,100000", b"")


@pytest.mark.parametrize(
    "encoding,payload",
    [
        ("rtcbot/ndarray;|u1;2,2", b"abc"),  # short payload
        ("rtcbot/ndarray;|O8;1", b"12345678"),  # object dtype: never
        ("rtcbot/ndarray;<f3;1", b"123"),  # no such dtype
        ("rtcbot/ndarray", b""),  # no header
        ("image/jpeg", b"\xff\xd8garbage"),
        ("application/json", b"{not json"),
        ("application/json", b"[" * 100000),
        ("zenoh/string", b"\xff\xfe"),
        ("application/python-pickle", b"\x80\x04."),
    ],
)
def test_malformed_samples_raise_decode_error(encoding, payload):
    with pytest.raises(DecodeError):
        decode(encoding, payload)


def test_other_zenoh_programs_samples_decode():
    assert decode("text/plain", b"hi") == "hi"
    assert decode("application/octet-stream", b"\x01") == b"\x01"


_encodings = st.one_of(
    st.sampled_from(["rtcbot/ndarray", "image/jpeg", "zenoh/bytes", "zenoh/string", "application/json", "x/y"]),
    st.builds(
        lambda d, s: f"rtcbot/ndarray;{d};{s}",
        st.sampled_from(["|u1", "<f4", "<i2", ">f8", "|b1", "<c8", "|O", "<U3", "|V4", "x"]),
        st.text(alphabet="0123456789,-; ", max_size=12),
    ),
    st.text(max_size=40),
)


@settings(max_examples=400, deadline=None)
@given(_encodings, st.binary(max_size=2048))
def test_arbitrary_samples_decode_or_raise_decode_error_only(encoding, payload):
    try:
        decode(encoding, payload, max_bytes=1 << 20)
    except DecodeError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=512).map(lambda b: b"\xff\xd8" + b))
def test_arbitrary_jpeg_like_bytes_raise_decode_error_only(payload):
    try:
        decode("image/jpeg", payload, max_bytes=1 << 20)
    except DecodeError:
        pass


@settings(max_examples=200, deadline=None)
@given(hnp.arrays(dtype=hnp.scalar_dtypes(), shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5)))
def test_any_numeric_array_round_trips(array):
    if array.dtype.kind not in "biufc":
        with pytest.raises(EncodeError):
            encode(array)
        return
    out = roundtrip(array)
    assert out.dtype == array.dtype and out.shape == array.shape
    np.testing.assert_array_equal(out, array)


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
        lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
        max_leaves=20,
    )
)
def test_json_values_round_trip(value):
    assert roundtrip(value) == value


def test_arrays_decode_into_buffers_from_alloc():
    from rtcbot.base.bufferpool import BufferPool

    pool = BufferPool(slots=2)
    enc = encode(np.arange(6, dtype=np.int32).reshape(2, 3))
    first = decode(enc.encoding, enc.payload, alloc=pool.take)
    np.testing.assert_array_equal(first, np.arange(6).reshape(2, 3))
    assert first.flags.writeable and first.dtype == np.int32
    second = decode(enc.encoding, enc.payload, alloc=pool.take)
    assert not np.shares_memory(first, second)  # first is still held: its buffer is not reused
    base = first.base
    del first, base
    third = decode(enc.encoding, enc.payload, alloc=pool.take)
    assert not np.shares_memory(third, second)


def test_pool_reuses_a_buffer_once_released():
    from rtcbot.base.bufferpool import BufferPool

    pool = BufferPool(slots=2)
    address = pool.take(64).ctypes.data  # not held: free again at once
    assert pool.take(64).ctypes.data == address
    held = pool.take(64)
    assert pool.take(64).ctypes.data != held.ctypes.data
