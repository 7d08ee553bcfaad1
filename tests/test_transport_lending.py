"""Lent slots: a received array is a view of the sender's shared-memory slot, which the sender never writes
while the array lives, and gets back when it dies (in any thread), even after close.

Both ends run in this process here (the worker end only needs threads), so each test can look at both."""

from __future__ import annotations

import asyncio
import gc
import socket
import threading
from typing import Any, List, Tuple

import numpy as np

from rtcbot.base.transport import ParentEndpoint, WorkerEndpoint, socket_pair
from rtcbot.base.transport.shared_memory import _SendPools
from tests.helpers import run

FRAME = (120, 160, 3)  # 57,600 bytes
MIN_SHARED = 4096


def frame(value: int) -> np.ndarray:
    return np.full(FRAME, value % 256, np.uint8)


def worker_pair(slots: int = 4) -> Tuple[WorkerEndpoint, WorkerEndpoint]:
    """``(sender, receiver)``: two worker ends of one socket pair."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    return (
        WorkerEndpoint(a, slots=slots, min_shared_bytes=MIN_SHARED),
        WorkerEndpoint(b, slots=slots, min_shared_bytes=MIN_SHARED),
    )


def wait_all_slots_back(sender: WorkerEndpoint, timeout: float = 5.0) -> bool:
    """Wait (on the sender's own condition) until every slot of its current pool is free again."""
    pools = sender._send_pools
    with sender._slot_freed:
        return sender._slot_freed.wait_for(
            lambda: pools._current is not None and len(pools._current.free) == pools._current.slots, timeout
        )


def test_a_lent_slot_is_not_written_while_its_array_lives(no_leaks):
    sender, receiver = worker_pair(slots=4)
    try:
        sender.send(frame(7))
        kept = receiver.recv()
        assert kept.flags.writeable and receiver._receive_pools.lent == 1  # a view of the slot, no copy
        for i in range(50):  # many more frames through the same four slots
            sender.send(frame(i))
            assert receiver.recv().min() == i % 256
        assert kept.min() == kept.max() == 7
        kept[0, 0, 0] = 99  # the receiver owns it: writing it is fine and changes nothing else
        sender.send(frame(1))
        assert receiver.recv().max() == 1
        del kept
        assert wait_all_slots_back(sender)
    finally:
        sender.close()
        receiver.close()


def test_a_lent_slot_goes_back_when_the_last_array_made_from_it_dies(no_leaks):
    sender, receiver = worker_pair(slots=2)
    try:
        sender.send({"image": frame(3), "t": 1.0})
        item = receiver.recv()
        view = item["image"][10:20]  # a view of the lent array keeps the slot too
        del item
        assert receiver._receive_pools.lent == 1
        del view
        assert receiver._receive_pools.lent == 0
        assert wait_all_slots_back(sender)
    finally:
        sender.close()
        receiver.close()


def test_a_lent_slot_goes_back_when_its_array_dies_in_another_thread(no_leaks):
    sender, receiver = worker_pair(slots=2)
    try:
        sender.send(frame(5))
        arrays: List[Any] = [receiver.recv()]

        def drop() -> None:
            assert arrays[0].max() == 5
            arrays.clear()

        thread = threading.Thread(target=drop)
        thread.start()
        thread.join(5)
        assert wait_all_slots_back(sender)
    finally:
        sender.close()
        receiver.close()


def test_the_parent_end_returns_slots_whether_arrays_die_on_the_loop_or_in_another_thread(no_leaks):
    async def main() -> None:
        parent_sock, worker_sock = socket_pair()
        worker = WorkerEndpoint(worker_sock, slots=2, min_shared_bytes=MIN_SHARED)
        items: asyncio.Queue = asyncio.Queue()
        parent = ParentEndpoint(
            parent_sock, asyncio.get_running_loop(), items.put_nowait, lambda: None, min_shared_bytes=MIN_SHARED
        )
        parent.start()
        loop = asyncio.get_running_loop()
        try:
            for i in range(20):  # dies on the loop
                worker.send(frame(i))
                assert (await asyncio.wait_for(items.get(), 5)).min() == i
            await loop.run_in_executor(None, wait_all_slots_back, worker)
            worker.send(frame(1))
            held = [await asyncio.wait_for(items.get(), 5)]
            await loop.run_in_executor(None, held.clear)  # dies in an executor thread
            assert await loop.run_in_executor(None, wait_all_slots_back, worker)
        finally:
            parent.close()
            await loop.run_in_executor(None, worker.close)

    run(main())


def test_a_receiver_that_keeps_every_array_does_not_stall_the_sender(no_leaks):
    sender, receiver = worker_pair(slots=4)
    try:
        count = 60
        thread = threading.Thread(target=lambda: [sender.send(frame(i)) for i in range(count)])  # block=True
        thread.start()
        kept = [receiver.recv() for _ in range(count)]  # keeps every one
        thread.join(10)
        assert not thread.is_alive()
        assert [a.min() for a in kept] == [i % 256 for i in range(count)]
        assert all(a.min() == a.max() for a in kept)
        assert receiver._receive_pools.lent == 3  # three of the four slots lent; the rest were copied out
        assert sender.dropped == 0
        kept.clear()
        assert wait_all_slots_back(sender)
    finally:
        sender.close()
        receiver.close()


def test_closing_with_lent_arrays_alive_keeps_them_readable_and_frees_the_mapping_when_they_die(no_leaks):
    sender, receiver = worker_pair(slots=4)
    sender.send(frame(9))
    kept = receiver.recv()
    receiver.close()
    sender.close()
    assert kept.min() == kept.max() == 9  # still mapped: nothing crashes
    kept[:] = 1
    del kept  # the mapping (and the fd it holds) goes now; no_leaks checks the fds
    gc.collect()


def test_small_items_get_up_to_twice_the_slots_while_a_pool_of_them_fits_in_pool_bytes():
    for size, pool_bytes, expected in [
        (640 * 480 * 3, 8 << 20, 8),  # eight 640x480 frames fit in 8 MB
        (1280 * 720 * 3, 8 << 20, 4),  # 720p and up keep the four they ask for
        (1920 * 1080 * 3, 8 << 20, 4),
        (320 * 240 * 3, 8 << 20, 8),  # never more than twice
        (640 * 480 * 3, 0, 4),  # no pool_bytes: exactly the slots asked for
    ]:
        pools = _SendPools(4, pool_bytes)
        try:
            taken = pools.acquire(size)
            assert taken is not None and taken[0].slots == expected, (size, pool_bytes)
        finally:
            pools.close()
