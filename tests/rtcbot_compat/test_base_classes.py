"""RTCBot's own tests of its asyncio base classes (its tests/test_base.py::TestBaseClasses), run against rtcbot.

The assertions are RTCBot's; only the harness differs (plain functions run by ``tests.helpers.run`` instead
of aiounittest, and a yield to the loop instead of a 10 ms sleep where RTCBot lets a task start).
"""
import asyncio

from rtcbot.base import SubscriptionConsumer, SubscriptionProducer
from tests.helpers import run


async def _let_it_start():
    await asyncio.sleep(0)


def test_subscription_consumer():
    async def main():
        c = SubscriptionConsumer(asyncio.Queue)

        c.put_nowait("test")
        assert await c.get() == "test"

        q = asyncio.Queue()
        q.put_nowait("yay")
        c.putSubscription(q)
        assert await c.get() == "yay"

        # Cancellation: the current subscription is q; put_nowait switches back to the direct one.
        get_task = asyncio.create_task(c.get())
        await _let_it_start()
        c.put_nowait("Hi!")
        await get_task
        assert get_task.result() == "Hi!"

        c.put_nowait("Yo!")
        c.close()

    run(main())


def test_subscription_producer():
    async def main():
        p = SubscriptionProducer(asyncio.Queue, defaultAutosubscribe=True)

        p.put_nowait("1")  # nothing subscribed but the default, made at creation
        assert await p.get() == "1"

        q1 = p.subscribe()
        q2 = p.subscribe()
        p.put_nowait("2")
        assert await p.get() == "2"
        assert await q1.get() == "2"
        assert await q2.get() == "2"

        p.unsubscribe(q2)  # stops it receiving updates
        p.put_nowait("3")
        q2.put_nowait(12)
        assert await p.get() == "3"
        assert await q1.get() == "3"
        assert await q2.get() == 12

        p.unsubscribe()
        p.put_nowait("4")

        get_task = asyncio.create_task(p.get())  # the default is recreated here
        await _let_it_start()
        p.put_nowait("5")
        await get_task
        assert get_task.result() == "5"
        assert await q1.get() == "4"
        assert await q1.get() == "5"

        p.unsubscribeAll()
        p.put_nowait("6")
        q1.put_nowait(8)
        assert await q1.get() == 8

        p.unsubscribe()
        p.unsubscribe()
        p.close()

    run(main())


def test_no_closed_subscription_is_a_subscription_of_a_coroutine_function():
    """RTCBot's consumers read another object through ``putSubscription(NoClosedSubscription(obj._get))``."""
    from rtcbot.base import NoClosedSubscription

    async def main():
        source = SubscriptionConsumer()
        sink = SubscriptionConsumer()
        sink.putSubscription(NoClosedSubscription(source.get))
        source.put_nowait("through")
        assert await asyncio.wait_for(sink.get(), 1) == "through"
        source.close()
        sink.close()

    run(main())
