"""A producer's ``get()`` waits in its caller's task (no task of its own per item): it keeps order, loses
nothing, is woken by close() and unsubscribe(), and never swallows or leaks a cancellation."""
import asyncio
import sys

import pytest

from rtcbot.base import SubscriptionClosed, SubscriptionProducer
from rtcbot.subscriptions import MostRecentSubscription
from tests.helpers import run


async def _settle() -> None:
    """Let every task that can run, run (a few loop turns)."""
    for _ in range(5):
        await asyncio.sleep(0)


def test_get_keeps_order_when_it_waits_and_when_items_wait():
    async def main():
        p = SubscriptionProducer()
        other = p.subscribe()
        got = []

        async def reader():
            for _ in range(200):
                got.append(await p.get())

        task = asyncio.ensure_future(reader())
        await _settle()  # its first get() made the default subscription and waits
        for i in range(200):
            p.put_nowait(i)
            if i % 3 == 0:  # sometimes the reader waits, sometimes items pile up
                await asyncio.sleep(0)
        await asyncio.wait_for(task, 5)
        assert got == list(range(200))
        assert [other.get_nowait() for _ in range(200)] == list(range(200))  # every subscriber got each one
        p.close()

    run(main())


def test_two_tasks_waiting_in_get_share_the_items_without_loss():
    async def main():
        p = SubscriptionProducer()
        got = []

        async def reader():
            while True:
                try:
                    got.append(await p.get())
                except SubscriptionClosed:
                    return

        readers = [asyncio.ensure_future(reader()) for _ in range(2)]
        await _settle()
        for i in range(50):
            p.put_nowait(i)
            await asyncio.sleep(0)
        await _settle()
        p.close()
        await asyncio.wait_for(asyncio.gather(*readers), 5)
        assert sorted(got) == list(range(50))

    run(main())


def test_an_item_put_just_before_unsubscribe_reaches_the_pending_get():
    async def main():
        p = SubscriptionProducer()
        pending = asyncio.ensure_future(p.get())
        await _settle()
        p.put_nowait("first")  # wakes the get, which has not resumed yet...
        p.unsubscribe()  # ...when its subscription goes
        assert await asyncio.wait_for(pending, 1) == "first"
        p.close()

    run(main())


def test_a_get_woken_by_unsubscribe_leaves_no_cancellation_behind():
    async def main():
        p = SubscriptionProducer()

        async def reader():
            value = await p.get()
            await asyncio.sleep(0.01)  # a pending cancellation would strike here
            return value

        task = asyncio.ensure_future(reader())
        await _settle()
        p.unsubscribe()
        await _settle()
        p.put_nowait("after")
        assert await asyncio.wait_for(task, 1) == "after"
        if sys.version_info >= (3, 11):
            assert task.cancelling() == 0
        p.close()

    run(main())


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.timeout is Python 3.11+")
def test_get_inside_asyncio_timeout_survives_unsubscribe_and_close_is_subscription_closed():
    async def main():
        p = SubscriptionProducer()

        async def reader():
            async with asyncio.timeout(5):
                first = await p.get()
            with pytest.raises(SubscriptionClosed):
                async with asyncio.timeout(5):
                    await p.get()
            return first

        task = asyncio.ensure_future(reader())
        await _settle()
        p.unsubscribe()
        p.put_nowait(1)
        await _settle()
        p.close()
        assert await asyncio.wait_for(task, 1) == 1

    run(main())


def test_the_caller_cancelling_a_get_woken_by_close_is_still_cancelled():
    async def main():
        p = SubscriptionProducer()
        task = asyncio.ensure_future(p.get())
        await _settle()
        p.close()  # wakes it...
        task.cancel()  # ...and its caller cancels it in the same turn: the caller's wins
        with pytest.raises(asyncio.CancelledError):
            await task
        assert task.cancelled()

    run(main())


def test_a_cancelled_get_takes_no_item():
    async def main():
        p = SubscriptionProducer()
        task = asyncio.ensure_future(p.get())
        await _settle()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        p.put_nowait("kept")
        assert await asyncio.wait_for(p.get(), 1) == "kept"
        p.close()

    run(main())


def test_get_on_a_most_recent_default_subscription_is_woken_by_close():
    async def main():
        p = SubscriptionProducer(defaultSubscriptionClass=MostRecentSubscription)
        pending = asyncio.ensure_future(p.get())
        await _settle()
        p.put_nowait(1)
        p.put_nowait(2)
        assert await asyncio.wait_for(pending, 1) == 2
        pending = asyncio.ensure_future(p.get())
        await _settle()
        p.close()
        with pytest.raises(SubscriptionClosed):
            await asyncio.wait_for(pending, 1)

    run(main())


def _drive_outside_any_task(coro, loop: asyncio.AbstractEventLoop) -> asyncio.Future:
    """Run ``coro`` from loop callbacks, not in a task (as a foreign framework might); its result lands in
    the returned future."""
    result = loop.create_future()

    def step(_: object = None) -> None:
        try:
            yielded = coro.send(None)
        except StopIteration as stop:
            result.set_result(stop.value)
            return
        except BaseException as err:  # noqa: BLE001 - handed to the test through the future
            result.set_exception(err)
            return
        yielded.add_done_callback(lambda _f: loop.call_soon(step))

    loop.call_soon(step)
    return result


def test_get_awaited_outside_any_task_still_gets_items_and_is_woken_by_close():
    async def main():
        loop = asyncio.get_running_loop()
        p = SubscriptionProducer()
        pending = _drive_outside_any_task(p.get(), loop)
        await _settle()
        p.put_nowait("x")
        assert await asyncio.wait_for(pending, 1) == "x"
        pending = _drive_outside_any_task(p.get(), loop)
        await _settle()
        p.close()
        with pytest.raises(SubscriptionClosed):
            await asyncio.wait_for(pending, 1)

    run(main())
