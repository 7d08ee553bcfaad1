"""The process channel: items cross between the event loop and a real worker process, in order and bit-exact,
with large arrays through shared memory that the receiver owns a copy of."""
from __future__ import annotations

import asyncio
import collections
import multiprocessing
import os
import signal
import socket
import threading
from typing import Any, List

import numpy as np
import pytest

from rtcbot.base.transport import ChannelClosed, ParentEndpoint, WorkerEndpoint, socket_pair
from rtcbot.errors import NotPicklableError
from tests.helpers import run

START_METHODS = ["fork", "forkserver", "spawn"]
FRAME_VGA = (480, 640, 3)
FRAME_1080 = (1080, 1920, 3)


# ------------------------------------------------------------------------------ worker processes (top level:
# the spawn and forkserver start methods import them by name)


def echo_worker(sock: socket.socket, slots: int = 4) -> None:
    """Send every item back until the parent closes the channel."""
    channel = WorkerEndpoint(sock, slots=slots)
    try:
        while True:
            channel.send(channel.recv())
    except ChannelClosed:
        pass
    finally:
        channel.close()


def frame_worker(sock: socket.socket, count: int, shape: tuple, block: bool, slots: int = 4) -> None:
    """Send ``count`` uint8 frames, frame i filled with i % 256, then ``{"sent": n, "dropped": n}``; exit."""
    channel = WorkerEndpoint(sock, slots=slots)
    try:
        for index in range(count):
            channel.send((index, np.full(shape, index % 256, np.uint8)), block=block)
        channel.send({"sent": channel.sent, "dropped": channel.dropped})
    finally:
        channel.close()


def mixed_worker(sock: socket.socket, small: int, frames: int) -> None:
    """Send ``small`` small dicts, then ``frames`` VGA frames, and exit right away."""
    channel = WorkerEndpoint(sock)
    try:
        for index in range(small):
            channel.send({"index": index})
        for index in range(frames):
            channel.send({"index": small + index, "frame": np.full(FRAME_VGA, index, np.uint8)})
    finally:
        channel.close()


def held_back_worker(sock: socket.socket) -> None:
    """send_soon() messages: "a" rides with the item sent after it, "c" goes at flush(); then wait for EOF."""
    channel = WorkerEndpoint(sock)
    try:
        channel.send_soon("a")
        channel.send(("b", np.ones(FRAME_VGA, np.uint8)))
        channel.send_soon("c")
        channel.flush()
        channel.recv()  # until the parent closes
    except ChannelClosed:
        pass
    finally:
        channel.close()


def keeps_newest_worker(sock: socket.socket, count: int, kept: int) -> None:
    """Receive ``count`` ``(index, frame)`` items keeping the newest ``kept`` frames, then send the indexes."""
    channel = WorkerEndpoint(sock)
    newest: Any = collections.deque(maxlen=kept or 1)
    try:
        indexes = []
        for _ in range(count):
            index, frame = channel.recv()
            assert frame.min() == frame.max() == index % 256
            indexes.append(index)
            if kept:
                newest.append(frame)
            del frame
        channel.send(indexes)
        channel.recv()  # until the parent closes
    except ChannelClosed:
        pass
    finally:
        channel.close()


# --------------------------------------------------------------------------------------------- helpers


class Parent:
    """The parent side of one channel to a worker process, collecting what arrives."""

    def __init__(self, method: str, target, *args: Any, start: bool = True, slots: int = 4) -> None:
        context = multiprocessing.get_context(method)
        parent_end, worker_end = socket_pair()
        self.process = context.Process(target=target, args=(worker_end, *args), daemon=True)
        self.process.start()
        worker_end.close()
        self.items: asyncio.Queue = asyncio.Queue()
        self.received: List[Any] = []
        self.count_at_eof: Any = None
        self.exitcode: Any = None
        self.eof = asyncio.Event()
        self.channel = ParentEndpoint(
            parent_end, asyncio.get_running_loop(), self._on_item, self._on_eof, slots=slots
        )
        if start:
            self.channel.start()

    def _on_item(self, item: Any) -> None:
        self.received.append(item)
        self.items.put_nowait(item)

    def _on_eof(self) -> None:
        self.count_at_eof = len(self.received)
        self.eof.set()

    async def next(self, timeout: float = 10.0) -> Any:
        return await asyncio.wait_for(self.items.get(), timeout)

    async def wait_eof(self, timeout: float = 10.0) -> None:
        await asyncio.wait_for(self.eof.wait(), timeout)

    def close(self) -> None:
        self.channel.close()
        self.process.join(10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)
        self.exitcode = self.process.exitcode
        self.process.close()  # releases the sentinel pipe now rather than at garbage collection


async def received_until_eof(parent: Parent) -> List[Any]:
    """Everything ``parent`` received until its worker ended (the channel is closed after)."""
    try:
        await parent.wait_eof()
    finally:
        parent.close()
    return parent.received


def assert_same(received: Any, sent: Any) -> None:
    """Equal values, and arrays equal bit for bit with the same dtype and shape."""
    assert type(received) is type(sent)
    if isinstance(sent, np.ndarray):
        assert received.dtype == sent.dtype and received.shape == sent.shape
        assert received.tobytes() == sent.tobytes()
    elif isinstance(sent, (tuple, list)):
        assert len(received) == len(sent)
        for r, s in zip(received, sent):
            assert_same(r, s)
    elif isinstance(sent, dict):
        assert received.keys() == sent.keys()
        for key in sent:
            assert_same(received[key], sent[key])
    else:
        assert received == sent


def mixed_items() -> List[Any]:
    rng = np.random.default_rng(3)
    return [
        7,
        "hello",
        None,
        {"command": "move", "speed": 0.5, "tags": ["a", "b"]},
        bytearray(b"\x00\x01" * 40_000),  # 80 kB bytearray: a shared buffer that is not numpy
        (
            np.arange(10, dtype=np.int16),  # tiny: inline
            np.ones(65535, np.uint8),  # one byte under min_shared_bytes: inline
            np.ones(65536, np.uint8),  # exactly min_shared_bytes: shared
            {"vga": rng.integers(0, 256, FRAME_VGA, dtype=np.uint8), "t": 1.5},
        ),
        rng.integers(0, 256, FRAME_1080, dtype=np.uint8),
        rng.standard_normal((1024, 1)).astype(np.float32),  # an audio block
        (rng.standard_normal((1024, 1)).astype(np.float32), rng.integers(0, 256, FRAME_VGA, dtype=np.uint8)),
        np.asfortranarray(rng.standard_normal((300, 400))),  # Fortran order, shared
        rng.standard_normal((400, 300))[::2],  # not contiguous: pickled inline
        "last",
    ]


@pytest.fixture(scope="module", autouse=True)
def warm_start_methods():
    """Start one process per start method first, so that the forkserver and the resource tracker they leave
    running (with their file descriptors) exist before any leak check."""
    for method in START_METHODS:
        process = multiprocessing.get_context(method).Process(target=len, args=((),))
        process.start()
        process.join(30)


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def rtcbot_shm_entries() -> List[str]:
    return sorted(name for name in os.listdir("/dev/shm") if "rtcbot" in name or name.startswith("psm_"))


# ----------------------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("method", START_METHODS)
def test_items_round_trip_bit_exact_and_in_order(method, no_leaks):
    async def main():
        parent = Parent(method, echo_worker)
        try:
            sent = mixed_items()
            for item in sent:
                await parent.channel.send(item)
            for item in sent:
                assert_same(await parent.next(), item)
        finally:
            parent.close()
        assert parent.exitcode == 0

    run(main(), timeout=40)


def test_many_frames_round_trip_through_few_slots_in_order(no_leaks):
    async def main():
        parent = Parent("forkserver", echo_worker, 2, slots=2)
        try:
            for index in range(40):
                await parent.channel.send((index, np.full(FRAME_VGA, index, np.uint8)))
            for index in range(40):
                number, frame = await parent.next()
                assert number == index and frame.min() == frame.max() == index
        finally:
            parent.close()

    run(main())


def test_a_kept_array_is_not_overwritten_by_later_items(no_leaks):
    async def main():
        parent = Parent("forkserver", frame_worker, 24, FRAME_VGA, True)
        try:
            kept = [await parent.next() for _ in range(24)]  # 6 times more frames than slots
            await parent.wait_eof()
        finally:
            parent.close()
        for index, (number, frame) in enumerate(kept):
            assert number == index
            assert frame.min() == frame.max() == index
            assert frame.flags.writeable  # backed by a bytearray the receiver owns
            frame[0, 0, 0] = 255  # the receiver may write into what it got

    run(main())


def test_nonblocking_send_drops_and_counts_when_the_parent_does_not_read(no_leaks):
    async def main():
        parent = Parent("forkserver", frame_worker, 50, FRAME_VGA, False, start=False)
        try:
            parent.process.join(20)  # the worker finishes without the parent reading a byte
            assert parent.process.exitcode == 0
            parent.channel.start()
            await parent.wait_eof()
        finally:
            parent.close()
        *frames, report = parent.received
        assert report == {"sent": 4, "dropped": 46}  # as many frames as slots, counted before the report
        assert [number for number, _ in frames] == [0, 1, 2, 3]

    run(main())


def test_blocking_send_waits_for_the_parent_and_loses_nothing(no_leaks):
    async def main():
        parent = Parent("forkserver", frame_worker, 30, FRAME_VGA, True, start=False)
        try:
            parent.process.join(1.0)  # bounded check that the worker cannot finish while nobody reads
            assert parent.process.is_alive(), "the worker sent 30 frames through 4 slots nobody released"
            parent.channel.start()
            await parent.wait_eof()
        finally:
            parent.close()
        *frames, report = parent.received
        assert report == {"sent": 30, "dropped": 0}
        assert [number for number, _ in frames] == list(range(30))

    run(main())


def test_every_item_sent_before_the_worker_exits_arrives_before_eof(no_leaks):
    async def main():
        parent = Parent("forkserver", mixed_worker, 300, 12)
        try:
            await parent.wait_eof()
        finally:
            parent.close()
        assert parent.count_at_eof == 312
        assert [item["index"] for item in parent.received] == list(range(312))

    run(main())


def test_sigkill_of_the_worker_fires_eof_promptly(no_leaks):
    async def main():
        parent = Parent("forkserver", echo_worker)
        try:
            await parent.channel.send(np.zeros(FRAME_VGA, np.uint8))
            await parent.next()  # the worker is up and holds a mapping of the parent's pool
            os.kill(parent.process.pid, signal.SIGKILL)
            await parent.wait_eof(timeout=2.0)
            with pytest.raises(ChannelClosed):
                await parent.channel.send({"after": "death"})
        finally:
            parent.close()
        assert parent.exitcode == -signal.SIGKILL

    run(main())


def test_worker_sees_channel_closed_when_the_parent_closes(no_leaks):
    async def main():
        parent = Parent("fork", echo_worker)
        try:
            await parent.channel.send("ping")
            assert await parent.next() == "ping"
            parent.channel.close()  # the echo loop ends with ChannelClosed and the worker exits
            await asyncio.get_running_loop().run_in_executor(None, parent.process.join, 10)
        finally:
            parent.close()
        assert parent.exitcode == 0

    run(main())


def test_close_wakes_a_blocked_recv(no_leaks):
    parent_end, worker_end = socket_pair()
    channel = WorkerEndpoint(worker_end)
    outcome: List[BaseException] = []

    def receive() -> None:
        try:
            channel.recv()
        except ChannelClosed as e:
            outcome.append(e)

    thread = threading.Thread(target=receive)
    thread.start()
    channel.close()
    thread.join(5)
    parent_end.close()
    assert not thread.is_alive() and len(outcome) == 1


def test_close_wakes_a_send_blocked_on_a_full_slot_pool(no_leaks):
    parent_end, worker_end = socket_pair()
    channel = WorkerEndpoint(worker_end, slots=1)
    frame = np.zeros(FRAME_VGA, np.uint8)
    assert channel.send(frame)  # takes the only slot; nobody reads the parent end
    outcome: List[BaseException] = []

    def send() -> None:
        try:
            channel.send(frame)
        except ChannelClosed as e:
            outcome.append(e)

    thread = threading.Thread(target=send)
    thread.start()
    channel.close()
    thread.join(5)
    parent_end.close()
    assert not thread.is_alive() and len(outcome) == 1
    with pytest.raises(ChannelClosed):
        channel.send("after close")


def test_worker_recv_raises_channel_closed_after_the_parent_end_closes(no_leaks):
    parent_end, worker_end = socket_pair()
    channel = WorkerEndpoint(worker_end)
    parent_end.close()
    try:
        with pytest.raises(ChannelClosed):
            channel.recv()
        with pytest.raises(ChannelClosed):
            channel.send(np.zeros(FRAME_VGA, np.uint8))
    finally:
        channel.close()


def test_a_larger_item_replaces_the_pool_and_both_sides_unmap_the_old_one(no_leaks):
    async def main():
        parent = Parent("forkserver", echo_worker)
        try:
            sizes = [(100, 100, 3), FRAME_VGA, (100, 100, 3), FRAME_1080, FRAME_VGA]
            for index, shape in enumerate(sizes):
                await parent.channel.send(np.full(shape, index, np.uint8))
            for index, shape in enumerate(sizes):
                frame = await parent.next()
                assert frame.shape == shape and frame.min() == frame.max() == index
            # Received arrays may be lent slots of the worker's pools: a replaced pool goes once they died.
            del frame
            parent.received.clear()
            # One more round trip: the pool drops queued before it have been handled on both sides.
            await parent.channel.send("sync")
            assert await parent.next() == "sync"
            # Each side now maps its own current pool and the other side's current pool, nothing older.
            assert _shared_mappings(parent.process.pid) == 2
            assert _shared_mappings(os.getpid()) == 2
        finally:
            parent.close()

    run(main())


def test_no_fd_leaks_and_nothing_named_in_dev_shm(no_leaks):
    async def round_trip():
        parent = Parent("forkserver", echo_worker)
        try:
            for shape in (FRAME_VGA, FRAME_1080):
                await parent.channel.send(np.zeros(shape, np.uint8))
                await parent.next()
        finally:
            parent.close()

    shm_before = rtcbot_shm_entries()
    run(round_trip())  # first run: asyncio and multiprocessing set up what they keep for the process
    fds_before = fd_count()
    run(round_trip())
    assert fd_count() == fds_before
    assert rtcbot_shm_entries() == shm_before


def test_dev_shm_fallback_unlinks_its_file_at_once(monkeypatch, no_leaks):
    monkeypatch.delattr(os, "memfd_create")

    async def main():
        parent_end, worker_end = socket_pair()
        received: asyncio.Queue = asyncio.Queue()
        parent = ParentEndpoint(parent_end, asyncio.get_running_loop(), received.put_nowait, lambda: None)
        worker = WorkerEndpoint(worker_end)
        parent.start()
        try:
            frame = np.arange(FRAME_VGA[0] * FRAME_VGA[1] * 3, dtype=np.uint32).astype(np.uint8)
            await asyncio.get_running_loop().run_in_executor(None, worker.send, frame)
            assert_same(await asyncio.wait_for(received.get(), 5), frame)
            assert rtcbot_shm_entries() == shm_before
        finally:
            parent.close()
            worker.close()

    shm_before = rtcbot_shm_entries()
    run(main())


def test_unpicklable_item_raises_not_picklable_error(no_leaks):
    parent_end, worker_end = socket_pair()
    channel = WorkerEndpoint(worker_end)
    try:
        with pytest.raises(NotPicklableError, match="lambda|function"):
            channel.send(lambda: None)
    finally:
        channel.close()
        parent_end.close()


def test_send_nowait_messages_arrive_in_order_with_shared_items(no_leaks):
    async def main():
        parent = Parent("forkserver", echo_worker)
        try:
            parent.channel.send_nowait("first")
            await parent.channel.send(np.ones(FRAME_VGA, np.uint8))
            parent.channel.send_nowait({"second": np.arange(100_000)})  # large, but inline
            assert await parent.next() == "first"
            assert (await parent.next()).shape == FRAME_VGA
            assert_same(await parent.next(), {"second": np.arange(100_000)})
        finally:
            parent.close()

    run(main())


def _shared_mappings(pid: int) -> int:
    """How many shared-memory pools (memfd or deleted /dev/shm files) process ``pid`` has mapped."""
    names = set()
    with open(f"/proc/{pid}/maps") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            if len(fields) == 6 and ("memfd:rtcbot-transport" in fields[5] or "/dev/shm/rtcbot" in fields[5]):
                names.add(fields[4])  # inode
    return len(names)


def test_a_held_back_message_rides_with_the_next_item_in_order_or_goes_at_flush(no_leaks):
    async def main():
        parent = Parent("forkserver", held_back_worker)
        try:
            first, second, third = [await parent.next() for _ in range(3)]
        finally:
            parent.close()
        assert first == "a" and second[0] == "b" and second[1].shape == FRAME_VGA and third == "c"

    run(main())


def test_a_burst_of_frames_waits_for_a_loop_turn_rather_than_being_copied_out_of_its_slots(monkeypatch, no_leaks):
    # A consumer whose arrays die on the next loop turn (a callback subscription) gets a burst of frames all
    # lent, in order: the parent lets the loop run before it would copy one out of its slot.
    from rtcbot.base.transport import shared_memory

    copies = []
    real_copy = shared_memory._owned_copy
    monkeypatch.setattr(shared_memory, "_owned_copy", lambda *a: copies.append(1) or real_copy(*a))

    class NextTurnParent(Parent):
        def _on_item(self, item: Any) -> None:
            asyncio.get_running_loop().call_soon(self._take_next_turn, item)

        def _take_next_turn(self, item: Any) -> None:
            if isinstance(item, tuple):
                index, frame = item
                item = (index, int(frame.min()), int(frame.max()))  # the frame itself dies here
            super()._on_item(item)

    async def main():
        return await received_until_eof(NextTurnParent("forkserver", frame_worker, 200, FRAME_VGA, True))

    received = run(main())
    assert received[:-1] == [(index, index % 256, index % 256) for index in range(200)]
    assert received[-1] == {"sent": 200, "dropped": 0}
    assert not copies


@pytest.mark.parametrize("kept", [0, 1, 2, 3])
def test_a_consumer_keeping_its_last_frames_never_leaves_the_worker_without_a_slot(kept, no_leaks):
    # Returned slots go back two at a time, or at once when the worker may be short of them: a consumer that
    # keeps its newest `kept` frames (each returns its slot only when a newer one pushes it out) must still
    # get all of them (a slot held back for good would stall the worker, and the test would time out).
    class KeepsNewest(Parent):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.newest: Any = collections.deque(maxlen=kept or 1)
            super().__init__(*args, **kwargs)

        def _on_item(self, item: Any) -> None:
            if isinstance(item, tuple):
                index, frame = item
                assert frame.min() == frame.max() == index % 256
                if kept:
                    self.newest.append(frame)
                item = index
            super()._on_item(item)

    async def main():
        return await received_until_eof(KeepsNewest("forkserver", frame_worker, 100, FRAME_VGA, True))

    received = run(main())
    assert received == [*range(100), {"sent": 100, "dropped": 0}]


@pytest.mark.parametrize("kept", [0, 1, 2, 3])
def test_a_worker_keeping_its_last_frames_never_leaves_the_parent_without_a_slot(kept, no_leaks):
    # The same, the other way: the worker returns the parent's slots two at a time or when the parent may be
    # short of them; the parent's send() waits for a slot, so one held back for good would time the test out.
    async def main():
        parent = Parent("forkserver", keeps_newest_worker, 100, kept)
        try:
            for index in range(100):
                await asyncio.wait_for(parent.channel.send((index, np.full(FRAME_VGA, index % 256, np.uint8))), 10)
            return await parent.next()
        finally:
            parent.close()

    assert run(main()) == list(range(100))


def test_a_message_queued_without_flushing_rides_with_the_next_item_in_order(no_leaks):
    async def main():
        parent = Parent("forkserver", echo_worker)
        try:
            for index in range(3):
                parent.channel.send_nowait(("note", index), flush=False)
                await parent.channel.send((index, np.full(FRAME_VGA, index, np.uint8)))
            return [(await parent.next())[:2] for _ in range(6)]
        finally:
            parent.close()

    got = run(main())
    assert [item[0] for item in got] == ["note", 0, "note", 1, "note", 2]
    assert [int(item[1][0, 0, 0]) for item in got[1::2]] == [0, 1, 2]


def test_an_item_sent_without_flushing_goes_with_the_next_or_on_the_loops_next_turn(no_leaks):
    # send(flush=False) saves a write when the next item follows at once; one that nothing follows still goes,
    # on the loop's next turn (here: while the test awaits the echo), and every item keeps its order.
    async def main():
        parent = Parent("forkserver", echo_worker)
        try:
            await parent.channel.send((0, np.full(FRAME_VGA, 0, np.uint8)), flush=False)
            await parent.channel.send((1, np.full(FRAME_VGA, 1, np.uint8)))  # writes both
            await parent.channel.send((2, np.full(FRAME_VGA, 2, np.uint8)), flush=False)  # nothing follows
            return [await parent.next() for _ in range(3)]
        finally:
            parent.close()

    got = run(main())
    assert [index for index, _ in got] == [0, 1, 2]
    assert [int(frame[0, 0, 0]) for _, frame in got] == [0, 1, 2]


def test_items_sent_without_flushing_until_the_slots_run_out_still_reach_the_worker(no_leaks):
    # A sender that always says "more follows" and then waits for a slot: its held-back items go out while it
    # waits (on the loop's next turn), so the worker returns the slots and nothing waits for good.
    async def main():
        parent = Parent("forkserver", echo_worker)
        try:
            for index in range(20):
                frame = np.full(FRAME_VGA, index, np.uint8)
                await asyncio.wait_for(parent.channel.send((index, frame), flush=False), 10)
            return [(await parent.next())[0] for _ in range(20)]
        finally:
            parent.close()

    assert run(main()) == list(range(20))
