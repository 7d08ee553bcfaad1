"""LoopWake (an eventfd the loop watches) and the LoopHandoff that wakes the loop through it."""
import asyncio
import gc
import os
import threading

import pytest

from rtcbot.base import ThreadedSubscriptionProducer, loop_wake
from rtcbot.base.loop_wake import LoopWake
from rtcbot.base.worker import LoopHandoff
from tests.helpers import run

needs_eventfd = pytest.mark.skipif(not hasattr(os, "eventfd"), reason="os.eventfd: Linux, Python 3.10+")
WAIT = 5.0


def open_eventfds() -> int:
    """How many eventfds this process has open."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:[eventfd]":
                count += 1
        except OSError:
            pass  # the listing's own descriptor, closed since
    return count


def write_from_threads(handoff: LoopHandoff, writers: int, items: int) -> None:
    """``writers`` threads each put ``(writer, 0..items-1)``, then a call that marks the writer done."""

    def write(writer: int) -> None:
        for i in range(items):
            handoff.put((writer, i))

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)


@pytest.mark.parametrize("use_eventfd", [True, False], ids=["eventfd", "call_soon_threadsafe"])
@pytest.mark.parametrize("batching", [False, True], ids=["each", "batching"])
def test_items_from_several_threads_all_arrive_each_threads_in_order(use_eventfd, batching):
    async def main():
        seen = []
        handoff = LoopHandoff(asyncio.get_running_loop(), seen.append, limit=8)
        handoff._wake.start(use_eventfd=use_eventfd)
        assert handoff._wake.uses_eventfd == (use_eventfd and hasattr(os, "eventfd"))
        handoff.batching = batching
        done = asyncio.Event()
        # The writers block on the small limit, so the loop must keep draining while they run.
        writing = asyncio.get_running_loop().run_in_executor(None, write_from_threads, handoff, 4, 2000)
        await asyncio.wait_for(writing, WAIT)
        handoff.call(done.set)
        await asyncio.wait_for(done.wait(), WAIT)
        handoff.close()
        return seen

    seen = run(main())
    assert len(seen) == 4 * 2000 and sorted(seen) == [(w, i) for w in range(4) for i in range(2000)]
    for writer in range(4):
        assert [i for w, i in seen if w == writer] == list(range(2000))


@needs_eventfd
def test_a_started_wake_has_an_eventfd_that_close_releases():
    async def main():
        before = open_eventfds()
        ran = asyncio.Event()
        wake = LoopWake(asyncio.get_running_loop(), ran.set)
        assert not wake.uses_eventfd and open_eventfds() == before  # nothing opened until start()
        wake.start()
        assert wake.uses_eventfd and open_eventfds() == before + 1
        threading.Thread(target=wake.wake).start()
        await asyncio.wait_for(ran.wait(), WAIT)
        wake.close()
        wake.close()  # idempotent
        assert not wake.uses_eventfd and open_eventfds() == before
        wake.start()  # closed for good: no new descriptor
        assert open_eventfds() == before

    run(main())


def test_a_wake_after_close_still_runs_the_callback():
    """After close() (a device closing while its worker still puts) wakes go through call_soon_threadsafe:
    harmless, and nothing is lost."""

    async def main():
        calls = []
        ran = asyncio.Event()
        wake = LoopWake(asyncio.get_running_loop(), lambda: (calls.append(1), ran.set()))
        wake.start()
        wake.close()
        thread = threading.Thread(target=wake.wake)
        thread.start()
        thread.join(WAIT)
        await asyncio.wait_for(ran.wait(), WAIT)
        return calls

    assert run(main()) == [1]


@needs_eventfd
def test_a_wake_written_before_close_but_not_yet_read_still_runs_the_callback():
    async def main():
        ran = asyncio.Event()
        wake = LoopWake(asyncio.get_running_loop(), ran.set)
        wake.start()
        wake.wake()  # written to the eventfd; the loop has not looked yet
        wake.close()
        await asyncio.wait_for(ran.wait(), WAIT)

    run(main())


@needs_eventfd
def test_close_from_another_thread_releases_the_eventfd_on_the_loop():
    async def main():
        before = open_eventfds()
        ran = asyncio.Event()
        wake = LoopWake(asyncio.get_running_loop(), ran.set)
        wake.start()
        wake.wake()
        closer = threading.Thread(target=wake.close)
        closer.start()
        closer.join(WAIT)
        await asyncio.wait_for(ran.wait(), WAIT)  # the pending wake was not lost on the way
        for _ in range(10):  # the release is a callback the loop runs next
            if open_eventfds() == before:
                break
            await asyncio.sleep(0)
        assert open_eventfds() == before

    run(main())


@needs_eventfd
def test_writers_racing_close_never_write_to_a_closed_descriptor():
    """Threads waking as fast as they can while the loop closes the wake: no EBADF, no exception, and every
    wake after close goes through call_soon_threadsafe."""

    async def main():
        loop = asyncio.get_running_loop()
        errors = []
        stop = threading.Event()
        wake = LoopWake(loop, lambda: None)
        wake.start()

        def hammer() -> None:
            try:
                while not stop.is_set():
                    wake.wake()
            except BaseException as e:  # noqa: BLE001 - the test reports whatever it was
                errors.append(e)

        threads = [threading.Thread(target=hammer) for _ in range(3)]
        for thread in threads:
            thread.start()
        await asyncio.sleep(0.02)  # let them run; the close below races them
        wake.close()
        # Another descriptor may now take the eventfd's number: no writer may touch it.
        r, w = os.pipe()
        await asyncio.sleep(0.02)
        stop.set()
        for thread in threads:
            thread.join(WAIT)
        try:
            os.set_blocking(r, False)
            with pytest.raises(BlockingIOError):
                os.read(r, 8)  # nothing was written into the pipe that may have reused the number
        finally:
            os.close(r)
            os.close(w)
        return errors

    assert run(main()) == []


def test_a_wake_on_a_closed_loop_raises_runtime_error_like_call_soon_threadsafe():
    loop = asyncio.new_event_loop()
    wake = LoopWake(loop, lambda: None)
    wake.start()
    loop.close()
    with pytest.raises(RuntimeError):
        wake.wake()
    wake.close()  # after the loop closed: never raises


def test_a_handoff_whose_loop_closed_drops_items_without_raising():
    loop = asyncio.new_event_loop()
    seen = []
    handoff = LoopHandoff(loop, seen.append)
    handoff.start()
    loop.close()
    handoff.put("late")  # nobody will read it: dropped, and the writer is not blocked
    handoff.close()
    assert seen == []


@needs_eventfd
def test_a_wake_dropped_after_its_loop_closed_releases_its_eventfd():
    """A LoopWake nobody closed (its owner vanished): once its loop is closed and it is collected, the
    descriptor goes too."""
    before = open_eventfds()
    loop = asyncio.new_event_loop()
    wake = LoopWake(loop, lambda: None)
    wake.start()
    assert open_eventfds() == before + 1
    loop.close()
    del wake
    gc.collect()
    assert open_eventfds() == before


async def wakes_without_eventfd() -> None:
    """A wake from another thread runs its callback through call_soon_threadsafe (no eventfd opened)."""
    ran = asyncio.Event()
    wake = LoopWake(asyncio.get_running_loop(), ran.set)
    wake.start()
    assert not wake.uses_eventfd
    threading.Thread(target=wake.wake).start()
    await asyncio.wait_for(ran.wait(), WAIT)
    wake.close()


def test_without_eventfd_the_wake_falls_back_to_call_soon_threadsafe(monkeypatch):
    monkeypatch.setattr(loop_wake, "_HAVE_EVENTFD", False)

    async def main():
        await wakes_without_eventfd()

    run(main())


def test_a_loop_without_add_reader_falls_back_to_call_soon_threadsafe():
    class NoReaders(asyncio.SelectorEventLoop):  # as Windows' proactor loop
        def add_reader(self, *args):
            raise NotImplementedError

    async def main():
        await wakes_without_eventfd()

    before = open_eventfds()
    loop = NoReaders()
    try:
        loop.run_until_complete(asyncio.wait_for(main(), 20))
    finally:
        loop.close()
    assert open_eventfds() == before


@needs_eventfd
def test_a_wake_made_off_the_loops_thread_while_it_runs_stays_on_call_soon_threadsafe():
    """add_reader is not thread-safe: from another thread, with the loop running, start() opens nothing."""

    async def main():
        loop = asyncio.get_running_loop()
        ran = asyncio.Event()
        wake = LoopWake(loop, ran.set)
        await loop.run_in_executor(None, wake.start)
        assert not wake.uses_eventfd
        await loop.run_in_executor(None, wake.wake)
        await asyncio.wait_for(ran.wait(), WAIT)
        wake.close()

    run(main())


@needs_eventfd
def test_a_threaded_producer_wakes_through_an_eventfd_that_its_close_releases(no_leaks):
    class Ticker(ThreadedSubscriptionProducer):
        def _producer(self):
            self._setReady(True)
            for i in range(100):
                self._put_nowait(i)
            self._wait_closed()

    async def main():
        before = open_eventfds()
        ticker = Ticker()
        q = ticker.subscribe(asyncio.Queue())
        assert ticker._handoff._wake.uses_eventfd and open_eventfds() == before + 1
        got = [await asyncio.wait_for(q.get(), WAIT) for _ in range(100)]
        await ticker.close_async()
        assert open_eventfds() == before
        return got

    assert run(main()) == list(range(100))


def test_a_batching_handoff_delivers_what_a_stalled_writer_holds_within_the_check_period():
    """A writer that holds an item (it came close behind the one before) and then stalls: the loop's
    periodic check delivers it, without any further put or call."""

    async def main():
        seen = []
        second = asyncio.Event()
        handoff = LoopHandoff(asyncio.get_running_loop(), lambda item: (seen.append(item), second.set()), limit=4)
        handoff.start()
        handoff.batching = True
        handoff.batch_gap = 10.0  # the second put is surely "close behind" the first
        first = asyncio.Event()
        handoff.put(1)  # far from any previous put: wakes the loop at once, which arms the check
        handoff.call(first.set)
        await asyncio.wait_for(first.wait(), WAIT)
        second.clear()
        writer = threading.Thread(target=handoff.put, args=(2,))  # held, then the writer stalls (ends)
        writer.start()
        writer.join(WAIT)
        await asyncio.wait_for(second.wait(), WAIT)
        handoff.close()
        return seen

    assert run(main()) == [1, 2]
