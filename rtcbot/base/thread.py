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
"""
from __future__ import annotations

import asyncio
import logging
import queue
import threading
from typing import Any, Callable, Optional

from .base import BaseSubscriptionConsumer, BaseSubscriptionProducer, SubscriptionClosed
from .events import threadedEventHandler
from .worker import LoopHandoff, StartsWorkerAfterInit

__all__ = ["ThreadedSubscriptionConsumer", "ThreadedSubscriptionProducer"]

_CLOSED = object()


class _ThreadedWorker(StartsWorkerAfterInit, threadedEventHandler):
    """The worker-thread lifetime shared by threaded producers and consumers."""

    joinTimeout = 1.0  # seconds close() waits for the worker before abandoning it with a warning
    # When the event loop falls behind by more than the hand-off's limit, the worker's _put_nowait waits
    # (True, nothing lost) or the oldest waiting item is dropped (False: right for a camera).
    _handoff_block = True
    _handoff_limit = 1024  # items waiting for the loop at most (a camera wants only a couple of frames)
    _thread: Optional[threading.Thread] = None
    _workerIdent: Optional[int] = None
    _closeRequested: Optional[threading.Event] = None

    def _initWorker(
        self,
        loop: Optional[asyncio.AbstractEventLoop],
        daemonThread: bool,
        deliver: Callable[[Any], None] = lambda item: None,
    ) -> None:
        self._bindLoop(loop)
        self._daemonThread = daemonThread
        self._closeRequested = threading.Event()
        self._handoff = LoopHandoff(self._loop, deliver, limit=self._handoff_limit, block=self._handoff_block)
        self._handoffPut = self._handoff.put

    def _startWorker(self) -> None:
        self._thread = threading.Thread(
            target=self._runWorker, name=f"rtcbot-{type(self).__name__}", daemon=self._daemonThread
        )
        self._thread.start()

    def _workerMain(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _runWorker(self) -> None:
        self._workerIdent = threading.get_ident()
        try:
            self._workerMain()
        except SubscriptionClosed:
            pass
        except Exception as e:
            self._log.error("%s: worker thread failed: %s", type(self).__name__, e, exc_info=True)
            self._handoff.call(self._setErrorNow, e)
        finally:
            self._handoff.call(self._workerEnded)

    def _workerEnded(self) -> None:
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(self.joinTimeout)
        self._closeNow()

    def _wait_closed(self, timeout: Optional[float] = None) -> bool:
        """Block the worker until close() was called (True) or ``timeout`` seconds passed (False)."""
        event = self._closeRequested
        return True if event is None else event.wait(timeout)

    def _inOrder(self, fn: Any, *args: Any) -> None:
        # From the worker, events travel with the items so they arrive in the order they happened.
        if self._onLoopThread():
            fn(*args)
        else:
            self._handoff.call(fn, *args)

    def _setReady(self, value: bool = True) -> None:
        self._inOrder(self._setReadyNow, value)

    def _setError(self, err: BaseException) -> None:
        self._inOrder(self._setErrorNow, err)

    def _close(self) -> None:
        """Close from inside the worker (or the loop) without waiting for the worker."""
        self._requestStop()
        self._inOrder(self._closeNow)

    def _requestStop(self) -> None:
        self._shouldClose = True
        if self._closeRequested is not None:
            self._closeRequested.set()
            self._handoff.stop()

    def _closeNow(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def close(self) -> None:
        """Stops the worker thread and closes the object. Waits up to ``joinTimeout`` seconds for the thread; a
        thread stuck in a blocking device call is abandoned with a warning (it is a daemon thread)."""
        self._requestStop()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread() and thread.is_alive():
            thread.join(self.joinTimeout)
            if thread.is_alive():
                self._log.warning(
                    "%s: worker thread did not stop within %.1f s (stuck in a blocking call?); abandoning it",
                    type(self).__name__,
                    self.joinTimeout,
                )
        self._closeNow()


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
        self._initWorker(loop, daemonThread, deliver=BaseSubscriptionProducer._put_nowait.__get__(self))

    def _producer(self) -> None:
        """Runs in the worker thread. Override it; the default sets ready and waits for close()."""
        self._setReady(True)
        self._wait_closed()

    def _workerMain(self) -> None:
        self._producer()

    def _put_nowait(self, element: Any) -> None:
        """Give an item to every subscription; callable from the worker thread and the event loop."""
        if threading.get_ident() == self._workerIdent:  # the hot path: checked first, and cheaply
            self._handoffPut(element)
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
        self._initWorker(loop, daemonThread)
        self._results: queue.SimpleQueue = queue.SimpleQueue()
        self._fetchTask: Optional[asyncio.Task] = None

    def _consumer(self) -> None:
        """Runs in the worker thread. Override it; the default sets ready and waits for close()."""
        self._setReady(True)
        self._wait_closed()

    def _workerMain(self) -> None:
        self._consumer()

    def _get(self) -> Any:  # type: ignore[override]
        """In the worker thread: block until the next item arrives; SubscriptionClosed after close()."""
        if self._shouldClose:
            raise SubscriptionClosed(f"{type(self).__name__} was closed")
        try:
            self._loop.call_soon_threadsafe(self._startFetch)
        except RuntimeError:
            raise SubscriptionClosed(f"{type(self).__name__}: its event loop is closed") from None
        kind, value = self._results.get()
        if kind is _CLOSED:
            raise SubscriptionClosed(f"{type(self).__name__} was closed")
        if kind is not True:
            raise value
        return value

    def _startFetch(self) -> None:
        if self._shouldClose:
            return
        self._fetchTask = self._loop.create_task(self._fetch())

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
            self._fetchTask = None

    def _closeNow(self) -> None:
        task = self._fetchTask
        if task is not None and not task.done():
            task.cancel()
        BaseSubscriptionConsumer.close(self)

    def _requestStop(self) -> None:
        _ThreadedWorker._requestStop(self)
        results = getattr(self, "_results", None)
        if results is not None:
            results.put((_CLOSED, None))

    def close(self) -> None:
        """Stops the worker thread (waiting at most ``joinTimeout``) and closes the object."""
        _ThreadedWorker.close(self)
