"""Subscription types: the objects that carry items from a producer to whoever reads them.

A subscription has ``put_nowait(item)`` (the producer side) and/or ``async get()`` (the reader side). Any
``asyncio.Queue`` is one; the classes here add the policies robots need::

    frames = camera.subscribe(MostRecentSubscription())   # a slow reader always gets the newest frame
    audio = mic.subscribe(BoundedQueue(8))                # never more than 8 blocks behind, oldest dropped
    blocks = mic.subscribe(RebatchSubscription(480))      # 10 ms blocks at 48 kHz, whatever the mic's size
"""
from __future__ import annotations

import asyncio
import collections
import inspect
import logging
from typing import Any, Awaitable, Callable, Deque, Optional, Set

logger = logging.getLogger("rtcbot.subscriptions")

__all__ = [
    "BoundedQueue",
    "CallbackSubscription",
    "DelayedSubscription",
    "EventSubscription",
    "GetterSubscription",
    "MostRecentSubscription",
    "RebatchSubscription",
]


class _Waiter:
    """One pending ``get()`` at a time, woken by ``put_nowait``. Shared by the queue-like subscriptions."""

    __slots__ = ("_future",)

    def __init__(self) -> None:
        self._future: Optional[asyncio.Future] = None

    def wake(self) -> None:
        f = self._future
        if f is not None and not f.done():
            f.set_result(None)

    async def wait(self) -> None:
        f = asyncio.get_running_loop().create_future()
        self._future = f
        try:
            await f
        finally:
            self._future = None


class MostRecentSubscription:
    """Keeps only the newest item: ``get()`` returns it, or waits for the next one.

    A reader slower than the producer never sees a stale item and memory never grows; items it was too
    slow for are skipped (and counted in ``dropped``)::

        s = camera.subscribe(MostRecentSubscription())
        while True:
            frame = await s.get()     # always the latest frame
    """

    def __init__(self) -> None:
        self._item: Any = None
        self._has_item = False
        self._waiter = _Waiter()
        self.dropped = 0

    def put_nowait(self, item: Any) -> None:
        if self._has_item:
            self.dropped += 1
        self._item = item
        self._has_item = True
        self._waiter.wake()

    def get_nowait(self) -> Any:
        if not self._has_item:
            raise asyncio.QueueEmpty
        item, self._item, self._has_item = self._item, None, False
        return item

    def qsize(self) -> int:
        return int(self._has_item)

    def empty(self) -> bool:
        return not self._has_item

    async def get(self) -> Any:
        while not self._has_item:
            await self._waiter.wait()
        return self.get_nowait()


class BoundedQueue:
    """A queue that never holds more than ``maxsize`` items; a full queue drops one, never blocks.

    ``overflow="drop-oldest"`` (default) keeps the newest items, right for audio and sensor streams where
    catching up matters; ``overflow="drop-newest"`` keeps what is already queued, right for commands that
    must stay in order. ``dropped`` counts what was lost::

        s = mic.subscribe(BoundedQueue(8))
        block = await s.get()
    """

    _POLICIES = ("drop-oldest", "drop-newest")

    def __init__(self, maxsize: int = 16, overflow: str = "drop-oldest") -> None:
        if not isinstance(maxsize, int) or maxsize < 1:
            raise ValueError(f"BoundedQueue maxsize must be a positive int, got {maxsize!r}")
        if overflow not in self._POLICIES:
            raise ValueError(f"BoundedQueue overflow must be one of {self._POLICIES}, got {overflow!r}")
        self.maxsize = maxsize
        self.overflow = overflow
        self._items: Deque[Any] = collections.deque()
        self._waiter = _Waiter()
        self.dropped = 0

    def put_nowait(self, item: Any) -> None:
        if len(self._items) >= self.maxsize:
            self.dropped += 1
            if self.overflow == "drop-newest":
                return
            self._items.popleft()
        self._items.append(item)
        self._waiter.wake()

    def get_nowait(self) -> Any:
        if not self._items:
            raise asyncio.QueueEmpty
        return self._items.popleft()

    def qsize(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        return not self._items

    def full(self) -> bool:
        return len(self._items) >= self.maxsize

    async def get(self) -> Any:
        while not self._items:
            await self._waiter.wait()
        return self._items.popleft()


class EventSubscription:
    """Fires once: the first ``put_nowait(value)`` sets the value, and ``get()`` (or awaiting the
    subscription itself) returns it, immediately if it was already set::

        ready = EventSubscription()
        producer.onReady(ready)
        await ready
    """

    def __init__(self) -> None:
        self._value: Any = None
        self._fired = False
        self._waiter = _Waiter()

    @property
    def fired(self) -> bool:
        return self._fired

    def put_nowait(self, value: Any = None) -> None:
        if self._fired:
            return
        self._value = value
        self._fired = True
        self._waiter.wake()

    async def get(self) -> Any:
        while not self._fired:
            await self._waiter.wait()
        return self._value

    def __await__(self):
        return self.get().__await__()


class CallbackSubscription:
    """Calls ``callback(item)`` for each item; a coroutine function gets a task per item.

    By default the call is scheduled with ``loop.call_soon`` so the producer is never stalled by it;
    ``runDirect=True`` calls it inside ``put_nowait``. An exception raised by the callback is logged with
    its traceback and does not stop the producer::

        @camera.subscribe
        def show(frame):
            print(frame.shape)
    """

    def __init__(
        self,
        callback: Callable[[Any], Any],
        loop: Optional[asyncio.AbstractEventLoop] = None,
        runDirect: bool = False,
        owner: Optional[str] = None,
    ) -> None:
        if not callable(callback):
            raise TypeError(f"CallbackSubscription needs a callable, got {type(callback).__name__}")
        self.callback = callback
        # Who calls it, for the log when it raises ("SimCamera subscriber", "SimCamera.onError callback").
        self.owner = owner or "subscriber callback"
        self._loop = loop
        self._run_direct = runDirect
        self._is_coroutine = inspect.iscoroutinefunction(callback) or inspect.iscoroutinefunction(
            type(callback).__call__  # an object whose __call__ is async
        )
        self._tasks: Set[asyncio.Task] = set()

    def _loop_now(self) -> Optional[asyncio.AbstractEventLoop]:
        try:
            return asyncio.get_running_loop()
        except RuntimeError:
            return self._loop

    def put_nowait(self, item: Any) -> None:
        if self._is_coroutine:
            loop = self._loop_now()
            if loop is None:
                raise RuntimeError(
                    f"{self.owner} {self._name()} is a coroutine and got an item with no event loop to run it on"
                )
            task = loop.create_task(self.callback(item))
            self._tasks.add(task)
            task.add_done_callback(self._task_done)
        elif self._run_direct:
            self._call(item)
        else:
            loop = self._loop_now()
            if loop is None:
                self._call(item)
            else:
                loop.call_soon(self._call, item)

    def _name(self) -> str:
        return getattr(self.callback, "__qualname__", None) or repr(self.callback)

    def _call(self, item: Any) -> None:
        try:
            self.callback(item)
        except Exception:
            logger.exception("%s %s raised; it is still called for what comes next", self.owner, self._name())

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        err = task.exception()
        if err is not None and not isinstance(err, asyncio.CancelledError):
            logger.error(
                "%s %s (a coroutine) raised; it is still called for what comes next",
                self.owner,
                self._name(),
                exc_info=(type(err), err, err.__traceback__),
            )

    def close(self) -> None:
        """Cancels coroutine callbacks still running (called when the producer drops this subscription)."""
        for task in list(self._tasks):
            task.cancel()


class GetterSubscription:
    """A subscription whose ``get()`` awaits ``callback()``: adapts any async source to a consumer::

        consumer.putSubscription(GetterSubscription(read_next_command))
    """

    def __init__(self, callback: Callable[[], Awaitable[Any]]) -> None:
        self._callback = callback

    async def get(self) -> Any:
        return await self._callback()


class DelayedSubscription:
    """Subscribes to ``SubscriptionWriter`` only when ``get()`` is first called, so nothing queues up before
    anyone reads; ``unsubscribe()`` undoes it::

        s = DelayedSubscription(camera)          # nothing subscribed yet
        display.putSubscription(s)               # subscribes when the display first reads
    """

    def __init__(self, SubscriptionWriter: Any, subscription: Any = None) -> None:
        self.SubscriptionWriter = SubscriptionWriter
        self.subscription = subscription
        self._is_subscribed = False

    def unsubscribe(self) -> None:
        if self._is_subscribed:
            self.SubscriptionWriter.unsubscribe(self.subscription)
        self._is_subscribed = False

    async def get(self) -> Any:
        if not self._is_subscribed:
            self.subscription = self.SubscriptionWriter.subscribe(self.subscription)
            self._is_subscribed = True
        return await self.subscription.get()


class RebatchSubscription:
    """Re-chunks numpy blocks to exactly ``samples`` along ``axis``.

    Blocks of the right size pass through untouched (the same object); others are joined and split, and a
    remainder waits for the next block::

        s = mic.subscribe(RebatchSubscription(480))    # 1024-sample blocks in, 480-sample blocks out
        block = await s.get()                         # shape (480, channels)
    """

    def __init__(self, samples: int, axis: int = 0, subscription: Any = None) -> None:
        if not isinstance(samples, int) or samples < 1:
            raise ValueError(f"RebatchSubscription samples must be a positive int, got {samples!r}")
        self.samples = samples
        self.axis = axis
        self.subscription = asyncio.Queue() if subscription is None else subscription
        self._pending: Any = None

    def put_nowait(self, block: Any) -> None:
        import numpy as np

        block = np.asarray(block)
        n = self.samples
        if self._pending is None:
            if block.shape[self.axis] == n:
                self.subscription.put_nowait(block)
                return
            data = block
        else:
            data = np.concatenate((self._pending, block), axis=self.axis)
            self._pending = None
        total = data.shape[self.axis]
        full = total - total % n
        for start in range(0, full, n):
            self.subscription.put_nowait(data.take(range(start, start + n), axis=self.axis))
        if full < total:
            self._pending = data.take(range(full, total), axis=self.axis)

    async def get(self) -> Any:
        return await self.subscription.get()

    def get_nowait(self) -> Any:
        return self.subscription.get_nowait()
