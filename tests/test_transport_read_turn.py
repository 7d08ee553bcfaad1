"""A thread waiting in recv() or wait_for() reads the channel itself once the reader thread found it waiting,
so the next item wakes it directly (one thread hop fewer per item); the reader thread reads again when a send
waits for a slot, when no thread waits any more, and at the end.

Both ends run in this process (the worker end only needs threads), so each test can watch both."""

from __future__ import annotations

import queue
import socket
import threading
from typing import Any, Callable, List, Tuple

import numpy as np

from rtcbot.base.transport import ChannelClosed, WorkerEndpoint, worker_end

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


def test_a_send_waiting_for_a_slot_gets_the_reader_thread_reading_again(monkeypatch, no_leaks):
    # Without it, the slot's RELEASE would wait unread until the reader thread looked again (an hour here).
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


def test_a_send_that_drops_for_want_of_a_slot_gets_the_reader_thread_reading_again(monkeypatch, no_leaks):
    # A producer that drops rather than waits never waits for a slot: without this, the RELEASEs that free its
    # slots would wait unread while the thread it lent its turn to sends (a drop-policy worker delivered 4
    # frames of 10,000 instead of about 50).
    monkeypatch.setattr(worker_end, "TAKE_BACK_AFTER", 3600.0)
    items: queue.SimpleQueue = queue.SimpleQueue()
    other, receiver = worker_pair(slots=1, on_item=items.put)
    waiting = threading.Event()

    def send_go_once_waited_for() -> None:
        assert waiting.wait(10)
        other.send("go")

    going, _ = run_in_thread(send_go_once_waited_for, "other end")
    try:
        assert receiver.wait_for(noting_the_call(waiting, lambda: not items.empty()))  # "go": the reader thread
        # lends its turn to this thread and sleeps
        assert items.get_nowait() == "go"
        assert receiver.send(np.zeros(FRAME, np.uint8), block=False)  # takes the only slot
        assert not receiver.send(np.zeros(FRAME, np.uint8), block=False)  # its RELEASE is not read yet: dropped
        other.send(WhereUnpickled(1))
        assert receiver.wait_for(lambda: not items.empty())
        # Read by the reader thread: it took its turn back at the drop (else this thread would read it here).
        assert items.get_nowait().thread == READER
    finally:
        going.join(10)
        receiver.close()
        other.close()


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
