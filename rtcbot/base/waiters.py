"""Futures that callers await until something happens, all ended when their owner closes.

Every object that hands out something awaitable (a port-state wait, a counters report, a pending ``get()``)
keeps its futures here, so that one call from ``close()`` (or from the handler of a dead worker) ends them all
and no ``await`` is left pending for ever::

    class Board:
        def __init__(self):
            self._port_waiters = Waiters("Board.wait_port")

        async def wait_port(self, present=True):
            return await self._port_waiters.wait(key=present)

        def _on_status(self, connected):            # on the event loop
            self._port_waiters.wake(connected, key=connected)

        def close(self):                             # from any thread
            self._port_waiters.fail_all(DeviceClosedError("Board is closed"))

Waiters may be woken or failed from any thread: a future is always settled on its own event loop.
"""
from __future__ import annotations

import asyncio
import functools
import threading
from typing import Any, Callable, List, Optional, Tuple

__all__ = ["Waiters"]

_ANY = object()


def _settle(future: asyncio.Future, settle: Callable[[], None]) -> None:
    """Run ``settle`` (which completes ``future``) on the future's loop, whatever thread calls this."""
    loop = future.get_loop()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        if not future.done():
            settle()
        return

    def settle_if_pending() -> None:
        if not future.done():
            settle()

    try:
        loop.call_soon_threadsafe(settle_if_pending)
    except RuntimeError:  # its loop is closed: nobody can be awaiting it any more
        pass


class Waiters:
    """A set of futures, each waiting for a key (or for anything), woken by ``wake`` and failed by
    ``fail_all``. After ``fail_all``, every later ``wait()`` raises the same error at once."""

    def __init__(self, name: str = "waiters") -> None:
        self._name = name
        self._lock = threading.Lock()
        self._pending: List[Tuple[Any, asyncio.Future]] = []
        self._failure: Optional[BaseException] = None

    @property
    def failure(self) -> Optional[BaseException]:
        """The error given to ``fail_all``, or None while waiting is still possible."""
        return self._failure

    def __len__(self) -> int:
        with self._lock:
            return sum(1 for _, future in self._pending if not future.done())

    def new(self, key: Any = _ANY) -> asyncio.Future:
        """A future on the running loop, completed by ``wake(value, key)`` (any key when none is given)."""
        future = asyncio.get_running_loop().create_future()
        with self._lock:
            failure = self._failure
            if failure is None:
                self._pending.append((key, future))
        if failure is not None:
            future.set_exception(failure)
        return future

    async def wait(self, key: Any = _ANY) -> Any:
        """Wait until ``wake`` is called for ``key`` (returning its value), or raise what ``fail_all`` got."""
        future = self.new(key)
        try:
            return await future
        finally:
            self._forget(future)

    def _forget(self, future: asyncio.Future) -> None:
        with self._lock:
            self._pending = [(k, f) for k, f in self._pending if f is not future]

    def wake(self, value: Any = None, key: Any = _ANY) -> int:
        """Complete the futures waiting for ``key`` (all of them when no key is given); returns how many."""
        with self._lock:
            woken = [f for k, f in self._pending if key is _ANY or k is _ANY or k == key]
            self._pending = [(k, f) for k, f in self._pending if not any(f is w for w in woken)]
        for future in woken:
            _settle(future, functools.partial(future.set_result, value))
        return len(woken)

    def fail_all(self, error: BaseException) -> None:
        """Fail every pending future with ``error``, and every later ``wait()`` too. Safe from any thread,
        any number of times (the first error is kept)."""
        with self._lock:
            if self._failure is None:
                self._failure = error
            error = self._failure
            pending, self._pending = self._pending, []
        for _, future in pending:
            _settle(future, functools.partial(future.set_exception, error))

    def __repr__(self) -> str:
        state = "failed" if self._failure is not None else f"{len(self)} waiting"
        return f"<Waiters {self._name}: {state}>"
