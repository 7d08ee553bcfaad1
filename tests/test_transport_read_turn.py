"""A thread waiting in recv() or wait_for() reads the channel itself once the reader thread found it waiting,
so the next item wakes it directly (one thread hop fewer per item); so does a thread sending through shared
memory, for the RELEASEs that free its slots (no wake-up of the reader thread per RELEASE). The reader thread
reads again once no thread waits or sends any more, and at the end.

Both ends run in this process (the worker end only needs threads), so each test can watch both."""

from __future__ import annotations

import queue
import socket
import sys
import threading
import time
from typing import Any, Callable, List, Tuple

import numpy as np
import pytest

from rtcbot.base.transport import ChannelClosed, WorkerEndpoint, worker_end
from rtcbot.base.transport.wire import _KIND_ITEM, _KIND_RELEASE, _RELEASE, _Encoded, _frame, _FrameReader, _parse_item

FRAME = (120, 160, 3)  # 57,600 bytes: through shared memory
MIN_SHARED = 4096
READER = "rtcbot-transport-reader"


class WhereUnpickled:
    """An item that remembers which thread unpickled it, i.e. which thread read it off the socket."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.thread = ""

    def __getstate__(self) -> Any:
        return self.index

    def __setstate__(self, index: int) -> None:
        self.index = index
        self.thread = threading.current_thread().name


def worker_pair(slots: int = 4, **receiver_options: Any) -> Tuple[WorkerEndpoint, WorkerEndpoint]:
    """``(sender, receiver)``: two worker ends of one socket pair."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    return (
        WorkerEndpoint(a, slots=slots, min_shared_bytes=MIN_SHARED),
        WorkerEndpoint(b, slots=slots, min_shared_bytes=MIN_SHARED, **receiver_options),
    )


def noting_the_call(called: threading.Event, ready: Callable[[], bool]) -> Callable[[], bool]:
    """``ready`` that first sets ``called``. wait_for() calls it at once, with the channel's lock held until
    this thread reads the socket or waits: what another thread does once ``called`` is set happens after that.
    """

    def check() -> bool:
        called.set()
        return ready()

    return check


def wait_until_reading(thread: threading.Thread) -> None:
    """Wait (at most 10 s) until ``thread`` waits in the channel's poll() for the socket: the state a wake-up
    must reach (a test that woke it earlier would not test the wake-up)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        frame = sys._current_frames().get(thread.ident)  # type: ignore[arg-type]
        if frame is not None and frame.f_code.co_name == "_read_in_this_thread":
            return
        time.sleep(0.001)  # polling a state, bounded: not a synchronisation by sleep
    raise AssertionError(f"{thread.name} never waited in poll()")


class RawPeer:
    """The other end, by hand: it reads the items a WorkerEndpoint sends and writes back exactly what the test
    says (a slot's RELEASE, an inline item), nothing on its own."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._frames = _FrameReader()

    def take_item(self) -> Tuple[int, int]:
        """Wait for the next item; return its ``(pool id, slot)``."""
        while True:
            for kind, payload in self._frames.messages():
                if kind == _KIND_ITEM:
                    pool_id, slot, _refs, _data = _parse_item(payload)
                    return pool_id, slot
            self._frames.close()  # a POOL message's fd: not mapped here
            assert self._frames.receive(self.sock), "the producer closed its end"

    def release(self, pool_id: int, slot: int) -> None:
        self.sock.sendall(_frame(_KIND_RELEASE, _RELEASE.pack(pool_id, slot)))

    def send(self, obj: object) -> None:
        self.sock.sendall(_Encoded(obj, None).frame())

    def close(self) -> None:
        self.sock.close()
        self._frames.close()


def producer_and_peer(**options: Any) -> Tuple[WorkerEndpoint, RawPeer]:
    """A WorkerEndpoint with one slot, and the raw other end of its socket."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    return WorkerEndpoint(a, slots=1, min_shared_bytes=MIN_SHARED, **options), RawPeer(b)


def send_in_a_thread_lent_the_turn(producer: WorkerEndpoint, peer: RawPeer) -> Tuple[int, int]:
    """Send frames 1-3 from this thread until it read the socket itself; return the slot frame 3 holds.

    Frame 2 waits for frame 1's RELEASE, which the reader thread reads; finding items sent through shared
    memory, it then lends its turn and sleeps. So frame 3, waiting for frame 2's RELEASE, reads the socket in
    this thread, and reads the item the peer wrote before that RELEASE (queued for the producer's recv()).
    """

    assert producer.send(np.full(FRAME, 1, np.uint8))
    peer.release(*peer.take_item())
    assert producer.send(np.full(FRAME, 2, np.uint8))
    frame_2 = peer.take_item()
    peer.send(WhereUnpickled(2))
    peer.release(*frame_2)
    assert producer.send(np.full(FRAME, 3, np.uint8))
    return peer.take_item()


def run_in_thread(target: Any, name: str) -> Tuple[threading.Thread, List[Any]]:
    """Start ``target`` in a thread; the list gets what it returned or raised."""
    outcome: List[Any] = []

    def main() -> None:
        try:
            outcome.append(target())
        except BaseException as e:  # handed to the test, which asserts on it
            outcome.append(e)

    thread = threading.Thread(target=main, name=name)
    thread.start()
    return thread, outcome


def test_items_after_the_first_are_read_by_the_thread_waiting_in_recv(no_leaks):
    sender, receiver = worker_pair()
    count = 20

    def receive_and_answer() -> List[str]:
        threads = []
        for _ in range(count):
            item = receiver.recv()
            threads.append(item.thread)
            receiver.send(item.index)  # the next item is sent once this one arrived: each finds us waiting
        return threads

    thread, outcome = run_in_thread(receive_and_answer, "consumer")
    try:
        for index in range(count):
            sender.send(WhereUnpickled(index))
            assert sender.recv() == index
        thread.join(10)
        (threads,) = outcome
        # The reader thread hands over once it finds the consumer waiting; from then on the consumer reads.
        # (If it is between two recv() calls when the reader looks again, one item goes the long way.)
        assert threads[0] == READER
        assert threads.count("consumer") >= count // 2, threads
    finally:
        sender.close()
        receiver.close()
        thread.join(10)
    assert not thread.is_alive()


def test_wait_for_reads_in_its_thread_and_hands_items_to_on_item(monkeypatch, no_leaks):
    monkeypatch.setattr(worker_end, "TAKE_BACK_AFTER", 3600.0)  # the reader thread does not look again here
    items: queue.SimpleQueue = queue.SimpleQueue()
    sender, receiver = worker_pair(on_item=items.put)
    count = 10
    waiting = [threading.Event() for _ in range(count)]

    def send_each_once_waited_for() -> None:
        for index in range(count):
            assert waiting[index].wait(10)
            sender.send(WhereUnpickled(index))

    sending, _ = run_in_thread(send_each_once_waited_for, "sender")
    try:
        readers = []
        for index in range(count):
            assert receiver.wait_for(noting_the_call(waiting[index], lambda: not items.empty()))
            item = items.get_nowait()
            assert item.index == index
            readers.append(item.thread)
        # The reader thread reads the first, finds this thread waiting and lends it its turn for good.
        assert readers == [READER] + [threading.current_thread().name] * (count - 1)
    finally:
        sending.join(10)
        sender.close()
        receiver.close()


def test_a_send_waiting_for_a_slot_reads_its_release_in_a_turn_lent_to_another_thread(monkeypatch, no_leaks):
    # The turn is lent to this thread, which waited in recv(); a send in another thread then waits for a slot.
    # Without it reading, the slot's RELEASE would wait unread until the reader thread looked again (an hour).
    monkeypatch.setattr(worker_end, "TAKE_BACK_AFTER", 3600.0)
    other, receiver = worker_pair(slots=1)
    frames_seen: queue.SimpleQueue = queue.SimpleQueue()

    def take_frames() -> None:
        try:
            while True:
                frames_seen.put(int(other.recv().max()))  # the array dies: its slot goes back
        except ChannelClosed:
            pass

    taker, _ = run_in_thread(take_frames, "other end")
    try:
        other.send("go")
        assert receiver.recv() == "go"  # read by the reader thread, which then lends its turn and sleeps
        for value in range(1, 4):  # one slot: each send after the first waits for the RELEASE of the last
            frame = np.full(FRAME, value, np.uint8)
            sending, outcome = run_in_thread(lambda: receiver.send(frame), "sender")  # noqa: B023 (joined below)
            sending.join(10)
            assert outcome == [True]
        assert [frames_seen.get(timeout=10) for _ in range(3)] == [1, 2, 3]
    finally:
        receiver.close()
        other.close()
        taker.join(10)


def test_the_reader_thread_reads_again_once_no_thread_waits(monkeypatch, no_leaks):
    monkeypatch.setattr(worker_end, "TAKE_BACK_AFTER", 0.01)
    arrived: queue.SimpleQueue = queue.SimpleQueue()
    sender, receiver = worker_pair(on_item=arrived.put)
    try:
        sender.send(WhereUnpickled(0))
        assert receiver.wait_for(lambda: not arrived.empty())  # the turn is lent to this thread after this
        arrived.get_nowait()
        sender.send(WhereUnpickled(1))  # nobody waits: the reader thread takes the turn back and reads it
        assert arrived.get(timeout=10).thread == READER
    finally:
        sender.close()
        receiver.close()


def test_close_ends_a_thread_waiting_or_reading_in_wait_for(no_leaks):
    arrived: queue.SimpleQueue = queue.SimpleQueue()
    ended: List[str] = []
    sender, receiver = worker_pair(on_item=arrived.put, on_eof=lambda: ended.append(threading.current_thread().name))

    def take_until_closed() -> int:
        taken = 0
        while receiver.wait_for(lambda: not arrived.empty()):
            arrived.get_nowait()
            taken += 1
            if taken == 3:
                receiver.send("three taken")
        return taken

    thread, outcome = run_in_thread(take_until_closed, "consumer")
    try:
        for index in range(3):
            sender.send(index)
        assert sender.recv() == "three taken"  # the consumer waits (and, by now, reads) for a fourth
        receiver.close()
        thread.join(10)
        assert outcome == [3]
        assert ended == [READER]  # once, in the reader thread, which is gone now
    finally:
        sender.close()
        receiver.close()
        thread.join(10)


def test_the_parent_closing_ends_a_thread_reading_in_recv(no_leaks):
    ended: List[str] = []
    sender, receiver = worker_pair(on_eof=lambda: ended.append(threading.current_thread().name))

    def receive_until_closed() -> List[Any]:
        received = []
        try:
            while True:
                received.append(receiver.recv())
                receiver.send("ack")
        except ChannelClosed as e:
            received.append(e)
        return received

    thread, outcome = run_in_thread(receive_until_closed, "consumer")
    try:
        for index in range(3):
            sender.send(index)
            assert sender.recv() == "ack"
        sender.close()  # the consumer is reading the socket for a fourth item by now: it sees EOF
        thread.join(10)
        (received,) = outcome
        assert received[:3] == [0, 1, 2] and isinstance(received[3], ChannelClosed)
        assert receiver.closed
        receiver.close()  # waits for the reader thread, which ends the channel
        assert ended == [READER]
    finally:
        sender.close()
        receiver.close()
        thread.join(10)


def test_wake_waiting_gets_a_thread_reading_in_wait_for_to_look_again(no_leaks):
    arrived: queue.SimpleQueue = queue.SimpleQueue()
    sender, receiver = worker_pair(on_item=arrived.put)
    entered = [threading.Event(), threading.Event()]
    stop = threading.Event()

    def wait_twice() -> List[bool]:
        first = receiver.wait_for(noting_the_call(entered[0], lambda: not arrived.empty()))
        # Item 0 came while this thread waited: the reader thread lent it its turn, so it reads now.
        second = receiver.wait_for(noting_the_call(entered[1], stop.is_set))
        return [first, second]

    thread, outcome = run_in_thread(wait_twice, "consumer")
    try:
        assert entered[0].wait(10)
        sender.send(0)
        assert entered[1].wait(10)
        stop.set()  # nothing arrives: only wake_waiting() can end the wait
        receiver.wake_waiting()
        thread.join(10)
        assert outcome == [[True, True]]
    finally:
        sender.close()
        receiver.close()
        thread.join(10)


def test_a_thread_sending_through_shared_memory_reads_the_socket_itself(monkeypatch, no_leaks):
    # The reader thread does not look again here: only the sending thread can read what comes.
    monkeypatch.setattr(worker_end, "TAKE_BACK_AFTER", 3600.0)
    producer, peer = producer_and_peer()
    try:
        # While it waits for a slot:
        frame_3 = send_in_a_thread_lent_the_turn(producer, peer)
        assert producer.recv().thread == threading.current_thread().name
        # And before it takes one: frame 4 would be dropped if frame 3's RELEASE, here by now, were not read.
        peer.release(*frame_3)
        assert producer.send(np.full(FRAME, 4, np.uint8), block=False)
        assert peer.take_item() == frame_3
    finally:
        producer.close()
        peer.close()


def test_close_from_on_item_in_a_thread_reading_in_wait_for_ends_the_channel(monkeypatch, no_leaks):
    monkeypatch.setattr(worker_end, "TAKE_BACK_AFTER", 3600.0)  # the reader thread does not look again here
    readers: List[str] = []

    def on_item(item: WhereUnpickled) -> None:
        readers.append(item.thread)
        if item.index == 1:
            receiver.close()  # in this thread, which is reading the channel: close() must not wait for itself

    sender, receiver = worker_pair(on_item=on_item)
    waiting = [threading.Event(), threading.Event()]

    def send_each_once_waited_for() -> None:
        for index in range(2):
            assert waiting[index].wait(10)
            sender.send(WhereUnpickled(index))

    sending, _ = run_in_thread(send_each_once_waited_for, "sender")
    try:
        assert receiver.wait_for(noting_the_call(waiting[0], lambda: len(readers) == 1))
        assert not receiver.wait_for(noting_the_call(waiting[1], lambda: False))  # ended by the close
        assert readers == [READER, threading.current_thread().name]
        assert receiver.closed
    finally:
        sending.join(10)
        sender.close()
        receiver.close()
    # no_leaks: the reader thread ends and the wake-up pipe is closed although close() did not wait for it


def test_the_reader_thread_reads_again_once_no_thread_sends(monkeypatch, no_leaks):
    monkeypatch.setattr(worker_end, "TAKE_BACK_AFTER", 0.01)
    arrived: queue.SimpleQueue = queue.SimpleQueue()
    producer, peer = producer_and_peer(on_item=arrived.put)
    try:
        send_in_a_thread_lent_the_turn(producer, peer)
        assert arrived.get(timeout=10).thread == threading.current_thread().name
        peer.send(WhereUnpickled(4))  # nobody sends or waits: the reader thread takes its turn back, reads it
        assert arrived.get(timeout=10).thread == READER
    finally:
        producer.close()
        peer.close()


@pytest.mark.parametrize("ending", ["stop_waiting", "close"])
def test_a_send_reading_the_socket_for_a_slot_ends(ending, monkeypatch, no_leaks):
    """stop_waiting() (a worker asked to close: the parent frees no more slots) and close() both end a send
    that reads the socket for the RELEASE it waits for."""
    monkeypatch.setattr(worker_end, "TAKE_BACK_AFTER", 3600.0)
    producer, peer = producer_and_peer()
    try:
        send_in_a_thread_lent_the_turn(producer, peer)  # frame 3 keeps the only slot
        sending, outcome = run_in_thread(lambda: producer.send(np.full(FRAME, 4, np.uint8)), "sender")
        wait_until_reading(sending)  # for frame 3's RELEASE, which never comes
        getattr(producer, ending)()
        sending.join(10)
        assert len(outcome) == 1 and isinstance(outcome[0], ChannelClosed), outcome
    finally:
        producer.close()
        peer.close()
