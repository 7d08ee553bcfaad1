"""The process flavour: workers in child processes under fork, forkserver and spawn, and their failure paths."""
import asyncio
import logging
import multiprocessing
import os
import signal
import threading

import numpy as np
import pytest

from rtcbot.base import (
    ProcessSubscriptionConsumer,
    ProcessSubscriptionProducer,
    ProcessSubscriptionProducerConsumer,
    SubscriptionClosed,
)
from rtcbot.errors import NotPicklableError, WorkerDiedError
from tests.helpers import next_item, run

START_METHODS = ["fork", "forkserver", "spawn"]


# Worker classes live at module level so that spawn and forkserver can import them in the child.


class Squarer(ProcessSubscriptionProducerConsumer):
    def _producerConsumer(self):
        self._setReady(True)
        while True:
            x = self._get()
            self._put_nowait(x * x)


class FrameSource(ProcessSubscriptionProducer):
    def __init__(self, count, shape, **kwargs):
        self.count = count
        self.shape = shape
        super().__init__(**kwargs)

    def _producer(self):
        self._setReady(True)
        for i in range(self.count):
            self._put_nowait(np.full(self.shape, i % 251, np.uint8))
        self._wait_closed()


class FillsItsSlots(ProcessSubscriptionProducer):
    """Puts ``count`` frames and sets ``filled``, then puts one more and sets ``overflowed``."""

    def __init__(self, count, shape, filled, overflowed, **kwargs):
        self.count, self.shape, self.filled, self.overflowed = count, shape, filled, overflowed
        super().__init__(**kwargs)

    def _producer(self):
        for i in range(self.count + 1):
            if i == self.count:
                self.filled.set()
            self._put_nowait(np.full(self.shape, i, np.uint8))
        self.overflowed.set()
        self._wait_closed()


class Echo(ProcessSubscriptionProducerConsumer):
    """Sends back what it gets, tagged with a setting chosen after super().__init__()."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.tag = "late attribute"

    def _producerConsumer(self):
        self._setReady(True)
        while True:
            self._put_nowait((self.tag, self._get()))


class ReturnsIndexes(ProcessSubscriptionProducerConsumer):
    """Takes ``(index, frame)`` items and sends back the index and whether the frame was intact, spending
    ``work`` seconds on each (a vision step); ``_feed_window`` items may wait for it."""

    def __init__(self, work=0.0, window=256, **kwargs):
        self.work = work
        self._feed_window = window
        super().__init__(**kwargs)

    def _producerConsumer(self):
        self._setReady(True)
        while True:
            index, frame = self._get()
            if self.work:
                threading.Event().wait(self.work)  # the work itself, not synchronisation
            self._put_nowait((index, frame is None or bool((frame == index % 251).all())))


class CollectsIndexes(ProcessSubscriptionProducerConsumer):
    """Takes ``count`` ``(index, payload)`` items, writing nothing back meanwhile, then sends their indexes."""

    def __init__(self, count, window, **kwargs):
        self.count = count
        self._feed_window = window
        super().__init__(**kwargs)

    def _producerConsumer(self):
        self._setReady(True)
        self._put_nowait([self._get()[0] for _ in range(self.count)])
        self._wait_closed()


class Crashes(ProcessSubscriptionProducer):
    def _producer(self):
        self._put_nowait("made before the crash")
        raise ValueError("motor driver on fire")


class Finishes(ProcessSubscriptionProducer):
    def _producer(self):
        for i in range(3):
            self._put_nowait(i)


class Stuck(ProcessSubscriptionConsumer):
    def _consumer(self):
        self._setReady(True)
        threading.Event().wait(30)  # a blocking device call that never checks for close


class ClosedInGet(ProcessSubscriptionProducerConsumer):
    def _producerConsumer(self):
        self._setReady(True)
        try:
            self._get()
        except SubscriptionClosed:
            self._put_nowait("worker saw SubscriptionClosed")
            raise


class Pid(ProcessSubscriptionProducer):
    def _producer(self):
        self._put_nowait(os.getpid())
        self._setReady(True)
        self._wait_closed()


class IgnoresSigterm(ProcessSubscriptionProducer):
    """A worker stuck in a call that also ignores SIGTERM: only SIGKILL ends it."""

    def _producer(self):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        self._put_nowait(os.getpid())
        self._setReady(True)
        threading.Event().wait(60)


def _refuse_to_unpickle(why):
    raise ValueError(why)


class FailsToUnpickle:
    """Pickles fine in the worker; unpickling it (in the parent) raises."""

    def __reduce__(self):
        return _refuse_to_unpickle, ("this item cannot be rebuilt (on purpose)",)


class SendsABadItemBetweenGoodOnes(ProcessSubscriptionProducer):
    def _producer(self):
        self._setReady(True)
        self._put_nowait("before")
        self._put_nowait(FailsToUnpickle())
        self._put_nowait("after")
        self._wait_closed()


class HoldsALock(ProcessSubscriptionProducer):
    def __init__(self):
        self.lock = threading.Lock()
        super().__init__()


@pytest.mark.parametrize("method", START_METHODS)
def test_items_cross_both_ways_under_every_start_method(method, no_leaks):
    async def main():
        with Squarer(start_method=method) as sq:
            out = sq.subscribe()
            await asyncio.wait_for(sq.onReady(), 10)
            for x in range(5):
                sq.put_nowait(x)
            assert [await next_item(out) for _ in range(5)] == [0, 1, 4, 9, 16]
        assert sq.closed

    run(main())


@pytest.mark.parametrize("method", START_METHODS)
def test_frames_arrive_complete_and_in_order(method, no_leaks):
    async def main():
        with FrameSource(30, (480, 640, 3), start_method=method) as src:
            frames = src.subscribe()
            got = [await next_item(frames) for _ in range(30)]
        assert all(f.shape == (480, 640, 3) and f.dtype == np.uint8 for f in got)
        assert [int(f[0, 0, 0]) for f in got] == list(range(30))
        assert all((f == f[0, 0, 0]).all() for f in got)  # a kept frame is never overwritten

    run(main())


@pytest.mark.parametrize("shape, slots", [((480, 640, 3), 8), ((720, 1280, 3), 4)])
def test_a_producer_worker_has_eight_slots_for_640x480_frames_and_four_for_larger(shape, slots, no_leaks):
    # With four slots for 640x480 frames, the worker waited for one while the parent slept, once per frame or
    # two; a pool of eight still fits in _handoff_pool_bytes (8 MB), one of 1280x720 frames does not.
    async def main():
        context = multiprocessing.get_context("forkserver")
        filled, overflowed = context.Event(), context.Event()
        with FillsItsSlots(slots, shape, filled, overflowed) as source:
            frames = source.subscribe()
            # The loop is held here on purpose: the parent reads nothing, so no slot comes back.
            assert filled.wait(10)
            assert not overflowed.wait(0.5)  # the frame after the last slot waits for one
            got = [await next_item(frames, 10) for _ in range(slots + 1)]
            assert await asyncio.to_thread(overflowed.wait, 10)
        assert [int(frame[0, 0, 0]) for frame in got] == list(range(slots + 1))

    run(main())


def test_worker_sees_attributes_set_after_super_init(no_leaks):
    async def main():
        with Echo() as e:
            out = e.subscribe()
            e.put_nowait(1)
            assert await next_item(out) == ("late attribute", 1)

    run(main())


def test_consumer_side_switches_subscriptions(no_leaks):
    async def main():
        with Echo() as e:
            out = e.subscribe()
            q1, q2 = asyncio.Queue(), asyncio.Queue()
            e.putSubscription(q1)
            q1.put_nowait("a")
            assert (await next_item(out))[1] == "a"
            e.putSubscription(q2)
            q2.put_nowait("b")
            assert (await next_item(out))[1] == "b"
            assert e.subscription is q2

    run(main())


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_a_worker_exception_fires_on_error_and_earlier_items_are_delivered(method, no_leaks, caplog):
    async def main():
        c = Crashes(start_method=method)
        out = c.subscribe()
        err = await asyncio.wait_for(c.onError(), 10)
        assert isinstance(err, ValueError) and "on fire" in str(err)
        assert await next_item(out) == "made before the crash"
        await asyncio.wait_for(c, 2)
        assert c.closed

    with caplog.at_level(logging.ERROR):
        run(main())
    assert "motor driver on fire" in caplog.text  # with the child's traceback


def test_a_worker_that_returns_closes_the_object_after_its_items(no_leaks):
    async def main():
        f = Finishes()
        out = f.subscribe()
        await asyncio.wait_for(f, 10)
        assert f.error is None
        assert [await next_item(out) for _ in range(3)] == [0, 1, 2]

    run(main())


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_a_killed_worker_fires_on_error_within_a_second(method, no_leaks):
    async def main():
        p = Pid(start_method=method)
        out = p.subscribe()
        pid = await next_item(out, timeout=10)
        await asyncio.wait_for(p.onReady(), 5)
        os.kill(pid, signal.SIGKILL)
        err = await asyncio.wait_for(p.onError(), 1.0)
        assert isinstance(err, WorkerDiedError)
        assert "SIGKILL" in str(err)
        loop = asyncio.get_running_loop()
        start = loop.time()
        p.close()
        assert loop.time() - start < 1.0

    run(main())


def test_close_while_the_worker_is_blocked_in_get(no_leaks):
    async def main():
        c = ClosedInGet(joinTimeout=5)
        await asyncio.wait_for(c.onReady(), 10)
        loop = asyncio.get_running_loop()
        start = loop.time()
        c.close()  # the worker wakes from _get() with SubscriptionClosed and exits by itself
        assert loop.time() - start < 2.0
        assert c.closed and c.error is None

    run(main())


def test_close_terminates_a_stuck_worker_after_join_timeout(no_leaks, caplog):
    async def main():
        s = Stuck(joinTimeout=0.3)
        await asyncio.wait_for(s.onReady(), 10)
        loop = asyncio.get_running_loop()
        start = loop.time()
        with caplog.at_level(logging.WARNING):
            s.close()
        assert loop.time() - start < 2.0
        s.close()  # idempotent

    run(main())
    assert "did not stop" in caplog.text


def test_close_kills_a_stuck_worker_that_ignores_sigterm(no_leaks, monkeypatch):
    import multiprocessing.process

    signals = []
    for name in ("terminate", "kill"):
        original = getattr(multiprocessing.process.BaseProcess, name)

        def spy(process, _name=name, _original=original):
            signals.append((_name, process.pid))
            _original(process)

        monkeypatch.setattr(multiprocessing.process.BaseProcess, name, spy)

    async def main():
        s = IgnoresSigterm(joinTimeout=0.3)
        pid = await next_item(s.subscribe(), timeout=10)
        await asyncio.wait_for(s.onReady(), 10)
        loop = asyncio.get_running_loop()
        start = loop.time()
        s.close()  # join 0.3 s, SIGTERM (ignored), join 0.5 s, SIGKILL
        assert loop.time() - start < 5.0
        assert signals == [("terminate", pid), ("kill", pid)]
        with pytest.raises(ProcessLookupError):  # gone and reaped
            os.kill(pid, 0)

    run(main())


def test_unpicklable_state_gives_a_clear_error_naming_the_attribute(no_leaks):
    async def main():
        with pytest.raises(NotPicklableError, match=r"HoldsALock\.lock"):
            HoldsALock()

    run(main())


def test_the_worker_ignores_sigint_so_ctrl_c_closes_through_close(no_leaks):
    async def main():
        with Pid() as p:
            out = p.subscribe()
            pid = await next_item(out, timeout=10)
            await asyncio.wait_for(p.onReady(), 5)
            os.kill(pid, signal.SIGINT)
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(p.onError()), 0.3)
            assert not p.closed

    run(main())


def test_base_classes_can_be_constructed_directly(no_leaks):
    async def main():
        objs = [ProcessSubscriptionProducer(), ProcessSubscriptionConsumer(), ProcessSubscriptionProducerConsumer()]
        for obj in objs:
            await asyncio.wait_for(obj.onReady(), 10)
        for obj in objs:
            obj.close()
            assert obj.closed

    run(main())


def test_a_bad_item_is_logged_and_the_consumer_keeps_working(no_leaks, caplog):
    async def main():
        with Echo() as e:
            out = e.subscribe()
            with caplog.at_level(logging.ERROR):
                e.put_nowait(lambda: None)  # cannot be pickled
                e.put_nowait("next good item")
                assert await next_item(out) == ("late attribute", "next good item")

    run(main())
    assert "could not send a function" in caplog.text


def test_an_item_the_parent_cannot_unpickle_is_logged_and_skipped(no_leaks, caplog):
    async def main():
        with caplog.at_level(logging.ERROR):
            with SendsABadItemBetweenGoodOnes() as p:
                out = p.subscribe()
                assert [await next_item(out, timeout=10), await next_item(out, timeout=10)] == ["before", "after"]
                assert out.empty() and p.error is None and not p.closed

    run(main())
    assert "could not be unpickled and was skipped" in caplog.text
    assert "this item cannot be rebuilt (on purpose)" in caplog.text


class StartsBadly(ProcessSubscriptionProducer):
    closes = 0

    def _start_worker(self):
        raise OSError("could not start the worker")

    def close(self):
        type(self).closes += 1
        super().close()


def test_a_worker_that_cannot_start_closes_the_object(no_leaks):
    async def main():
        with pytest.raises(OSError, match="could not start"):
            StartsBadly()
        assert StartsBadly.closes == 1  # what __init__ set up was released before the error propagated

    run(main())


@pytest.mark.parametrize("frames", [True, False], ids=["frames", "small items"])
@pytest.mark.parametrize("window", [1, 2, 256])
def test_a_fast_consumer_worker_gets_every_item_in_order_whatever_its_window(window, frames, no_leaks):
    # The worker's reports of what it took ride with its next write (a frame's returned slot) or go when it
    # waits for the next item: with one item in flight, a report held back would stall the feed for good
    # (the test would time out). Small items return no slot: their reports go when the worker waits.
    async def main():
        with ReturnsIndexes(window=window) as worker:
            out = worker.subscribe()
            await asyncio.wait_for(worker.onReady(), 10)
            for index in range(200):
                frame = np.full((480, 640, 3), index % 251, np.uint8) if frames else None
                worker.put_nowait((index, frame))
            return [await next_item(out, 10) for _ in range(200)]

    assert run(main(), timeout=60) == [(index, True) for index in range(200)]


def test_a_slow_consumer_worker_has_at_most_three_640x480_frames_waiting(no_leaks):
    # The feed's byte bound keeps a slow worker on fresh frames: three at 640x480 (2 MB). The bound stretches
    # (four times at most: nine frames) while a worker keeps up (this one does at first, waiting for its first
    # frame, and may again for a moment when the machine is loaded and the feed lags), and must be back
    # once its reports say frames were waiting for it.
    async def main():
        with ReturnsIndexes(work=0.01) as worker:
            out = worker.subscribe()
            await asyncio.wait_for(worker.onReady(), 10)
            for index in range(40):
                worker.put_nowait((index, np.full((480, 640, 3), index % 251, np.uint8)))
            waiting = []
            for _ in range(40):
                assert (await next_item(out, 10))[1]
                waiting.append(worker._feedInFlight)
            return waiting

    waiting = run(main(), timeout=60)[10:]
    assert max(waiting) <= 9, waiting
    assert sum(count <= 3 for count in waiting) >= 0.8 * len(waiting), waiting


@pytest.mark.parametrize("window", [1, 2])
def test_a_consumer_worker_that_writes_nothing_back_still_reports_what_it_took(window, no_leaks):
    # Nothing carries its reports (no item of its own, no returned slot): they must go when it waits for the
    # next item, or the feed, with one or two items in flight, would wait for them for good.
    async def main():
        with CollectsIndexes(100, window) as worker:
            out = worker.subscribe()
            await asyncio.wait_for(worker.onReady(), 10)
            for index in range(100):
                worker.put_nowait((index, "small"))
            return await next_item(out, 10)

    assert run(main(), timeout=30) == list(range(100))
