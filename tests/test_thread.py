"""The threaded flavour: _producer()/_consumer() in a worker thread, hand-off to the event loop, lifetimes."""
import asyncio
import logging
import threading

import pytest

from rtcbot.base import SubscriptionClosed, ThreadedSubscriptionConsumer, ThreadedSubscriptionProducer
from rtcbot.subscriptions import MostRecentSubscription
from tests.helpers import next_item, run


class Counter(ThreadedSubscriptionProducer):
    """Produces 0..count-1 as fast as it can, then idles until closed."""

    def __init__(self, count, **kwargs):
        self.count = count
        super().__init__(**kwargs)

    def _producer(self):
        self._setReady(True)
        for i in range(self.count):
            self._put_nowait(i)
        self._wait_closed()


class Recorder(ThreadedSubscriptionConsumer):
    """Records every item in its worker thread; reports them through a thread-safe queue."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seen = asyncio.Queue()
        self.loopForTest = asyncio.get_running_loop()

    def _consumer(self):
        self._setReady(True)
        try:
            while True:
                item = self._get()
                self.loopForTest.call_soon_threadsafe(self.seen.put_nowait, item)
        except SubscriptionClosed:
            self.loopForTest.call_soon_threadsafe(self.seen.put_nowait, "<closed>")
            raise


class GatedRecorder(Recorder):
    """A Recorder whose worker takes nothing until the test opens ``gate``: items wait for it meanwhile."""

    def __init__(self, **kwargs):
        self.gate = threading.Event()
        super().__init__(**kwargs)

    def _consumer(self):
        assert self.gate.wait(10), "the test never opened the gate"
        super()._consumer()


def test_items_from_the_worker_arrive_in_order(no_leaks):
    async def main():
        with Counter(10000) as c:
            s = c.subscribe()
            await asyncio.wait_for(c.onReady(), 2)
            items = [await next_item(s) for _ in range(10000)]
            assert items == list(range(10000))

    run(main())


def test_a_worker_faster_than_the_loop_waits_instead_of_losing_items(no_leaks):
    async def main():
        with Counter(5000) as c:
            s = c.subscribe()
            # 5000 items against a hand-off limit of 1024: the worker must wait for the loop at times.
            assert c._handoff._limit < 5000
            assert [await next_item(s) for _ in range(5000)] == list(range(5000))
            assert c._handoff.dropped == 0

    run(main())


def test_a_batching_handoff_wakes_the_loop_once_per_limit_items_or_at_a_call():
    """With batching on, items close behind each other wait until ``limit`` of them wait (one wake-up for
    all) or a call follows them (ready/error/close must never leave an item behind, nor overtake it); an
    item far from the one before it wakes the loop at once."""
    from rtcbot.base.worker import LoopHandoff

    async def main():
        seen = []
        arrived = asyncio.Event()

        def deliver(item):
            seen.append(item)
            arrived.set()

        handoff = LoopHandoff(asyncio.get_running_loop(), deliver, limit=3)
        handoff.batching = True
        handoff.batch_gap = float("inf")  # every item counts as close behind the one before it
        handoff.put(1)
        handoff.put(2)
        await asyncio.sleep(0)  # a scheduled drain would have run by now: none was
        assert seen == []
        handoff.put(3)  # the third fills the hand-off: one wake-up delivers all three
        await asyncio.wait_for(arrived.wait(), 2)
        assert seen == [1, 2, 3]
        arrived.clear()
        handoff.put(4)
        handoff.call(seen.append, "call")  # a call wakes the loop at once, after the item held before it
        await asyncio.wait_for(arrived.wait(), 2)
        assert seen == [1, 2, 3, 4, "call"]
        arrived.clear()
        handoff.batch_gap = 0.0  # items further apart than the gap wake the loop each, as without batching
        handoff.put(5)
        await asyncio.wait_for(arrived.wait(), 2)
        assert seen[-1] == 5

    run(main())


def test_a_batching_producer_delivers_everything_in_order_and_its_last_item_at_close(no_leaks):
    class Odd(Counter):
        _handoff_limit = 4

        def __init__(self, count):
            super().__init__(count)
            self._set_handoff_batching(True)

        def _producer(self):
            self._setReady(True)
            for i in range(self.count):
                self._put_nowait(i)
            # returning closes the producer: the item held back must arrive before the close

    async def main():
        c = Odd(1001)
        q = c.subscribe(asyncio.Queue())
        await asyncio.wait_for(c.onClose(), 5)
        return [q.get_nowait() for _ in range(q.qsize())]

    assert run(main()) == list(range(1001))


def test_worker_sees_attributes_set_after_super_init(no_leaks):
    class Late(ThreadedSubscriptionProducer):
        def __init__(self):
            super().__init__()
            self.greeting = "set after super().__init__()"

        def _producer(self):
            self._put_nowait(self.greeting)
            self._wait_closed()

    async def main():
        with Late() as late:
            s = late.subscribe()
            assert await next_item(s) == "set after super().__init__()"

    run(main())


def test_an_init_that_raises_starts_no_thread(no_leaks):
    class Broken(ThreadedSubscriptionProducer):
        def __init__(self):
            super().__init__()
            raise OSError("no such device")

    async def main():
        before = threading.active_count()
        with pytest.raises(OSError):
            Broken()
        assert threading.active_count() == before

    run(main())


def test_a_worker_exception_fires_on_error_and_closes(no_leaks):
    class Failing(ThreadedSubscriptionProducer):
        def _producer(self):
            self._put_nowait("before the crash")
            raise RuntimeError("sensor unplugged")

    async def main():
        f = Failing()
        s = f.subscribe()
        err = await asyncio.wait_for(f.onError(), 1)
        assert isinstance(err, RuntimeError) and "unplugged" in str(err)
        assert await next_item(s) == "before the crash"  # delivered, not dropped
        await asyncio.wait_for(f, 1)
        assert f.closed and f.error is err

    run(main())


def test_a_producer_that_returns_closes_the_object(no_leaks):
    class Finite(ThreadedSubscriptionProducer):
        def _producer(self):
            self._setReady(True)
            self._put_nowait("only item")

    async def main():
        f = Finite()
        s = f.subscribe()
        await asyncio.wait_for(f, 2)
        assert f.closed and f.error is None
        assert await next_item(s) == "only item"

    run(main())


def test_close_abandons_a_stuck_worker_after_the_join_timeout(caplog):
    release = threading.Event()

    class Stuck(ThreadedSubscriptionProducer):
        joinTimeout = 0.2

        def _producer(self):
            release.wait(10)  # a device call that ignores close()

    async def main():
        s = Stuck()
        loop = asyncio.get_running_loop()
        start = loop.time()
        with caplog.at_level(logging.WARNING):
            s.close()
        assert loop.time() - start < 1.0
        assert s.closed

    run(main())
    release.set()
    assert "did not stop" in caplog.text


def test_base_classes_can_be_constructed_directly(no_leaks):
    async def main():
        p = ThreadedSubscriptionProducer()
        c = ThreadedSubscriptionConsumer()
        await asyncio.wait_for(p.onReady(), 2)
        await asyncio.wait_for(c.onReady(), 2)
        p.close()
        c.close()
        assert p.closed and c.closed

    run(main())


def test_consumer_get_blocks_in_the_worker_and_switches_subscriptions(no_leaks):
    async def main():
        r = Recorder()
        q1, q2 = asyncio.Queue(), asyncio.Queue()
        r.putSubscription(q1)
        q1.put_nowait("one")
        assert await next_item(r.seen) == "one"
        r.putSubscription(q2)
        q1.put_nowait("stale")
        q2.put_nowait("two")
        assert await next_item(r.seen) == "two"
        r.put_nowait("three")
        assert await next_item(r.seen) == "three"
        r.close()
        assert await next_item(r.seen) == "<closed>"

    run(main())


def test_items_waiting_before_the_worker_asks_arrive_all_and_in_order(no_leaks):
    # The loop hands a waiting item over at once (no task per item); one not there yet is awaited: both kinds,
    # interleaved, keep their order and lose nothing.
    async def main():
        loop = asyncio.get_running_loop()
        tasks_made = []

        def counting_factory(loop, coro, **kwargs):
            tasks_made.append(coro.__qualname__)
            return asyncio.Task(coro, loop=loop, **kwargs)

        r = GatedRecorder()
        try:
            for item in range(300):
                r.put_nowait(item)  # all waiting before the worker's first _get()
            loop.set_task_factory(counting_factory)
            r.gate.set()
            assert [await next_item(r.seen) for _ in range(300)] == list(range(300))
            loop.set_task_factory(None)
            # 300 items, no task of their own (one at most: the next _get(), waiting for an item not there yet)
            assert len([name for name in tasks_made if "_fetch" in name]) <= 1
            for item in range(300, 400):  # now the worker waits for each
                r.put_nowait(item)
                assert await next_item(r.seen) == item
        finally:
            r.close()
        assert await next_item(r.seen) == "<closed>"

    run(main())


def test_close_while_blocked_in_get_raises_subscription_closed_in_the_worker(no_leaks):
    async def main():
        r = Recorder()
        await asyncio.wait_for(r.onReady(), 2)
        r.close()  # the worker is blocked in _get(): it must wake, not hang
        assert await next_item(r.seen) == "<closed>"
        assert r.error is None

    run(main())


def test_consumer_reads_a_producer_through_most_recent(no_leaks):
    """A consumer that looks only after the producer made 50 items gets exactly the newest (49), and the
    49 older ones are gone: the next thing it sees is the close."""

    async def main():
        c = Counter(50, defaultSubscriptionType=MostRecentSubscription)
        every = c.subscribe(asyncio.Queue())  # the same items, in the same loop callbacks
        r = GatedRecorder()
        try:
            r.putSubscription(c)
            newest = r._source
            assert isinstance(newest, MostRecentSubscription)
            assert [await next_item(every) for _ in range(50)] == list(range(50))  # all 50 reached the loop
            r.gate.set()
            assert await next_item(r.seen) == 49
            assert newest.dropped == 49 and newest.empty()
            r.close()
            assert await next_item(r.seen) == "<closed>"  # nothing older was waiting behind the newest
        finally:
            r.gate.set()
            r.close()
            c.close()

    run(main())


def test_thread_safe_events_reach_the_loop(no_leaks):
    class SlowStart(ThreadedSubscriptionProducer):
        def _producer(self):
            self._setReady(True)
            self._wait_closed(timeout=5)
            self._setReady(False)

    async def main():
        s = SlowStart()
        assert not s.ready
        await asyncio.wait_for(s.onReady(), 2)
        assert s.ready
        s.close()
        assert not s.ready

    run(main())
