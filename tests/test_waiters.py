"""Waiters: futures that end when their owner closes, woken or failed from any thread."""
import asyncio
import threading

import pytest

from rtcbot.base.waiters import Waiters
from rtcbot.errors import DeviceClosedError
from tests.helpers import run


def test_wake_completes_waiters_for_the_key_only():
    async def main():
        waiters = Waiters("test")
        up = asyncio.ensure_future(waiters.wait(key=True))
        down = asyncio.ensure_future(waiters.wait(key=False))
        await asyncio.sleep(0)
        assert waiters.wake("port open", key=True) == 1
        assert await asyncio.wait_for(up, 5) == "port open"
        assert not down.done()
        waiters.fail_all(DeviceClosedError("closed"))
        with pytest.raises(DeviceClosedError):
            await asyncio.wait_for(down, 5)

    run(main())


def test_fail_all_from_another_thread_ends_the_await():
    async def main():
        waiters = Waiters("test")
        pending = asyncio.ensure_future(waiters.wait())
        await asyncio.sleep(0)
        thread = threading.Thread(target=waiters.fail_all, args=(DeviceClosedError("gone"),))
        thread.start()
        with pytest.raises(DeviceClosedError, match="gone"):
            await asyncio.wait_for(pending, 5)
        thread.join(5)
        assert len(waiters) == 0

    run(main())


def test_wait_after_fail_all_raises_at_once_with_the_first_error():
    async def main():
        waiters = Waiters("test")
        waiters.fail_all(DeviceClosedError("first"))
        waiters.fail_all(DeviceClosedError("second"))
        with pytest.raises(DeviceClosedError, match="first"):
            await asyncio.wait_for(waiters.wait(), 5)
        assert isinstance(waiters.failure, DeviceClosedError)

    run(main())


def test_a_cancelled_wait_is_forgotten():
    async def main():
        waiters = Waiters("test")
        pending = asyncio.ensure_future(waiters.wait())
        await asyncio.sleep(0)
        pending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await pending
        assert len(waiters) == 0
        assert waiters.wake() == 0


    run(main())
