"""Serial framing: decoders give the same messages however the bytes are split, resynchronise after noise,
never raise and never grow without bound; encoders reject what does not fit, naming the field."""
from __future__ import annotations

import pickle
import struct

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from rtcbot.devices.framing import (
    FRAME_SYNC,
    FramedDecoder,
    LineDecoder,
    RawDecoder,
    StartByteGate,
    StructDecoder,
    crc16,
    encode_frame,
    make_decoder,
    make_encoder,
)
from rtcbot.errors import EncodeError, InvalidItemError

settings.register_profile("rtcbot", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("rtcbot")


def split_at(data: bytes, cuts: list) -> list:
    """``data`` cut at the given positions (any order, repeats allowed): the pieces a port might deliver."""
    points = sorted({min(max(c, 0), len(data)) for c in cuts})
    pieces, last = [], 0
    for p in points:
        pieces.append(data[last:p])
        last = p
    pieces.append(data[last:])
    return pieces


def feed_all(decoder, pieces) -> list:
    out = []
    for piece in pieces:
        out.extend(decoder.feed(piece))
    return out


cuts = st.lists(st.integers(min_value=0, max_value=4000), max_size=30)
lines = st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=30)
payloads = st.lists(st.binary(max_size=60), max_size=20)
shorts = st.integers(min_value=-32768, max_value=32767)
records = st.lists(st.tuples(shorts, shorts, st.integers(min_value=0, max_value=255)), max_size=40)
# Framed payload bytes are any bytes: include the sync marker itself, inside payloads, on purpose.
tricky_payloads = st.lists(
    st.lists(st.sampled_from([b"\xa5", b"\x5a", b"\xa5\x5a", b"\x00", b"\xff", b"x"]), max_size=12).map(
        b"".join
    ),
    max_size=15,
)


# ------------------------------------------------------------------------------------ split invariance


@given(lines, cuts)
def test_line_decoder_gives_the_same_lines_for_any_split(msgs, where):
    stream = b"".join(m + b"\n" for m in msgs)
    assert feed_all(LineDecoder(), split_at(stream, where)) == msgs


@given(st.lists(st.binary(max_size=20).map(lambda b: b.replace(b"\r", b"")), max_size=20), cuts)
def test_two_byte_separator_is_found_when_split_between_reads(msgs, where):
    stream = b"".join(m + b"\r\n" for m in msgs)
    assert feed_all(LineDecoder(b"\r\n"), split_at(stream, where)) == msgs


@given(records, cuts)
def test_struct_decoder_gives_the_same_records_for_any_split(recs, where):
    stream = b"".join(struct.pack("<hhB", *r) for r in recs)
    assert feed_all(StructDecoder("<hhB"), split_at(stream, where)) == recs


@given(records, cuts)
def test_struct_decoder_with_keys_gives_the_same_dicts_for_any_split(recs, where):
    # Whole records with nothing held are unpacked straight from the read; the rest go through the buffer.
    stream = b"".join(struct.pack("<hhB", *r) for r in recs)
    expected = [dict(zip("abc", r)) for r in recs]
    assert feed_all(StructDecoder("<hhB", ["a", "b", "c"]), split_at(stream, where)) == expected


def test_struct_decoder_keeps_a_partial_record_after_whole_ones():
    dec = StructDecoder("<hB")
    assert dec.feed(struct.pack("<hB", 1, 2) + b"\x03") == [(1, 2)]
    assert dec.buffered == 1
    assert dec.feed(b"\x00\x04" + struct.pack("<hB", 5, 6)) == [(3, 4), (5, 6)]
    assert dec.buffered == 0


@given(st.one_of(payloads, tricky_payloads), cuts)
def test_framed_decoder_gives_the_same_payloads_for_any_split(msgs, where):
    stream = b"".join(encode_frame(m) for m in msgs)
    dec = FramedDecoder()
    assert feed_all(dec, split_at(stream, where)) == msgs
    assert dec.dropped == 0


@given(st.binary(max_size=200), cuts)
def test_raw_decoder_passes_every_byte_through_in_order(data, where):
    assert b"".join(feed_all(RawDecoder(), split_at(data, where))) == data


@given(st.binary(max_size=50).filter(lambda b: b"\xff\x00" not in b and not b.endswith(b"\xff")), lines, cuts)
def test_start_bytes_split_across_reads_still_open_the_gate(noise, msgs, where):
    stream = noise + b"\xff\x00" + b"".join(m + b"\n" for m in msgs)
    assert feed_all(StartByteGate(b"\xff\x00", LineDecoder()), split_at(stream, where)) == msgs


def test_everything_before_the_start_byte_is_ignored_even_a_complete_message():
    dec = make_decoder("<h", startByte=b"\xff")
    assert dec.feed(b"\x01\x00\x02") == []
    assert dec.feed(b"\xff\x03\x00") == [(3,)]
    assert dec.discarded_bytes == 3


def test_reset_closes_the_start_gate_again():
    dec = make_decoder("\n", startByte="S")
    assert dec.feed(b"Sa\n") == [b"a"]
    dec.reset()
    assert dec.feed(b"b\nSc\n") == [b"c"]


# --------------------------------------------------------------------------------- noise and resync

noise_blobs = st.lists(st.binary(max_size=40), min_size=1, max_size=16)


@given(payloads, noise_blobs, cuts)
def test_noise_between_frames_loses_no_frame(msgs, noise, where):
    # Noise may contain a fake marker whose length byte claims the following real frames; the decoder
    # must give those frames back once that many bytes have arrived, so the stream ends with padding.
    padding = b"\x00" * (255 + 5)
    assume(FramedDecoder().feed(b"".join(noise) + padding) == [])  # noise that is itself a valid frame
    parts = []
    for k, m in enumerate(msgs):
        parts.append(noise[k % len(noise)])
        parts.append(encode_frame(m))
    parts.append(noise[-1])
    stream = b"".join(parts) + padding
    assert feed_all(FramedDecoder(), split_at(stream, where)) == msgs


@given(payloads, st.data())
def test_a_corrupted_frame_is_dropped_counted_and_the_next_one_decoded(msgs, data):
    assume(len(msgs) >= 2)
    frames = [encode_frame(m) for m in msgs]
    k = data.draw(st.integers(min_value=0, max_value=len(frames) - 2))
    bad = bytearray(frames[k])
    i = data.draw(st.integers(min_value=2, max_value=len(bad) - 1))  # length, payload or checksum
    bad[i] ^= data.draw(st.integers(min_value=1, max_value=255))
    frames[k] = bytes(bad)
    dec = FramedDecoder()
    out = dec.feed(b"".join(frames) + b"\x00" * 260)
    assert out == msgs[:k] + msgs[k + 1 :]
    assert dec.dropped >= 1


@given(st.lists(st.binary(min_size=1, max_size=30), min_size=2, max_size=12), st.data())
def test_a_damaged_length_byte_does_not_hold_later_frames_back(msgs, data):
    # The length byte of frame k now claims more bytes than were sent: every later good frame must come out
    # of the very feed() that completes it (one frame time), not once the claimed bytes have arrived.
    frames = [encode_frame(m) for m in msgs]
    k = data.draw(st.integers(min_value=0, max_value=len(frames) - 2))
    bad = bytearray(frames[k])
    bad[2] = data.draw(st.integers(min_value=bad[2] + 1, max_value=255))
    frames[k] = bytes(bad)
    dec = FramedDecoder()
    got = []
    for j, frame in enumerate(frames):
        got.extend(dec.feed(frame))
        assert got == [m for i, m in enumerate(msgs[: j + 1]) if i != k], f"after frame {j}"
    assert dec.dropped >= 1


def test_a_reply_after_a_frame_claiming_255_bytes_arrives_at_once():
    dec = FramedDecoder("<hh", ["left", "right"])
    damaged = bytearray(encode_frame(struct.pack("<hh", 1, 2)))
    damaged[2] = 255
    assert dec.feed(bytes(damaged)) == []
    assert dec.feed(encode_frame(struct.pack("<hh", 3, 4))) == [{"left": 3, "right": 4}]
    assert dec.dropped == 1


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("fmt", ["<f", "<d", "<e"])
def test_nan_and_infinity_in_a_float_field_are_refused_naming_the_field(fmt, value):
    enc = make_encoder(fmt[0] + "h" + fmt[1], ["id", "speed"])
    with pytest.raises(EncodeError, match="'speed'.*not a finite number"):
        enc.encode({"id": 1, "speed": value})
    assert enc.encode({"id": 1, "speed": 0.5})  # finite values still go


@given(payloads, payloads, st.integers(min_value=1, max_value=60))
def test_a_device_reset_mid_frame_loses_only_the_interrupted_frame(before, after, cut):
    interrupted = encode_frame(b"interrupted message payload")
    stream = b"".join(map(encode_frame, before)) + interrupted[: cut % len(interrupted)]
    stream += b"".join(map(encode_frame, after)) + b"\x00" * 260
    assert FramedDecoder().feed(stream) == before + after


def test_framed_struct_payload_of_wrong_size_is_dropped_and_counted():
    dec = FramedDecoder("<hh", ["left", "right"])
    out = dec.feed(encode_frame(b"\x01\x00") + encode_frame(struct.pack("<hh", 5, -5)))
    assert out == [{"left": 5, "right": -5}]
    assert dec.dropped == 1


def test_crc16_is_ccitt_false():
    assert crc16(b"123456789") == 0x29B1


def test_frame_layout_is_sync_length_payload_crc_little_endian():
    frame = encode_frame(b"hi")
    assert frame[:2] == FRAME_SYNC == b"\xa5\x5a"
    assert frame[2] == 2 and frame[3:5] == b"hi"
    assert int.from_bytes(frame[5:], "little") == crc16(b"\x02hi")


# ------------------------------------------------------------------------------ robustness (any input)

any_decoder = st.sampled_from(
    [
        lambda: LineDecoder(max_length=64),
        lambda: LineDecoder(b"\r\n", max_length=64),
        RawDecoder,
        lambda: StructDecoder("<hhB", ["a", "b", "c"]),
        FramedDecoder,
        lambda: FramedDecoder("<hh", max_payload=16),
        lambda: make_decoder("\n", startByte=b"\xa5\x5a", max_line=64),
    ]
)


@given(any_decoder, st.lists(st.binary(max_size=300), max_size=30))
def test_no_input_makes_a_decoder_raise_or_grow_without_bound(factory, chunks):
    dec = factory()
    for chunk in chunks:
        dec.feed(chunk)
        # at most one incomplete line (64 + a separator) or one incomplete frame (255 + 4 bytes)
        assert dec.buffered <= 259


@given(st.binary(min_size=100, max_size=2000))
def test_a_line_longer_than_max_length_is_dropped_and_counted(body):
    body = body.replace(b"\n", b"")
    assume(len(body) > 64)
    dec = LineDecoder(max_length=64)
    out = feed_all(dec, [body[:50], body[50:], b"\nok\n"])
    assert out == [b"ok"]
    assert dec.dropped == 1


def test_decoders_pickle_to_a_fresh_decoder():
    dec = make_decoder("<hh", ["a", "b"], startByte=b"\xff", framed=True)
    dec.feed(b"\xff" + encode_frame(b"\x01"))
    copy = pickle.loads(pickle.dumps(dec))
    assert copy.dropped == 0 and copy.buffered == 0
    assert copy.feed(b"\xff" + encode_frame(struct.pack("<hh", 1, 2))) == [{"a": 1, "b": 2}]


# ----------------------------------------------------------------------------------------- decoding


def test_read_format_separator_gives_lines_without_the_separator():
    assert make_decoder("\n").feed(b"a\nb\n") == [b"a", b"b"]


def test_read_format_none_gives_raw_chunks():
    assert make_decoder(None).feed(b"a\nb") == [b"a\nb"]


def test_struct_read_format_gives_tuples_or_dicts_with_read_keys():
    data = struct.pack("<hhB", 1, -2, 3)
    assert make_decoder("<hhB").feed(data) == [(1, -2, 3)]
    assert make_decoder("<hhB", ["a", "b", "c"]).feed(data) == [{"a": 1, "b": -2, "c": 3}]


def test_read_keys_must_match_the_field_count():
    with pytest.raises(ValueError, match="3 fields but 2 keys"):
        make_decoder("<hhB", ["a", "b"])


def test_read_keys_without_a_struct_format_is_refused():
    with pytest.raises(ValueError, match="readKeys"):
        make_decoder("\n", ["a"])


# ----------------------------------------------------------------------------------------- encoding


@given(st.lists(st.tuples(shorts, shorts, st.integers(0, 255)), max_size=20))
def test_encoded_struct_messages_decode_back(recs):
    enc = make_encoder("<hhB", ["a", "b", "c"], framed=True)
    stream = b"".join(enc.encode(dict(zip("abc", r))) for r in recs)
    assert FramedDecoder("<hhB").feed(stream) == recs


def test_str_and_bytes_are_sent_as_they_are():
    enc = make_encoder("<hh")
    assert enc.encode("M 10\n") == b"M 10\n"
    assert enc.encode(b"\x01\x02") == b"\x01\x02"


wide = st.integers(min_value=-70000, max_value=70000)


@given(st.tuples(wide, wide, wide))
def test_encoding_packs_what_fits_and_names_the_first_field_that_does_not(values):
    # The encoder packs a whole record at once and only checks field by field when that fails: the result
    # must be what checking each field first would give.
    fmt, codes = "<hHb", ["h", "H", "b"]
    first_bad = None
    for i, (code, value) in enumerate(zip(codes, values)):
        try:
            struct.pack("<" + code, value)
        except struct.error:
            first_bad = i
            break
    enc = make_encoder(fmt)
    if first_bad is None:
        assert enc.encode(values) == struct.pack(fmt, *values)
        assert enc.encode(list(values)) == struct.pack(fmt, *values)
    else:
        with pytest.raises(EncodeError, match=rf"field {first_bad} \(struct code '{codes[first_bad]}'\)"):
            enc.encode(values)


def test_a_message_with_two_faults_names_the_first_field_in_format_order():
    enc = make_encoder("<hf", ["count", "speed"])
    with pytest.raises(EncodeError, match=r"field 'count' .*-32768\.\.32767"):
        enc.encode({"count": 99999, "speed": float("nan")})
    with pytest.raises(EncodeError, match="'speed'.*not a finite number"):
        enc.encode((1, float("inf")))
    with pytest.raises(EncodeError, match=r"field 'speed' .*float"):
        enc.encode((1, "fast"))


def test_wrong_count_is_an_encode_error():
    with pytest.raises(EncodeError, match="3 values but the format has 2 fields"):
        make_encoder("<hh").encode((1, 2, 3))


def test_missing_key_is_an_encode_error_naming_the_key():
    with pytest.raises(EncodeError, match="missing key 'right'"):
        make_encoder("<hh", ["left", "right"]).encode({"left": 1})


def test_out_of_range_value_is_an_encode_error_naming_the_field_and_range():
    with pytest.raises(EncodeError, match=r"field 'right' .*-32768\.\.32767"):
        make_encoder("<hh", ["left", "right"]).encode({"left": 1, "right": 40000})


def test_out_of_range_without_keys_names_the_field_index():
    with pytest.raises(EncodeError, match=r"field 2 \(struct code 'B'\).*0\.\.255"):
        make_encoder("<hhB").encode((1, 2, 256))


def test_unknown_key_is_an_encode_error():
    with pytest.raises(EncodeError, match="unknown key 'speed'"):
        make_encoder("<hh", ["left", "right"]).encode({"left": 1, "right": 2, "speed": 3})


def test_a_value_without_write_format_is_an_encode_error():
    with pytest.raises(EncodeError, match="writeFormat"):
        make_encoder().encode({"left": 1})


def test_encode_error_is_an_invalid_item_error_and_a_value_error():
    with pytest.raises(InvalidItemError):
        make_encoder("<h").encode(("a",))
    assert issubclass(EncodeError, ValueError)


def test_a_frame_payload_over_255_bytes_is_an_encode_error():
    with pytest.raises(EncodeError, match="256 bytes"):
        make_encoder(framed=True).encode(b"x" * 256)


def test_single_field_format_accepts_a_bare_value():
    assert make_encoder("<h").encode(-1) == b"\xff\xff"
