"""Data-channel and websocket messages: strings as text, JSON for the rest, parsed back on arrival."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtcbot.errors import EncodeError
from rtcbot.web.messages import decode_message, encode_message

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=10,
)


def test_strings_travel_as_they_are():
    assert encode_message("hello") == "hello"
    assert decode_message("hello") == "hello"
    assert decode_message("123") == "123"  # only objects and arrays are parsed


def test_dicts_and_lists_travel_as_json():
    assert encode_message({"left": 100}) == '{"left": 100}'
    assert decode_message('{"left": 100}') == {"left": 100}
    assert decode_message(" [1, 2]") == [1, 2]


def test_bytes_travel_as_binary():
    assert encode_message(b"\x00\x01") == b"\x00\x01"
    assert encode_message(bytearray(b"ab")) == b"ab"
    assert decode_message(b"{") == b"{"


def test_text_that_only_looks_like_json_stays_text():
    assert decode_message("{not json") == "{not json"


def test_unsendable_value_names_its_type():
    with pytest.raises(EncodeError, match="set"):
        encode_message({1, 2})
    with pytest.raises(ValueError):  # EncodeError is a ValueError
        encode_message(object())


@given(st.dictionaries(st.text(), json_values, max_size=5) | st.lists(json_values, max_size=5))
def test_objects_and_arrays_round_trip(value):
    assert decode_message(encode_message(value)) == value


@given(st.text().filter(lambda s: s.lstrip()[:1] not in ("{", "[")))
def test_other_text_round_trips(text):
    assert decode_message(encode_message(text)) == text
