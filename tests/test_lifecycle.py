"""One lifecycle for every worker: close from anywhere, onReady never hangs, every waiter woken, the loop never
blocked behind the user's back, the worker side a whole object. Worker classes live at module level so that
forkserver and spawn children import them by name."""
import asyncio
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from rtcbot.base import (
    ProcessSubscriptionConsumer,
    ProcessSubscriptionProducer,
    SubscriptionClosed,
    ThreadedSubscriptionProducer,
)
from rtcbot.errors import DeviceClosedError, DeviceOpenError, WorkerDiedError
from tests.helpers import run


class EndsAtOnce(ProcessSubscriptionProducer):
    def _producer(self):
        self._setReady(True)
        self._put_nowait("last words")


class EndsAtOnceThread(ThreadedSubscriptionProducer):
    def _producer(self):
        self._setReady(True)
        self._put_nowait("last words")


class Idle(ProcessSubscriptionProducer):
    pass


class FailsToOpen(ProcessSubscriptionProducer):
    def _producer(self):
        raise DeviceOpenError("/dev/ttyFAKE is held by another program; close the serial monitor")


class FailsToOpenThread(ThreadedSubscriptionProducer):
    def _producer(self):
        raise DeviceOpenError("camera 7 does not exist")


class ExitsBeforeReady(ProcessSubscriptionProducer):
    def _producer(self):
        os._exit(3)


class ReturnsBeforeReady(ThreadedSubscriptionProducer):
    def _producer(self):
        return  # a video with no frame


class NeverReady(ProcessSubscriptionProducer):
    def _producer(self):
        self._wait_closed()


class NeverReadyThread(ThreadedSubscriptionProducer):
    def _producer(self):
        self._wait_closed()


class Lingers(ProcessSubscriptionProducer):
    """Returns at once, but a non-daemon thread keeps its process alive (a library that never lets go)."""

    def _producer(self):
        threading.Thread(target=time.sleep, args=(30,), daemon=False).start()
        self._setReady(True)


class StuckConsumer(ProcessSubscriptionConsumer):
    def _consumer(self):
        self._setReady(True)
        threading.Event().wait(60)  # a blocking device call that never checks for close


class ReportsItself(ProcessSubscriptionProducer):
    """Reports (closed, ready, error) as its worker sees them, before and after ready and after close."""

    _parent_only_attributes = frozenset({"parent_secret"})

    def __init__(self, **kwargs):
        self.shared = "crosses"
        self.parent_secret = "stays"
        super().__init__(**kwargs)

    def _producer(self):
        self._put_nowait(("start", self.closed, self.ready, self.error))
        self._setReady(True)
        self._put_nowait(("ready", self.closed, self.ready, self.error, self.shared, hasattr(self, "parent_secret")))
        self._wait_closed()
        try:
            self._put_nowait(("closed", self.closed, self.ready))
        except SubscriptionClosed:
            pass


class PollsClosed(ThreadedSubscriptionProducer):
    def _producer(self):
        self._setReady(True)
        while not self.closed:
            time.sleep(0.01)  # a device poll; the loop condition is what is tested


def _loop_errors(caplog):
    return [r for r in caplog.records if r.name == "asyncio" and r.levelno >= logging.ERROR]


# ------------------------------------------------------------------------------------- close from anywhere


@pytest.mark.parametrize("cls", [EndsAtOnce, EndsAtOnceThread])
def test_close_from_an_executor_while_the_worker_ends_by_itself_never_raises(cls, caplog, no_leaks):
    async def main():
        loop = asyncio.get_running_loop()
        for _ in range(8):
            obj = cls()
            closes: list = []
            obj.onClose(closes.append)
            await loop.run_in_executor(None, obj.close)
            assert obj.closed
            await asyncio.wait_for(obj.onClose(), 5)
            await asyncio.sleep(0)
            assert closes == [None]
            obj.close()  # again, from the loop
            assert closes == [None]
            if isinstance(obj, ProcessSubscriptionProducer):
                assert obj._process is None  # reaped

    run(main(), timeout=60)
    assert not _loop_errors(caplog)


@pytest.mark.parametrize("cls", [Idle, NeverReadyThread])
def test_close_concurrently_from_threads_and_the_loop_closes_once(cls, caplog, no_leaks):
    async def main():
        obj = cls()
        closes = []
        obj.onClose(lambda: closes.append(1))
        errors = []
        start = threading.Barrier(4)

        def closer():
            start.wait(5)
            try:
                obj.close()
            except BaseException as e:  # the test reports it
                errors.append(e)

        threads = [threading.Thread(target=closer) for _ in range(3)]
        for t in threads:
            t.start()
        await asyncio.get_running_loop().run_in_executor(None, start.wait, 5)
        obj.close()
        for t in threads:
            await asyncio.get_running_loop().run_in_executor(None, t.join, 10)
        assert not errors
        assert obj.closed
        await asyncio.wait_for(obj.onClose(), 5)
        await asyncio.sleep(0)
        assert closes == [1]

    run(main(), timeout=60)
    assert not _loop_errors(caplog)


@pytest.mark.parametrize("cls", [Idle, NeverReadyThread])
def test_close_from_a_callback_on_the_loop(cls, no_leaks):
    async def main():
        obj = cls()
        fired = asyncio.Event()
        obj.onClose(fired.set)
        asyncio.get_running_loop().call_soon(obj.close)
        await asyncio.wait_for(fired.wait(), 5)
        assert obj.closed

    run(main())


def test_close_async_does_not_block_the_loop_on_a_stuck_worker(no_leaks):
    async def main():
        obj = StuckConsumer(joinTimeout=1.0)
        await asyncio.wait_for(obj.onReady(), 10)
        gaps = []

        async def ticker():
            last = time.monotonic()
            while True:
                await asyncio.sleep(0.02)
                now = time.monotonic()
                gaps.append(now - last)
                last = now

        tick = asyncio.ensure_future(ticker())
        try:
            await asyncio.wait_for(obj.close_async(), 10)
        finally:
            tick.cancel()
            with pytest.raises(asyncio.CancelledError):
                await tick
        assert obj.closed and obj._process is None
        assert max(gaps) < 0.5, f"the loop stalled for {max(gaps):.2f} s"

    run(main(), timeout=30)


def test_a_lingering_child_does_not_stall_the_loop(no_leaks):
    async def main():
        obj = Lingers(joinTimeout=2.0)
        closed = asyncio.Event()
        obj.onClose(closed.set)
        await asyncio.wait_for(obj.onReady(), 10)
        gaps = []
        last = time.monotonic()
        deadline = last + 10
        while not closed.is_set():  # the reaper joins (2 s), terminates, then closes the object
            await asyncio.sleep(0.02)  # ticking to measure the loop's responsiveness meanwhile
            now = time.monotonic()
            gaps.append(now - last)
            last = now
            assert now < deadline, "the lingering worker was never reaped"
        assert max(gaps) < 0.5, f"the loop stalled for {max(gaps):.2f} s"
        obj.close()
        assert obj._process is None

    run(main(), timeout=30)


# -------------------------------------------------------------------------------------- onReady never hangs


@pytest.mark.parametrize("cls", [FailsToOpen, FailsToOpenThread])
def test_on_ready_raises_the_error_of_a_worker_that_fails_before_ready(cls, no_leaks):
    async def main():
        obj = cls()
        with pytest.raises(DeviceOpenError):
            await asyncio.wait_for(obj.onReady(), 10)
        with pytest.raises(DeviceOpenError):  # and again, after the fact
            await asyncio.wait_for(obj.onReady(), 1)
        await asyncio.wait_for(obj.onClose(), 5)
        obj.close()

    run(main())


def test_on_ready_raises_worker_died_error_for_a_worker_that_exits_before_ready(no_leaks):
    async def main():
        obj = ExitsBeforeReady()
        with pytest.raises(WorkerDiedError):
            await asyncio.wait_for(obj.onReady(), 10)
        obj.close()

    run(main())


@pytest.mark.parametrize("cls", [ReturnsBeforeReady, NeverReady, NeverReadyThread])
def test_on_ready_raises_device_closed_error_when_closed_before_ready(cls, no_leaks):
    async def main():
        obj = cls()
        waiting = asyncio.ensure_future(obj.onReady())
        await asyncio.sleep(0)
        if not isinstance(obj, ReturnsBeforeReady):
            obj.close()
        with pytest.raises(DeviceClosedError):
            await asyncio.wait_for(waiting, 10)
        obj.close()

    run(main())


def test_on_ready_after_close_never_answers_true(no_leaks):
    async def main():
        obj = NeverReadyThread()
        obj._setReady(True)
        assert await obj.onReady() is True
        obj.close()
        assert not obj.ready
        with pytest.raises(DeviceClosedError):
            await obj.onReady()
        told = []
        obj.onReady(lambda value: told.append(value))
        await asyncio.sleep(0.05)
        assert told == []

    run(main())


def test_cancelling_an_await_on_ready_is_not_swallowed(no_leaks):
    async def main():
        obj = NeverReadyThread()
        try:
            task = asyncio.ensure_future(obj.onReady())
            await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        finally:
            obj.close()

    run(main())


# ------------------------------------------------------------------------------------- every waiter woken


def test_a_pending_get_ends_when_the_worker_dies(no_leaks):
    async def main():
        obj = NeverReady()
        pending = asyncio.ensure_future(obj.get())
        await asyncio.sleep(0.1)
        os.kill(obj._process.pid, 9)
        with pytest.raises(SubscriptionClosed):
            await asyncio.wait_for(pending, 5)
        assert isinstance(obj.error, WorkerDiedError)
        obj.close()

    run(main())


def test_a_pending_get_survives_unsubscribe_of_its_default_subscription():
    from rtcbot.base import SubscriptionProducer

    async def main():
        p = SubscriptionProducer()
        pending = asyncio.ensure_future(p.get())
        await asyncio.sleep(0)
        p.unsubscribe()  # the default subscription it waits on
        await asyncio.sleep(0)
        p.put_nowait("after")
        assert await asyncio.wait_for(pending, 1) == "after"
        pending = asyncio.ensure_future(p.get())
        await asyncio.sleep(0)
        p.close()
        with pytest.raises(SubscriptionClosed):
            await asyncio.wait_for(pending, 1)

    run(main())


# ---------------------------------------------------------------------------------- the worker side is whole


def test_a_process_worker_sees_closed_ready_and_error_and_only_what_crosses(no_leaks):
    async def main():
        obj = ReportsItself()
        items = obj.subscribe()
        assert await asyncio.wait_for(items.get(), 10) == ("start", False, False, None)
        assert await asyncio.wait_for(items.get(), 10) == ("ready", False, True, None, "crosses", False)
        assert obj.parent_secret == "stays"
        obj.close()

    run(main())


def test_a_threaded_worker_polling_closed_ends_promptly_after_close(caplog, no_leaks):
    async def main():
        obj = PollsClosed()
        await asyncio.wait_for(obj.onReady(), 5)
        started = time.monotonic()
        obj.close()
        assert time.monotonic() - started < 0.5
        assert obj._thread is not None and not obj._thread.is_alive()

    run(main())
    assert "did not stop" not in caplog.text


def test_only_the_subclass_state_and_the_logger_cross_into_the_worker(no_leaks):
    from rtcbot.base import ProcessSubscriptionProducerConsumer
    from rtcbot.base.process_state import worker_state

    async def main():
        for cls in (Idle, StuckConsumer, ProcessSubscriptionProducerConsumer, ReportsItself):
            obj = cls(joinTimeout=0.2)
            try:
                crossing = set(worker_state(obj))
                expected = {"_log"} | ({"shared"} if cls is ReportsItself else set())
                assert crossing == expected, cls.__name__
            finally:
                obj.close()

    run(main())


def test_cancelling_a_pending_get_is_not_swallowed():
    from rtcbot.base import SubscriptionConsumer, SubscriptionProducer

    async def main():
        for obj in (SubscriptionProducer(), SubscriptionConsumer()):
            task = asyncio.ensure_future(obj.get())
            await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            obj.close()

    run(main())


def test_on_ready_raises_the_error_even_when_the_worker_ended_before_the_loop_heard_of_it():
    # In a script of its own (as a user runs it): the loop is held while the worker fails and begins closing,
    # so the error and the close are still on their way to the loop when onReady() is awaited.
    script = textwrap.dedent(
        """
        import asyncio
        from tests.test_lifecycle import FailsToOpenThread

        async def main():
            obj = FailsToOpenThread()
            obj._thread.join(10)          # hold the loop until the worker has failed and begun closing
            assert obj.closed
            try:
                await obj.onReady()           # awaited at once (wait_for would first let the loop catch up)
            except Exception as e:
                print("onReady raised", type(e).__name__)
            await asyncio.wait_for(obj.onClose(), 5)

        asyncio.run(main())
        """
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=root,
        env=dict(os.environ, PYTHONPATH=root),
    )
    assert "onReady raised DeviceOpenError" in done.stdout, done.stdout + done.stderr
