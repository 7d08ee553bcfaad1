"""The transport's wire format on its own (no processes): property tests of framing, item encoding and the
feed's flow-control window."""
import copyreg
import gc
import pickle
import socket
import threading
import weakref

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtcbot.base.feed_window import FeedWindow
from rtcbot.base.transport.wire import _KIND_ITEM, _Encoded, _frame, _FrameReader, _parse_item
from rtcbot.errors import NotPicklableError

messages = st.lists(st.tuples(st.integers(1, 4), st.binary(max_size=3000)), max_size=20)


@settings(max_examples=60, deadline=None)
@given(messages, st.lists(st.integers(1, 5000), min_size=1, max_size=10))
def test_frames_split_at_any_byte_come_out_whole_and_in_order(msgs, cuts):
    stream = b"".join(_frame(kind, payload) for kind, payload in msgs)
    a, b = socket.socketpair()
    try:
        reader = _FrameReader()
        got = []
        position, i = 0, 0
        while position < len(stream):
            chunk = stream[position : position + cuts[i % len(cuts)]]
            i += 1
            position += len(chunk)
            a.sendall(chunk)
            received = 0
            while received < len(chunk):
                received += reader.receive(b)
            got.extend((kind, bytes(payload)) for kind, payload in reader.messages())
        assert got == [(kind, payload) for kind, payload in msgs]
        reader.close()
    finally:
        a.close()
        b.close()


def test_a_read_that_took_less_than_it_had_room_for_says_the_socket_was_drained():
    # The parent stops reading then, instead of ending every wake-up with a read that fails.
    a, b = socket.socketpair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    try:
        reader = _FrameReader()
        a.sendall(_frame(1, b"x" * 100))
        assert reader.receive(b) == 105 and reader.drained
        big = _frame(1, b"y" * (1 << 20))  # more than the reader has room for in one read
        a.sendall(big)
        assert reader.receive(b) < len(big) and not reader.drained
        reader.close()
    finally:
        a.close()
        b.close()


def test_a_message_put_back_comes_out_again_first_and_nothing_is_lost():
    a, b = socket.socketpair()
    try:
        reader = _FrameReader()
        a.sendall(b"".join(_frame(1, bytes([n]) * 10) for n in range(3)))
        received = 0
        while received < 3 * 15:
            received += reader.receive(b)
        first_pass = []
        for _kind, payload in reader.messages():
            first_pass.append(bytes(payload))
            if len(first_pass) == 2:
                reader.put_back()  # the second one goes back
                break
        assert reader.buffered
        a.sendall(_frame(1, b"\x03" * 10))  # more arrives before the rest is read
        while reader.receive(b) < 15:
            pass
        rest = [bytes(payload) for _, payload in reader.messages()]
        assert first_pass == [b"\x00" * 10, b"\x01" * 10]
        assert rest == [bytes([n]) * 10 for n in (1, 2, 3)]
        assert not reader.buffered
        reader.close()
    finally:
        a.close()
        b.close()


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 200_000), max_size=5), st.integers(1, 100_000))
def test_an_item_frame_carries_its_buffers_out_of_band_above_the_threshold(sizes, threshold):
    item = {"arrays": [np.arange(n, dtype=np.uint8) for n in sizes], "tag": "x"}
    encoded = _Encoded(item, threshold)
    try:
        assert len(encoded.buffers) == sum(1 for n in sizes if n >= threshold)
        assert all(offset % 64 == 0 for offset in encoded.offsets)
        frame = encoded.frame(pool_id=7, slot=1 if encoded.buffers else -1)
        assert frame[4] == _KIND_ITEM
        pool_id, slot, refs, data = _parse_item(bytearray(frame[5:]))
        assert [size for _, size in refs] == [buf.nbytes for buf in encoded.buffers]
        assert bytes(data) == encoded.data
    finally:
        encoded.release()


ARRAYS = [
    np.arange(640 * 480 * 3, dtype=np.uint8).reshape(480, 640, 3),
    np.zeros((0, 3), np.float32),
    np.array(5.0),
    np.arange(10)[::2],  # not contiguous
    np.asfortranarray(np.arange(12.0).reshape(3, 4)),
    np.array([(1, 2.0)], dtype=[("a", "<i4"), ("b", "<f8")]),
    np.array(["ab", "c"]),
    np.array([b"ab"]),
    np.array([1, "x"], dtype=object),
    np.array([1 + 2j, True]),
    np.arange(6, dtype=">i4").reshape(2, 3),
    np.array(["2020-01-01"], dtype="M8[ns]"),
    np.ones(3, np.float16),
    np.ma.masked_array([1, 2], [0, 1]),
]


@pytest.mark.parametrize("threshold", [1, 1 << 30], ids=["shared", "inline"])
@pytest.mark.parametrize("array", ARRAYS, ids=lambda a: f"{a.dtype}{list(a.shape)}")
def test_an_array_of_any_dtype_and_layout_comes_out_equal_and_writable(array, threshold):
    # Plain arrays are pickled as buffer, dtype string and shape (cheaper than numpy's own reduction); the
    # others (fields, objects, datetimes, subclasses, non-contiguous) must still come out as they went in.
    encoded = _Encoded({"array": array}, threshold)
    try:
        got = pickle.loads(encoded.data, buffers=[bytearray(buf) for buf in encoded.buffers])["array"]
    finally:
        encoded.release()
    assert type(got) is type(array) and got.dtype == array.dtype and got.shape == array.shape
    if isinstance(array, np.ma.MaskedArray):
        assert np.ma.allequal(got, array) and (got.mask == array.mask).all()
    else:
        assert np.array_equal(got, array)
    assert got.flags.writeable


class _Point:
    def __init__(self, x):
        self.x = x

    def __reduce__(self):
        raise TypeError("a _Point crosses only through its copyreg reducer")


def _make_point(x):
    return _Point(x)


def test_a_copyreg_reducer_registered_after_import_is_used_as_pickle_dumps_would():
    copyreg.pickle(_Point, lambda point: (_make_point, (point.x,)))
    try:
        encoded = _Encoded({"point": _Point(3)}, None)
    finally:
        del copyreg.dispatch_table[_Point]
    assert pickle.loads(encoded.data)["point"].x == 3


@settings(max_examples=100, deadline=None)
@given(
    st.integers(1, 300),
    st.integers(1, 1 << 22),
    st.integers(1, 4),
    st.lists(
        st.one_of(
            st.tuples(st.just("send"), st.integers(0, 1 << 21), st.just(False)),
            st.tuples(st.just("take"), st.integers(1, 5), st.booleans()),
        )
    ),
)
def test_the_feed_window_never_lets_more_than_its_bounds_wait(max_items, max_bytes, stretch, ops):
    window = FeedWindow(max_items, max_bytes, stretch)
    most_bytes = max_bytes * stretch
    sent = []
    for op, value, starved in ops:
        if op == "send":
            if window.full:
                assert window.in_flight >= max_items or window.in_flight_bytes >= max_bytes
                window.ask()
                continue
            window.sent(value)
            sent.append(value)
        else:
            taken = min(value, len(sent))
            window.took(value, starved)
            del sent[:taken]
            assert max_bytes <= window.max_bytes <= most_bytes
            assert 2 <= window.floor_items <= 2 * stretch
            if not starved:
                assert (window.max_bytes, window.floor_items) == (max_bytes, 2)
        assert window.in_flight == len(sent)
        assert window.in_flight_bytes == sum(sent)
        assert window.in_flight <= max_items
        # beyond the item floor (2, stretched up to 2 * stretch), bytes are bounded by the limit plus the one
        # item that crossed it
        if window.in_flight > 2 * stretch:
            assert window.in_flight_bytes - sent[-1] < most_bytes


def test_the_feed_window_stretches_while_the_worker_keeps_up_and_snaps_back_when_it_lags():
    window = FeedWindow(max_items=256, max_bytes=100, stretch=4)
    for _ in range(3):
        window.sent(60)
    assert window.full and window.ask()
    window.took(1, starved=True)  # the worker waited for an item while the feed waited for room
    assert window.max_bytes == 200
    window.took(1, starved=True)  # the feed did not wait since: no reason to stretch further
    assert window.max_bytes == 200
    for _ in range(4):
        window.sent(60)
        if window.full:
            assert window.ask()
            window.took(1, starved=True)
    assert window.max_bytes == 400  # at most stretch times the configured bound
    window.took(1, starved=False)  # items were waiting for the worker: it is the slower side
    assert window.max_bytes == 100


def test_the_feed_windows_item_floor_stretches_with_its_bytes_so_large_frames_can_go_ahead():
    # Two 1080p frames (6.2 MB) fill any byte bound up to 8 MB: only the item floor lets a third and a fourth
    # go ahead of a worker that keeps up, and it is back to two once frames wait for the worker.
    frame = 1920 * 1080 * 3
    window = FeedWindow(max_items=256, max_bytes=2 << 20, stretch=4)
    window.sent(frame)
    window.sent(frame)
    assert window.full and window.floor_items == 2
    for floor in (4, 8, 8):
        assert window.ask()
        window.took(2, starved=True)
        assert window.floor_items == floor
        while not window.full:
            window.sent(frame)
        assert window.in_flight == floor
    window.took(1, starved=False)
    assert window.floor_items == 2 and window.full  # seven frames wait: no more until they are taken


def test_the_feed_window_asks_for_a_report_once_per_wait():
    window = FeedWindow(max_items=1)
    window.sent(10)
    assert window.full
    assert window.ask() and not window.ask()
    window.took(1)
    assert not window.full
    window.sent(10)
    assert window.ask()


def test_the_feed_window_is_half_full_at_half_its_item_or_byte_bound():
    # The feed asks for a report then, so that the answer of a worker keeping up is back before it is full.
    window = FeedWindow(max_items=8, max_bytes=1000)
    window.sent(400)
    assert not window.half_full  # one item: the byte bound counts from two
    window.sent(100)
    assert window.half_full and not window.full  # 500 of 1000 bytes
    small = FeedWindow(max_items=8, max_bytes=1000)
    for count in range(1, 5):
        small.sent(1)
        assert small.half_full == (count >= 4)  # 4 of 8 items


# Each thread reuses one pickler for every item it sends; what it pickled must not leak from one item into the
# next, nor be kept alive by it, whatever the items before were.


class _Node:
    def __init__(self, value):
        self.value = value


def _decoded(encoded):
    try:
        return pickle.loads(encoded.data, buffers=[bytearray(buf) for buf in encoded.buffers])
    finally:
        encoded.release()


def test_an_item_after_one_that_failed_to_pickle_comes_out_whole():
    frame = np.arange(640 * 480 * 3, dtype=np.uint8).reshape(480, 640, 3)
    with pytest.raises(NotPicklableError, match="lambda"):
        _Encoded({"frame": frame, "bad": lambda: 1}, 65536)  # fails after the frame was kept out of band
    encoded = _Encoded({"frame": frame, "n": 2}, 65536)
    assert len(encoded.buffers) == 1  # only this item's frame
    got = _decoded(encoded)
    assert got["n"] == 2 and np.array_equal(got["frame"], frame)


def test_an_encoded_item_keeps_no_object_of_it_alive_once_its_buffers_are_released():
    shared, node = _Node(1), _Node(2)
    encoded = _Encoded([shared, shared, node], None)  # twice: through the pickler's memo
    refs = [weakref.ref(shared), weakref.ref(node)]
    del shared, node
    gc.collect()
    assert [ref() for ref in refs] == [None, None]
    first, second, third = pickle.loads(encoded.data)
    assert first is second and (first.value, third.value) == (1, 2)


def test_the_same_object_in_two_items_is_pickled_whole_in_each():
    node = _Node(5)
    one, two = _Encoded([node], None), _Encoded([node], None)
    assert pickle.loads(one.data)[0].value == pickle.loads(two.data)[0].value == 5


class _SendsWhilePickled:
    """An object whose pickling encodes another item on the same thread (as a reducer that logs might)."""

    def __reduce__(self):
        inner = _Encoded({"inner": np.ones(100_000, np.uint8)}, 65536)
        size = inner.buffers[0].nbytes
        inner.release()
        return (int, (size,))


def test_an_item_whose_pickling_encodes_another_item_comes_out_whole():
    frame = np.full(200_000, 7, np.uint8)
    got = _decoded(_Encoded({"frame": frame, "size": _SendsWhilePickled()}, 65536))
    assert got["size"] == 100_000 and np.array_equal(got["frame"], frame)


def test_threads_encoding_at_once_each_get_their_own_items():
    errors = []
    start = threading.Barrier(4)

    def encode(tag):
        try:
            start.wait(10)
            for index in range(300):
                frame = np.full(70_000, tag, np.uint8)
                got = _decoded(_Encoded({"tag": tag, "index": index, "frame": frame}, 65536))
                assert (got["tag"], got["index"]) == (tag, index) and int(got["frame"][-1]) == tag
        except Exception as e:  # reported below: an assertion in a thread would be lost
            errors.append(e)

    threads = [threading.Thread(target=encode, args=(tag,)) for tag in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors and not any(thread.is_alive() for thread in threads)


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 20), st.integers(1, 1 << 22), st.lists(st.integers(0, 1 << 21), max_size=25))
def test_the_feed_window_says_beforehand_whether_an_item_would_fill_it(max_items, max_bytes, sizes):
    window = FeedWindow(max_items, max_bytes)
    for size in sizes:
        if window.full:
            break
        predicted = window.fills_up_with(size)
        window.sent(size)
        assert predicted == window.full
