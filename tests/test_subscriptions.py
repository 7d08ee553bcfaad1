"""The subscription types of rtcbot.subscriptions."""
import asyncio
import logging

import numpy as np
import pytest

from rtcbot.base import SubscriptionProducer
from rtcbot.subscriptions import (
    BoundedQueue,
    CallbackSubscription,
    DelayedSubscription,
    EventSubscription,
    GetterSubscription,
    MostRecentSubscription,
    RebatchSubscription,
)
from tests.helpers import next_item, run


def test_most_recent_returns_only_the_newest_item():
    async def main():
        s = MostRecentSubscription()
        for i in range(5):
            s.put_nowait(i)
        assert await next_item(s) == 4
        assert s.dropped == 4
        assert s.empty()

    run(main())


def test_most_recent_waits_for_the_next_item():
    async def main():
        s = MostRecentSubscription()
        getter = asyncio.ensure_future(s.get())
        await asyncio.sleep(0)
        assert not getter.done()
        s.put_nowait("x")
        assert await asyncio.wait_for(getter, 1) == "x"

    run(main())


def test_bounded_queue_drop_oldest_keeps_newest():
    async def main():
        q = BoundedQueue(3)
        for i in range(10):
            q.put_nowait(i)
        assert [await next_item(q) for _ in range(3)] == [7, 8, 9]
        assert q.dropped == 7

    run(main())


def test_bounded_queue_drop_newest_keeps_what_was_queued():
    async def main():
        q = BoundedQueue(3, overflow="drop-newest")
        for i in range(10):
            q.put_nowait(i)
        assert [await next_item(q) for _ in range(3)] == [0, 1, 2]
        assert q.dropped == 7

    run(main())


@pytest.mark.parametrize("kwargs", [{"maxsize": 0}, {"maxsize": 2, "overflow": "block"}])
def test_bounded_queue_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError, match="BoundedQueue"):
        BoundedQueue(**kwargs)


def test_event_subscription_fires_once_and_can_be_awaited():
    async def main():
        e = EventSubscription()
        e.put_nowait("first")
        e.put_nowait("second")
        assert await asyncio.wait_for(e, 1) == "first"
        assert await e.get() == "first"

    run(main())


def test_callback_subscription_run_direct_calls_at_once():
    got = []
    s = CallbackSubscription(got.append, runDirect=True)
    s.put_nowait(1)
    assert got == [1]


def test_callback_subscription_logs_a_raising_callback(caplog):
    def bad(x):
        raise RuntimeError("callback broke")

    s = CallbackSubscription(bad, runDirect=True)
    with caplog.at_level(logging.ERROR):
        s.put_nowait(1)
    assert "callback broke" in caplog.text


def test_getter_subscription_awaits_its_callback():
    async def main():
        async def source():
            return 42

        assert await GetterSubscription(source).get() == 42

    run(main())


def test_delayed_subscription_subscribes_on_first_get():
    async def main():
        p = SubscriptionProducer()
        s = DelayedSubscription(p)
        p._put_nowait("missed")  # nobody subscribed yet
        getter = asyncio.ensure_future(s.get())
        await asyncio.sleep(0)
        p._put_nowait("seen")
        assert await asyncio.wait_for(getter, 1) == "seen"
        s.unsubscribe()
        assert not p._subscriptions

    run(main())


def test_rebatch_passes_right_sized_blocks_through_untouched():
    async def main():
        s = RebatchSubscription(4)
        block = np.arange(8).reshape(4, 2)
        s.put_nowait(block)
        assert await next_item(s) is block

    run(main())


def test_rebatch_splits_and_joins_blocks_in_order():
    async def main():
        s = RebatchSubscription(4)
        data = np.arange(22, dtype=np.float32).reshape(11, 2)
        s.put_nowait(data[:3])
        s.put_nowait(data[3:10])
        s.put_nowait(data[10:])
        out = [await next_item(s) for _ in range(2)]
        assert all(b.shape == (4, 2) for b in out)
        np.testing.assert_array_equal(np.concatenate(out), data[:8])
        assert s.subscription.empty()  # 3 samples wait for more

    run(main())


def test_rebatch_along_another_axis():
    async def main():
        s = RebatchSubscription(3, axis=1)
        s.put_nowait(np.zeros((2, 7)))
        assert (await next_item(s)).shape == (2, 3)
        assert (await next_item(s)).shape == (2, 3)

    run(main())
