"""The asyncio flavour of the base layer: events, producers and consumers, as base-api.txt documents them."""
import asyncio
import gc
import logging
import os
import subprocess
import sys
import textwrap

import pytest

from rtcbot.base import (
    BaseSubscriptionConsumer,
    BaseSubscriptionProducer,
    NoClosedSubscription,
    SubscriptionClosed,
    SubscriptionConsumer,
    SubscriptionProducer,
    SubscriptionProducerConsumer,
    baseEventHandler,
)
from rtcbot.errors import DeviceClosedError
from rtcbot.subscriptions import MostRecentSubscription
from tests.helpers import next_item, run

# -- events ------------------------------------------------------------------------------------------


def test_on_ready_fires_callbacks_and_can_be_awaited_after_the_fact():
    async def main():
        h = baseEventHandler(None)
        calls = []
        h.onReady(lambda value: calls.append(value))
        assert not h.ready
        h._setReady(True)
        await asyncio.sleep(0)  # callbacks run on the next loop iteration
        assert calls == [True] and h.ready
        await asyncio.wait_for(h.onReady(), 1)  # already ready: returns at once

    run(main())


def test_await_on_error_returns_the_exception():
    async def main():
        h = baseEventHandler(None)
        waiter = asyncio.ensure_future(h.onError())
        err = ValueError("sensor fell off")
        h._setError(err)
        assert await asyncio.wait_for(waiter, 1) is err
        assert h.error is err and h.closed and not h.ready
        assert await asyncio.wait_for(h.onError(), 1) is err  # after the fact too

    run(main())


def test_on_error_accepts_a_coroutine():
    async def main():
        h = baseEventHandler(None)
        got = asyncio.get_running_loop().create_future()

        async def handler(err):
            got.set_result(err)

        h.onError(handler)
        h._setError(KeyError("x"))
        assert isinstance(await asyncio.wait_for(got, 1), KeyError)

    run(main())


def test_awaiting_the_object_waits_for_close():
    async def main():
        h = baseEventHandler(None)
        closed = []
        h.onClose(lambda _: closed.append(True))
        waiter = asyncio.ensure_future(asyncio.wait_for(h, 1))
        await asyncio.sleep(0)
        assert not waiter.done()
        h.close()
        await waiter
        await asyncio.sleep(0)
        assert h.closed and closed == [True]

    run(main())


def test_objects_are_sync_and_async_context_managers():
    async def main():
        with SubscriptionProducer() as p:
            pass
        assert p.closed
        async with SubscriptionConsumer() as c:
            pass
        assert c.closed

    run(main())


# -- producers ---------------------------------------------------------------------------------------


def test_every_subscription_gets_identical_data():
    async def main():
        p = SubscriptionProducer()
        s1, s2 = p.subscribe(), p.subscribe()
        assert isinstance(s1, asyncio.Queue) and s1 is not s2
        for i in range(3):
            p._put_nowait(i)
        assert [await next_item(s1) for _ in range(3)] == [await next_item(s2) for _ in range(3)] == [0, 1, 2]

    run(main())


def test_default_subscription_class_is_used_by_subscribe():
    p = SubscriptionProducer(defaultSubscriptionClass=MostRecentSubscription)
    assert isinstance(p.subscribe(), MostRecentSubscription)


def test_subscribe_returns_what_was_passed_so_it_works_as_a_decorator():
    async def main():
        p = SubscriptionProducer()
        q = asyncio.Queue()
        assert p.subscribe(q) is q
        got = []

        @p.subscribe
        def on_data(x):
            got.append(x)

        assert callable(on_data)
        done = asyncio.get_running_loop().create_future()

        @p.subscribe
        async def on_data_async(x):
            done.set_result(x)

        p._put_nowait("a")
        assert await next_item(q) == "a"
        assert await asyncio.wait_for(done, 1) == "a"
        assert got == ["a"]

    run(main())


def test_subscribe_rejects_something_that_cannot_take_items():
    with pytest.raises(TypeError, match="put_nowait"):
        SubscriptionProducer().subscribe(42)


def test_unsubscribe_stops_updates():
    async def main():
        p = SubscriptionProducer()
        s = p.subscribe()
        p.unsubscribe(s)
        p._put_nowait(1)
        assert s.empty()
        p.unsubscribe(asyncio.Queue())  # unknown: ignored

    run(main())


def test_get_uses_one_default_subscription_until_unsubscribe():
    async def main():
        p = SubscriptionProducer()
        getter = asyncio.ensure_future(p.get())
        await asyncio.sleep(0)
        default = p._default_subscription
        p._put_nowait(1)
        p._put_nowait(2)
        assert await asyncio.wait_for(getter, 1) == 1
        assert await asyncio.wait_for(p.get(), 1) == 2
        assert p._default_subscription is default
        p.unsubscribe()
        assert p._default_subscription is None
        getter = asyncio.ensure_future(p.get())
        await asyncio.sleep(0)
        assert p._default_subscription is not default
        p._put_nowait(3)
        assert await asyncio.wait_for(getter, 1) == 3

    run(main())


def test_default_autosubscribe_keeps_data_from_before_the_first_get():
    async def main():
        p = SubscriptionProducer(defaultAutosubscribe=True)
        p._put_nowait("early")
        assert await asyncio.wait_for(p.get(), 1) == "early"

    run(main())


def test_unsubscribe_all_removes_the_default_subscription_too():
    async def main():
        p = SubscriptionProducer(defaultAutosubscribe=True)
        p.subscribe()
        p.unsubscribeAll()
        assert not p._subscriptions and p._default_subscription is None

    run(main())


def test_a_raising_callback_is_logged_and_does_not_stop_the_producer(caplog):
    async def main():
        p = SubscriptionProducer()

        def bad(x):
            raise RuntimeError("subscriber bug")

        p.subscribe(bad)
        q = p.subscribe()
        with caplog.at_level(logging.ERROR):
            p._put_nowait(1)
            p._put_nowait(2)
            assert [await next_item(q), await next_item(q)] == [1, 2]
            await asyncio.sleep(0)

    run(main())
    assert "subscriber bug" in caplog.text


def test_a_raising_coroutine_subscriber_is_logged_never_lost(caplog):
    async def main():
        p = SubscriptionProducer()
        raised = asyncio.Event()

        async def bad(x):
            raised.set()
            raise RuntimeError("async subscriber bug")

        p.subscribe(bad)
        p._put_nowait(1)
        await asyncio.wait_for(raised.wait(), 1)
        await asyncio.sleep(0)

    with caplog.at_level(logging.ERROR):
        run(main())
        gc.collect()
    assert "async subscriber bug" in caplog.text
    assert "never retrieved" not in caplog.text


def test_a_full_queue_subscription_does_not_block_the_others(caplog):
    async def main():
        p = SubscriptionProducer()
        full = p.subscribe(asyncio.Queue(maxsize=1))
        other = p.subscribe()
        for i in range(3):
            p._put_nowait(i)
        assert full.qsize() == 1 and other.qsize() == 3

    with caplog.at_level(logging.WARNING):
        run(main())
    assert "did not take an item" in caplog.text


def test_close_wakes_a_pending_get_with_subscription_closed():
    async def main():
        p = SubscriptionProducer()
        getter = asyncio.ensure_future(p.get())
        await asyncio.sleep(0)
        p.close()
        with pytest.raises(SubscriptionClosed):
            await asyncio.wait_for(getter, 1)
        with pytest.raises(SubscriptionClosed):
            await p.get()
        assert p.closed and p._shouldClose and not p._subscriptions

    run(main())


def test_close_is_idempotent():
    p = SubscriptionProducer()
    closes = []
    p.onClose(lambda _: closes.append(1))
    p.close()
    p.close()
    assert p.closed


# -- consumers ---------------------------------------------------------------------------------------


class Collector(BaseSubscriptionConsumer):
    """A consumer whose loop records every item, as a device would process them."""

    def __init__(self):
        super().__init__()
        self.items = asyncio.Queue()
        self.task = asyncio.ensure_future(self._run())

    async def _run(self):
        try:
            while True:
                self.items.put_nowait(await self._get())
        except SubscriptionClosed:
            self.items.put_nowait("<closed>")


def test_put_nowait_reaches_get():
    async def main():
        c = Collector()
        c.put_nowait("x")
        assert await next_item(c.items) == "x"
        c.close()

    run(main())


def test_put_subscription_switches_mid_stream_as_documented():
    async def main():
        c = Collector()
        q1, q2 = asyncio.Queue(), asyncio.Queue()
        c.putSubscription(q1)
        assert c.subscription == q1
        q1.put_nowait("from q1")
        assert await next_item(c.items) == "from q1"
        c.putSubscription(q2)  # while _get() waits on q1
        assert c.subscription == q2
        q1.put_nowait("ignored")
        q2.put_nowait("from q2")
        assert await next_item(c.items) == "from q2"
        c.close()

    run(main())


def test_put_nowait_stops_the_active_subscription():
    async def main():
        c = Collector()
        s = asyncio.Queue()
        c.putSubscription(s)
        c.put_nowait("direct")
        assert c.subscription is None
        assert await next_item(c.items) == "direct"
        c.close()

    run(main())


def test_stop_subscription_then_subscribe_again():
    async def main():
        c = Collector()
        q = asyncio.Queue()
        c.putSubscription(q)
        c.stopSubscription()
        assert c.subscription is None
        q.put_nowait("not read")
        await asyncio.sleep(0)
        assert c.items.empty()
        c.putSubscription(q)
        assert c.subscription == q
        assert await next_item(c.items) == "not read"
        c.close()

    run(main())


def test_put_subscription_of_a_producer_subscribes_and_unsubscribes():
    async def main():
        p = SubscriptionProducer()
        c = Collector()
        c.putSubscription(p)
        assert c.subscription is p and len(p._subscriptions) == 1
        p._put_nowait("from producer")
        assert await next_item(c.items) == "from producer"
        c.stopSubscription()
        assert not p._subscriptions
        c.close()

    run(main())


def test_put_subscription_rejects_an_object_without_get():
    async def main():
        with pytest.raises(TypeError, match="async get"):
            SubscriptionConsumer().putSubscription(object())

    run(main())


def test_close_makes_get_raise_subscription_closed():
    async def main():
        c = Collector()
        await asyncio.sleep(0)
        c.close()
        assert await next_item(c.items) == "<closed>"
        with pytest.raises(DeviceClosedError):
            c.put_nowait("late")

    run(main())


def test_producer_consumer_is_both():
    async def main():
        class Echo(SubscriptionProducerConsumer):
            def __init__(self):
                super().__init__()
                self.task = asyncio.ensure_future(self._run())

            async def _run(self):
                try:
                    while True:
                        self._put_nowait(await self._get())
                except SubscriptionClosed:
                    pass

        e = Echo()
        assert e.ready
        replies = e.subscribe()
        e.put_nowait("ping")
        assert await next_item(replies) == "ping"
        e.close()
        await asyncio.wait_for(e.task, 1)
        assert e.closed

    run(main())


def test_no_closed_subscription_turns_subscription_closed_into_cancellation():
    async def main():
        async def reader(x):
            raise SubscriptionClosed()

        with pytest.raises(asyncio.CancelledError):
            await NoClosedSubscription(reader)(1)

    run(main())


def test_base_classes_are_the_documented_ones():
    assert issubclass(SubscriptionConsumer, BaseSubscriptionConsumer)
    assert issubclass(SubscriptionProducer, BaseSubscriptionProducer)
    assert issubclass(SubscriptionProducerConsumer, BaseSubscriptionConsumer)
    assert issubclass(SubscriptionProducerConsumer, BaseSubscriptionProducer)


# -- loop styles -------------------------------------------------------------------------------------

CLASSIC_SCRIPT = textwrap.dedent(
    """
    import asyncio
    from rtcbot.base import SubscriptionProducer, ThreadedSubscriptionProducer

    class Ticker(ThreadedSubscriptionProducer):
        def _producer(self):
            self._setReady(True)
            for i in range(3):
                self._put_nowait(i)
            self._wait_closed()

    ticker = Ticker()                 # created at module level, before any loop runs
    plain = SubscriptionProducer()
    q = ticker.subscribe()

    async def stop():
        print("got", [await q.get() for _ in range(3)], flush=True)
        ticker.close()
        loop.stop()

    loop = asyncio.get_event_loop()   # the classic RTCBot idiom: the loop the objects above use
    loop.create_task(stop())
    loop.run_forever()
    """
)


def test_classic_style_module_level_objects_work_without_deprecation_warnings(tmp_path):
    script = tmp_path / "classic.py"
    script.write_text(CLASSIC_SCRIPT)
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")])))
    result = subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning", str(script)],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert "got [0, 1, 2]" in result.stdout


class FailsBeforeSuperInit(BaseSubscriptionProducer):
    def __init__(self, port):
        if not port:
            raise ValueError("no port given")  # before super().__init__(): nothing of the base set up
        super().__init__()


def test_close_of_an_object_whose_init_raised_before_the_base_init_does_not_raise():
    # A script's cleanup (a finally, a context manager) may close what failed to construct halfway.
    half_built = FailsBeforeSuperInit.__new__(FailsBeforeSuperInit)
    with pytest.raises(ValueError):
        half_built.__init__(None)
    half_built.close()
    half_built.unsubscribeAll()


def test_a_consumer_knows_whether_its_next_item_is_waiting_in_the_active_subscription():
    # The hook a process consumer's feed uses to send two items in one write: True only when _get() would
    # return at once, and False for a subscription that cannot tell (no empty()) or whose empty() fails.
    class NoEmpty:
        async def get(self):
            return 1

    class BrokenEmpty:
        def empty(self):
            raise OSError("broken")

        async def get(self):
            return "c"

    async def main():
        async with SubscriptionConsumer() as c:
            assert not c._next_item_ready()
            c.put_nowait("a")
            assert c._next_item_ready()
            assert await c.get() == "a"
            assert not c._next_item_ready()
            source = asyncio.Queue()
            c.putSubscription(source)
            source.put_nowait("b")
            assert c._next_item_ready()
            c.putSubscription(NoEmpty())
            assert not c._next_item_ready()
            c.putSubscription(BrokenEmpty())
            assert not c._next_item_ready()
            assert await c.get() == "c"  # it is still read

    run(main())
