"""Pieces shared by the threaded and process flavours: starting the worker once construction is complete
(:class:`StartsWorkerMeta`), closing what a script left open when it exits (:func:`close_live_workers`), and
handing items from worker threads to the event loop (:class:`LoopHandoff`)."""
from __future__ import annotations

import asyncio
import atexit
import collections
import itertools
import logging
import multiprocessing.process
import multiprocessing.util  # noqa: F401 - registers its exit handler before ours (see below)
import os
import threading
import time
import weakref
from typing import Any, Callable, Deque, Optional

from .loop_wake import LoopWake

__all__ = ["EXIT_MAIN_NOT_GUARDED", "LoopHandoff", "StartsWorkerMeta", "close_live_workers"]

logger = logging.getLogger("rtcbot.base.worker")

# Every object whose worker is running, by creation order, so a script that exits without closing them
# (no `with`, an exception, Ctrl+C through a classic run_forever()) still stops its workers cleanly: worker
# processes joined, shared memory unlinked, instead of being terminated by multiprocessing's own exit
# handler and leaving resource-tracker warnings on stderr.
_live: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()
_order = itertools.count()
_live_pid = os.getpid()


def close_live_workers() -> None:
    """Close every producer/consumer of this process whose worker still runs (or is still being closed),
    newest first.

    Runs at interpreter exit (registered with ``atexit`` after multiprocessing's own exit handler, so it
    runs before it); safe to call at any time. An object that fails to close is logged, never raised.
    """
    if os.getpid() != _live_pid:
        return  # a forked copy of the registry: those objects belong to the parent
    for key in sorted(_live.keys(), reverse=True):
        obj = _live.pop(key, None)
        if obj is None:
            continue
        life = getattr(obj, "_life", None)
        if life is not None and life.is_closed:
            continue  # done; one still closing (a reaper joining its worker) is waited for by close()
        try:
            obj.close()
        except Exception:
            logger.exception("closing %s at exit failed", type(obj).__name__)


def _forget_live_workers_after_fork() -> None:
    global _live_pid
    _live.clear()
    _live_pid = os.getpid()


# multiprocessing.util, imported above, has registered its exit handler already: this one runs before it.
atexit.register(close_live_workers)
os.register_at_fork(after_in_child=_forget_live_workers_after_fork)


EXIT_MAIN_NOT_GUARDED = 87
"""Exit code of a worker process that stopped because the script it re-imported creates devices at module
level (no ``if __name__ == "__main__":`` guard); the parent then stops the script with one short message."""


def _in_bootstrapping_child() -> bool:
    """True while a spawn/forkserver child imports the main script (multiprocessing's own check for the
    "bootstrapping phase" error uses the same flag)."""
    return bool(getattr(multiprocessing.process.current_process(), "_inheriting", False))


class StartsWorkerMeta(type):
    """The metaclass of the threaded and process flavours: construction happens in one visible place.

    ``Cls(...)`` runs ``__init__`` (the whole chain, so a subclass may set attributes before or after
    ``super().__init__()`` and its worker sees them all), then starts the worker with
    ``obj._start_worker()``. An ``__init__`` that raises leaves nothing running; a worker that fails to
    start closes the object (releasing what ``__init__`` opened) before the error is raised.

    In a spawn/forkserver child that is importing the main script again, constructing a device means the
    script has no ``if __name__ == "__main__":`` guard: the child exits at once with
    :data:`EXIT_MAIN_NOT_GUARDED`, and the parent stops the script with one message saying what to add.
    """

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        if _in_bootstrapping_child():
            os._exit(EXIT_MAIN_NOT_GUARDED)
        obj = super().__call__(*args, **kwargs)
        if obj._shouldClose:  # its __init__ closed it already
            return obj
        try:
            obj._start_worker()
        except BaseException:
            obj.close()  # release what __init__ set up (onClose listeners run), then report why
            raise
        _live[next(_order)] = obj
        return obj


StartsWorkerAfterInit = StartsWorkerMeta  # the former name, kept for code that imported it


class LoopHandoff:
    """Moves items from other threads to the event loop, in order, waking the loop once per batch.

    While the loop is busy, items pile up and are delivered together by one callback; when items are
    sparse each one wakes the loop at once. At most ``limit`` items wait: then ``put`` blocks until the loop
    catches up (``block=True``, nothing is lost) or drops the oldest waiting item (``block=False``, counted
    in ``dropped``)::

        handoff = LoopHandoff(loop, deliver=producer_fan_out)
        handoff.start()     # on the loop's thread: wake it through an eventfd (Linux, Python 3.10+)
        handoff.put(item)   # from any thread
        handoff.close()     # on the loop's thread, once the owner closed: releases the eventfd

    Without ``start()`` (and after ``close()``) wakes go through ``call_soon_threadsafe``; with it, through a
    :class:`~rtcbot.base.loop_wake.LoopWake`, which costs the loop about half the CPU per wake-up.

    A writer that produces as fast as it can (a video file decoded unpaced) may set ``batching = True``:
    an item that comes less than ``batch_gap`` seconds (2 ms) after the previous one then waits without
    waking the loop, until ``limit`` items wait or a ``call`` (ready, error, close) follows it. Each wake-up
    of the loop costs both threads CPU (a write, an ``epoll_wait`` return, a thread switch), so at
    thousands of items/s waking once per ``limit`` items saves a large share of it; the price is that an
    item may wait for the next one, about one gap. While deliveries go on, the loop also looks for held
    items every ``held_check`` seconds (10 ms), so a writer that stalls, or waits for the loop to have seen
    its last item, cannot leave one behind: an item never waits longer than that. (A check every 10 ms
    costs the loop far less than a timer re-armed at every delivery.) Items further apart than
    ``batch_gap`` wake the loop each, as without batching (the wake-up is then a small share of the work
    per item)::

        handoff.batching = True   # fast items delivered in groups of `limit`
    """

    batch_gap = 0.002  # seconds: with batching, an item closer than this to the previous one may wait
    held_check = 0.01  # seconds: with batching, how often the loop delivers what a writer holds

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        deliver: Callable[[Any], None],
        limit: int = 1024,
        block: bool = True,
    ) -> None:
        self._loop = loop
        self._deliver = deliver
        self._limit = limit
        self._block = block
        self._items: Deque[Any] = collections.deque()
        self._lock = threading.Lock()
        self._drained = threading.Condition(self._lock)
        self._scheduled = False
        self._stopped = False
        self.dropped = 0
        self.batching = False
        self._delivered = False  # a drain ran since the last check for held items
        self._last_put = 0.0  # time.monotonic() of the previous put, kept while batching
        self._held_timer: Optional[asyncio.TimerHandle] = None  # delivers what batching held, at the latest
        self._writers_waiting = 0  # notifying a Condition nobody waits on still costs a Python call
        self._wake = LoopWake(loop, self._drain)  # call_soon_threadsafe until start()

    def put(self, item: Any) -> None:
        with self._lock:
            if len(self._items) >= self._limit and type(item) is not _Call:
                if self._block:
                    self._writers_waiting += 1
                    try:
                        while len(self._items) >= self._limit and not self._stopped:
                            self._drained.wait()
                    finally:
                        self._writers_waiting -= 1
                else:
                    self._drop_oldest_item()
            self._items.append(item)
            if self.batching and type(item) is not _Call:
                now = time.monotonic()
                close_behind = now - self._last_put < self.batch_gap
                self._last_put = now
                if close_behind and not self._scheduled and len(self._items) < self._limit:
                    return  # the writer's next item (or its next call) wakes the loop for both
            if self._scheduled:
                return
            self._scheduled = True
        try:
            self._wake.wake()
        except RuntimeError:  # the loop is closed: nobody will ever read these
            with self._lock:
                self._items.clear()
                self._scheduled = False

    def stop(self) -> None:
        """Stop making writers wait (on close): items still go in, but nobody blocks for the loop any more."""
        with self._lock:
            self._stopped = True
            self._drained.notify_all()

    def start(self) -> None:
        """Wake the loop through an eventfd it watches, where the platform has one (see
        :class:`~rtcbot.base.loop_wake.LoopWake`): about half the loop's CPU per wake-up. Call it on the loop's
        thread (or before the loop runs) before writers start; :meth:`close` releases it. Without it, wakes
        go through ``call_soon_threadsafe``."""
        self._wake.start()

    def close(self) -> None:
        """Release the loop wake-up (its eventfd) once the owner has closed, on the loop's thread or once
        the loop is closed. Never raises; items and calls put later are still delivered (through
        ``call_soon_threadsafe``), so a late writer loses nothing."""
        self.batching = False  # what comes later wakes the loop at once: no check timer outlives the owner
        timer = self._held_timer
        if timer is not None:
            self._held_timer = None
            timer.cancel()
        self._wake.close()

    def _drop_oldest_item(self) -> None:
        # Only data is dropped; calls (ready, error, close) always reach the loop.
        for index, old in enumerate(self._items):
            if type(old) is not _Call:
                del self._items[index]
                self.dropped += 1
                return

    def call(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the loop after every item put before it (keeps events in order with items)."""
        self.put(_Call(fn, args))

    def _drain(self) -> None:
        with self._lock:
            batch = self._items
            self._items = collections.deque()
            self._scheduled = False
            if self._writers_waiting:
                self._drained.notify_all()
        if self.batching:
            self._delivered = True
            if self._held_timer is None:
                # The loop is awake now: arming the check here costs no extra wake-up.
                self._held_timer = self._loop.call_later(self.held_check, self._check_held)
        deliver = self._deliver
        for item in batch:
            if type(item) is _Call:
                item.fn(*item.args)
            else:
                deliver(item)

    def _check_held(self) -> None:
        # While deliveries go on, this runs every held_check seconds: whatever the writer holds goes now.
        self._held_timer = None
        with self._lock:
            held = bool(self._items) and not self._scheduled  # a scheduled drain delivers them anyway
        if held:
            self._drain()  # arms the next check
        elif self._delivered:
            self._delivered = False
            self._held_timer = self._loop.call_later(self.held_check, self._check_held)


class _Call:
    __slots__ = ("fn", "args")

    def __init__(self, fn: Callable[..., Any], args: tuple) -> None:
        self.fn = fn
        self.args = args
