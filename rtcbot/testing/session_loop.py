"""One event loop for a whole test session, running in its own thread, so devices opened once serve every
test (an rtcbot device belongs to the loop it was created on).

Tests run their async code on it with the ``rtcbot_run`` fixture instead of ``asyncio.run``::

    def test_board_answers(rtcbot_run, rtcbot_serial_board):
        async def main():
            readings = rtcbot_serial_board.readings()
            return await asyncio.wait_for(readings.get(), 5)

        reading = rtcbot_run(main())

Because the loop keeps running between tests, the devices' worker threads always have a loop to deliver to:
nothing piles up while pytest collects reports.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from typing import Any, Awaitable, Callable, Optional, TypeVar

__all__ = ["SessionLoop"]

logger = logging.getLogger("rtcbot.testing.session_loop")

T = TypeVar("T")

_CLOSE_TIMEOUT = 10.0  # seconds the loop thread may take to finish its last tasks at close


class SessionLoop:
    """An asyncio loop in a daemon thread; :meth:`run` runs a coroutine on it and waits, with a timeout::

    with SessionLoop() as loop:
        assert loop.run(asyncio.sleep(0, "done")) == "done"
    """

    def __init__(self, name: str = "rtcbot-testing-loop") -> None:
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._closed = False
        self._thread.start()
        self._started.wait()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def on_loop_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.call_soon(self._started.set)
        try:
            self._loop.run_forever()
        finally:
            try:
                self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            finally:
                self._loop.close()

    def run(self, awaitable: Awaitable[T], timeout: Optional[float] = 60.0) -> T:
        """Run ``awaitable`` on the loop and return its result (its exception is raised here). After
        ``timeout`` seconds it is cancelled and TimeoutError is raised, saying so."""
        if self._closed:
            raise RuntimeError("the rtcbot test session loop is closed")
        if self.on_loop_thread():
            raise RuntimeError(
                "rtcbot_run (or a fixture that opens a device) was called inside a coroutine running on the "
                "session loop: it would wait for itself. Await the coroutine instead, or open the device in "
                "the test function before rtcbot_run"
            )

        async def wrapper() -> T:
            return await awaitable

        future = asyncio.run_coroutine_threadsafe(wrapper(), self._loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            try:
                future.result(5.0)  # let it unwind (finally blocks, device closes) before the next test
            except (concurrent.futures.CancelledError, concurrent.futures.TimeoutError):
                pass
            raise TimeoutError(f"the test's coroutine did not finish within {timeout} s") from None

    def call(self, fn: Callable[..., T], *args: Any, timeout: Optional[float] = 60.0) -> T:
        """Call ``fn(*args)`` on the loop thread (creating or closing a device there) and return its result."""
        if self.on_loop_thread():
            return fn(*args)

        async def call_it() -> T:
            return fn(*args)

        return self.run(call_it(), timeout)

    def close(self) -> None:
        """Cancel what still runs on the loop, stop it and join its thread. Idempotent."""
        if self._closed:
            return
        self._closed = True

        async def cancel_rest() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            asyncio.run_coroutine_threadsafe(cancel_rest(), self._loop).result(_CLOSE_TIMEOUT)
        except (concurrent.futures.TimeoutError, RuntimeError) as e:
            logger.warning("rtcbot test loop: tasks did not end at close (%s)", e)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(_CLOSE_TIMEOUT)
        if self._thread.is_alive():
            logger.warning("rtcbot test loop thread did not stop within %s s", _CLOSE_TIMEOUT)

    def __enter__(self) -> SessionLoop:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
