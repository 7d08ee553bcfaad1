"""Threaded producers and consumers: the device loop runs in its own thread, off the event loop.

Subclass and implement ``_producer()`` (or ``_consumer()``); it runs in a worker thread started once your
``__init__`` has returned::

    class Clock(ThreadedSubscriptionProducer):
        def _producer(self):
            self._setReady(True)
            while not self._wait_closed(timeout=1.0):   # wakes at once on close()
                self._put_nowait(time.time())

    with Clock() as clock:
        print(await clock.get())

``close()`` may be called from any thread, any number of times (it waits up to ``joinTimeout`` for the
worker); ``await obj.close_async()`` closes without blocking the event loop. A worker that returns or raises
closes the object after the items it put; no thread is ever joined inside a loop callback.

Hooks for subclasses (the names are kept; use these, not other attributes):

- in the worker thread: ``_producer()``/``_consumer()`` (override), ``_put_nowait(item)``, ``_get()``
  (consumer: blocking), ``_setReady(value)``, ``_setError(err)``, ``_close()``, ``_wait_closed(timeout)``,
  ``self.closed`` (``while not self.closed:`` ends promptly after ``close()``);
- on the loop: ``_closeNow()`` (the loop-side close, runs once; extend it, calling super, to wake your own
  waiters), ``_onLoopThread()``, ``_handoff.call(fn, *args)`` (run ``fn`` on the loop after the items put);
- class settings: ``joinTimeout``, ``_handoff_block``, ``_handoff_limit``;
- ``_set_handoff_batching(True)`` (in ``__init__``, or in the worker): items that follow each other within
  2 ms wait for the loop in groups of ``_handoff_limit`` (or until the next ready/error/close, 10 ms at
  most) instead of each waking it, for a worker that produces as fast as it can (see
  :class:`~rtcbot.base.worker.LoopHandoff`).

The worker's items wake the loop through an eventfd it watches where the platform has one (Linux, Python
3.10+; :class:`~rtcbot.base.loop_wake.LoopWake`), opened when the worker starts and closed by the loop-side
close.
"""
from __future__ import annotations

import asyncio
import logging
import queue
import threading
from typing import Any, Callable, Optional

from .base import NOT_READY, BaseSubscriptionConsumer, BaseSubscriptionProducer, SubscriptionClosed
from .events import threadedEventHandler
from .worker import LoopHandoff, StartsWorkerMeta

__all__ = ["ThreadedSubscriptionConsumer", "ThreadedSubscriptionProducer"]

_CLOSED = object()


class _ThreadedWorker(threadedEventHandler, metaclass=StartsWorkerMeta):
    """The worker-thread lifetime shared by threaded producers and consumers.

    One :class:`~rtcbot.base.lifecycle.Lifecycle` owns it. Whoever begins closing first (a user's
    ``close()`` from any thread, ``_close()`` from the worker or the loop, or the worker returning by itself)
    does the teardown; a later ``close()`` waits for it (bounded). The loop-side part (unsubscribing, waking
    pending gets, firing onClose) runs once, on the event loop, after the items the worker put before it.
    No thread is ever joined inside a loop callback.
    """

    joinTimeout = 1.0  # seconds close() waits for the worker before abandoning it with a warning
    # When the event loop falls behind by more than the hand-off's limit, the worker's _put_nowait waits
    # (True, nothing lost) or the oldest waiting item is dropped (False: right for a camera).
    _handoff_block = True
    _handoff_limit = 1024  # items waiting for the loop at most (a camera wants only a couple of frames)
    _thread: Optional[threading.Thread] = None
    _worker_ident: Optional[int] = None
    _close_requested: Optional[threading.Event] = None
    _finish_when_worker_ends = False  # _close() began closing: the worker's end finishes it
    _worker_returning = False  # the worker thread is in its last lines

    def _init_worker(
        self,
        loop: Optional[asyncio.AbstractEventLoop],
        daemonThread: bool,
        deliver: Callable[[Any], None] = lambda item: None,
    ) -> None:
        self._bind_loop(loop)
        self._daemon_thread = daemonThread
        self._close_requested = threading.Event()
        self._handoff = LoopHandoff(self._loop, deliver, limit=self._handoff_limit, block=self._handoff_block)
        self._handoff_put = self._handoff.put

    def _set_handoff_batching(self, enabled: bool) -> None:
        """Hand items that come less than 2 ms apart to the loop in groups of ``_handoff_limit`` (True), or
        each at once (False, the default). Batching halves the loop's wake-ups or better for a worker that
        never pauses long between items (an unpaced video file); such an item may wait for the next one, so
        leave it off for live sources."""
        self._handoff.batching = enabled

    def _start_worker(self) -> None:
        self._handoff.start()  # its eventfd: released by the loop-side close
        self._thread = threading.Thread(
            target=self._run_worker, name=f"rtcbot-{type(self).__name__}", daemon=self._daemon_thread
        )
        self._thread.start()
        if self._life is not None:
            self._life.running()

    def _worker_main(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _run_worker(self) -> None:
        self._worker_ident = threading.get_ident()
        try:
            self._worker_main()
        except SubscriptionClosed:
            pass
        except Exception as e:
            self._log.error("%s: worker thread failed: %s", type(self).__name__, e, exc_info=True)
            self._handoff.call(self._set_error_now, e)
        finally:
            self._worker_finished()

    def _worker_finished(self) -> None:
        """The worker thread's last act: the object closes after the items it put (no join needed)."""
        self._worker_returning = True
        self._request_stop()
        life = self._life
        assert life is not None
        if life.begin_close():
            self._post_loop_side()
            life.finish_close()
        elif self._finish_when_worker_ends:
            life.finish_close()

    def _on_worker_thread(self) -> bool:
        return threading.get_ident() == self._worker_ident

    def _wait_closed(self, timeout: Optional[float] = None) -> bool:
        """Block the worker until close() was called (True) or ``timeout`` seconds passed (False)."""
        event = self._close_requested
        return True if event is None else event.wait(timeout)

    def _in_order(self, fn: Any, *args: Any) -> None:
        # From the worker, events travel with the items so they arrive in the order they happened.
        if self._onLoopThread():
            fn(*args)
        else:
            self._handoff.call(fn, *args)

    def _setReady(self, value: bool = True) -> None:
        self._in_order(self._set_ready_now, value)

    def _setError(self, err: BaseException) -> None:
        self._in_order(self._set_error_now, err)

    def _close(self) -> None:
        """Close from inside the worker (or the loop) without waiting for the worker: the object closes
        (onClose fires) after the items already put, and the worker's end finishes the teardown."""
        self._request_stop()
        life = self._life
        if life is None:
            return
        if life.begin_close():
            thread = self._thread
            if thread is None or not thread.is_alive():
                self._post_loop_side()
                life.finish_close()
                return
            self._finish_when_worker_ends = True
            self._post_loop_side()

    def _request_stop(self) -> None:
        self._shouldClose = True
        if self._close_requested is not None:
            self._close_requested.set()
            self._handoff.stop()

    def _post_loop_side(self) -> None:
        """Run the loop-side close on the loop, after the items the worker put (inline if no loop runs)."""
        if self._onLoopThread():
            self._close_loop_side()
            return
        handoff = getattr(self, "_handoff", None)
        if handoff is not None:
            handoff.call(self._close_loop_side)
        else:
            self._call_on_loop(self._close_loop_side)
        if self._loop.is_closed():  # nobody will run it: close in place
            self._close_loop_side()

    def _close_loop_side(self, _deadline: Optional[float] = None) -> None:
        thread = self._thread
        if (
            thread is not None
            and thread.is_alive()
            and self._on_worker_thread_ending()
            and self._loop.is_running()
            and self._onLoopThread()
        ):
            # The worker posted this as its last act and is returning: fire onClose once it is gone, checking
            # again shortly rather than joining it inside a loop callback.
            now = self._loop.time()
            deadline = now + self.joinTimeout if _deadline is None else _deadline
            if now < deadline:
                self._loop.call_later(0.001, self._close_loop_side, deadline)
                return
        life = self._life
        if life is None or life.claim_loop_side():
            try:
                self._closeNow()
            finally:
                handoff = getattr(self, "_handoff", None)
                if handoff is not None:
                    handoff.close()  # its loop wake-up (an eventfd); anything put later still arrives

    def _on_worker_thread_ending(self) -> bool:
        return self._worker_returning

    def _closeNow(self) -> None:  # pragma: no cover - overridden
        """The loop-side close (unsubscribe, wake pending gets, fire onClose); runs once. Devices may extend
        it (call super) to wake their own waiters."""
        raise NotImplementedError

    def close(self) -> None:
        """Stops the worker thread and closes the object; safe from any thread, any number of times, at any
        moment. Waits up to ``joinTimeout`` seconds for the thread; a thread stuck in a blocking device call is
        abandoned with a warning (it is a daemon thread). From an async function prefer
        ``await obj.close_async()``, which waits without blocking the event loop."""
        life = self._life
        if life is None:  # half-constructed: nothing started
            self._shouldClose = True
            return
        if self._on_worker_thread():  # the worker cannot wait for itself
            self._close()
            return
        first = life.begin_close()
        self._request_stop()
        thread = self._thread
        if first:
            if thread is not None and thread.is_alive():
                thread.join(self.joinTimeout)
                if thread.is_alive():
                    self._log.warning(
                        "%s: worker thread did not stop within %.1f s (stuck in a blocking call?); abandoning it",
                        type(self).__name__,
                        self.joinTimeout,
                    )
            self._post_loop_side()
            life.finish_close()
            return
        if not life.wait_closed(self.joinTimeout + 1.0):
            self._log.warning(
                "%s: still closing after %.1f s; giving up waiting", type(self).__name__, self.joinTimeout
            )
        if thread is not None and thread.is_alive():
            thread.join(self.joinTimeout)  # finishing its last lines after it closed the object
        if self._onLoopThread():
            self._close_loop_side()  # so onClose has fired when close() returns on the loop

    async def close_async(self) -> None:
        """Close without blocking the event loop: the waiting for the worker happens in a thread::

            await camera.close_async()
        """
        await _close_in_thread(self)


async def _close_in_thread(obj: Any) -> None:
    """``obj.close()`` in a helper thread, awaited (cancelling the await does not abandon the close)."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def settle() -> None:
        if not done.done():
            done.set_result(None)

    def run() -> None:
        try:
            obj.close()
        finally:
            try:
                loop.call_soon_threadsafe(settle)
            except RuntimeError:
                pass

    thread = threading.Thread(target=run, name=f"rtcbot-close-{type(obj).__name__}", daemon=True)
    thread.start()
    try:
        await asyncio.shield(done)
    finally:
        if not done.done():
            # Cancelled: the close still finishes in its thread; wait for it off the loop's callbacks.
            await asyncio.get_running_loop().run_in_executor(None, thread.join)
    thread.join()
    if obj._life is not None and obj._onLoopThread():
        obj._close_loop_side()


class ThreadedSubscriptionProducer(_ThreadedWorker, BaseSubscriptionProducer):
    """A producer whose ``_producer()`` runs in a worker thread; ``_put_nowait()`` from the thread reaches
    the subscriptions on the event loop in order, batched when the loop is busy.

    The base class can be constructed directly: its default worker only sets ready and idles until closed.
    """

    def __init__(
        self,
        defaultSubscriptionType: Any = asyncio.Queue,
        logger: Optional[logging.Logger] = None,
        loop: Optional[asyncio.AbstractEventLoop] = None,
        daemonThread: bool = True,
    ) -> None:
        BaseSubscriptionProducer.__init__(self, defaultSubscriptionType, logger=logger, ready=False)
        # The hand-off delivers straight to the fan-out, bound once rather than looked up per item.
        self._init_worker(loop, daemonThread, deliver=BaseSubscriptionProducer._put_nowait.__get__(self))

    def _producer(self) -> None:
        """Runs in the worker thread. Override it; the default sets ready and waits for close()."""
        self._setReady(True)
        self._wait_closed()

    def _worker_main(self) -> None:
        self._producer()

    def _put_nowait(self, element: Any) -> None:
        """Give an item to every subscription; callable from the worker thread and the event loop."""
        if threading.get_ident() == self._worker_ident:  # the hot path: checked first, and cheaply
            self._handoff_put(element)
        elif self._onLoopThread():
            BaseSubscriptionProducer._put_nowait(self, element)
        else:
            self._handoff.put(element)

    def _closeNow(self) -> None:
        BaseSubscriptionProducer.close(self)

    def close(self) -> None:
        """Shuts down data gathering, and closes all subscriptions. It waits (at most ``joinTimeout``) for the
        background thread, so prefer calling it on the way out of your program."""
        _ThreadedWorker.close(self)


class ThreadedSubscriptionConsumer(_ThreadedWorker, BaseSubscriptionConsumer):
    """A consumer whose ``_consumer()`` runs in a worker thread, where ``self._get()`` is a plain blocking
    call returning the next item (of whatever subscription is active) and raising SubscriptionClosed after
    close()::

        class Printer(ThreadedSubscriptionConsumer):
            def _consumer(self):
                self._setReady(True)
                while True:
                    print(self._get())     # SubscriptionClosed ends the loop and the thread
    """

    def __init__(
        self,
        directPutSubscriptionType: Any = asyncio.Queue,
        logger: Optional[logging.Logger] = None,
        loop: Optional[asyncio.AbstractEventLoop] = None,
        daemonThread: bool = True,
    ) -> None:
        BaseSubscriptionConsumer.__init__(self, directPutSubscriptionType, logger=logger, ready=False)
        self._init_worker(loop, daemonThread)
        self._results: queue.SimpleQueue = queue.SimpleQueue()
        self._fetch_task: Optional[asyncio.Task] = None

    def _consumer(self) -> None:
        """Runs in the worker thread. Override it; the default sets ready and waits for close()."""
        self._setReady(True)
        self._wait_closed()

    def _worker_main(self) -> None:
        self._consumer()

    def _get(self) -> Any:  # type: ignore[override]
        """In the worker thread: block until the next item arrives; SubscriptionClosed after close()."""
        if self._shouldClose:
            raise SubscriptionClosed(f"{type(self).__name__} was closed")
        try:
            self._loop.call_soon_threadsafe(self._start_fetch)
        except RuntimeError:
            raise SubscriptionClosed(f"{type(self).__name__}: its event loop is closed") from None
        kind, value = self._results.get()
        if kind is _CLOSED:
            raise SubscriptionClosed(f"{type(self).__name__} was closed")
        if kind is not True:
            raise value
        return value

    def _start_fetch(self) -> None:
        """On the loop: hand the worker the next item, at once if one is waiting (no task per item then)."""
        try:
            item = self._get_if_ready()
        except SubscriptionClosed:
            return  # close() has already woken the worker
        except Exception as e:  # a broken subscription: the worker sees the error
            self._results.put((False, e))
            return
        if item is NOT_READY:
            self._fetch_task = self._loop.create_task(self._fetch())
        else:
            self._results.put((True, item))

    async def _fetch(self) -> None:
        try:
            item = await BaseSubscriptionConsumer._get(self)
        except (SubscriptionClosed, asyncio.CancelledError):
            return  # close() has already woken the worker
        except Exception as e:  # a broken subscription: the worker sees the error
            self._results.put((False, e))
        else:
            self._results.put((True, item))
        finally:
            self._fetch_task = None

    def _closeNow(self) -> None:
        task = self._fetch_task
        if task is not None and not task.done():
            task.cancel()
        BaseSubscriptionConsumer.close(self)

    def _request_stop(self) -> None:
        _ThreadedWorker._request_stop(self)
        results = getattr(self, "_results", None)
        if results is not None:
            results.put((_CLOSED, None))

    def close(self) -> None:
        """Stops the worker thread (waiting at most ``joinTimeout``) and closes the object."""
        _ThreadedWorker.close(self)
