"""Process-based producers and consumers: the device loop runs in its own process, off the GIL.

Subclass and implement ``_producer()``, ``_consumer()`` or ``_producerConsumer()``; it runs in a child
process started once your ``__init__`` has returned. The object is pickled into the child (the ``spawn`` and
``forkserver`` start methods need it, and rtcbot checks it under ``fork`` too, so a script behaves the same
everywhere): set only picklable attributes, and open devices inside the worker method::

    class Squarer(ProcessSubscriptionProducerConsumer):
        def _producerConsumer(self):
            self._setReady(True)
            while True:
                x = self._get()              # blocks; SubscriptionClosed after close()
                self._put_nowait(x * x)      # reaches the parent's subscribers

    with Squarer() as sq:
        sq.put_nowait(3)
        assert await sq.get() == 9

Items cross through a socket; numpy arrays (anywhere inside an item) cross through shared memory, and the
receiver gets its own copy. In the child, ``_put_nowait`` waits when the parent falls behind by more than
the shared slots (``_handoff_block = True``, the default), or drops the item (``_handoff_block = False``,
right for a camera, where a newer frame is coming).

The child ignores SIGINT: Ctrl+C in the script closes everything through ``close()``. If the child dies, the
object fires ``onError`` with a :class:`~rtcbot.errors.WorkerDiedError` giving the exit code.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import multiprocessing
import multiprocessing.resource_tracker
import os
import pickle
import queue
import signal
import threading
import traceback
from typing import Any, Deque, Dict, FrozenSet, List, Optional

from ..errors import NotPicklableError, WorkerDiedError
from .base import BaseSubscriptionConsumer, BaseSubscriptionProducer, SubscriptionClosed
from .events import baseEventHandler, resolve_loop
from .transport import ChannelClosed, ParentEndpoint, WorkerEndpoint, socket_pair
from .worker import StartsWorkerAfterInit

__all__ = [
    "ProcessSubscriptionConsumer",
    "ProcessSubscriptionProducer",
    "ProcessSubscriptionProducerConsumer",
    "internalSubscriptionMessage",
]


class internalSubscriptionMessage:
    """A control message between the parent and the worker process: ``type`` is "ready", "error", "close"
    or "done", ``value`` its argument."""

    __slots__ = ("type", "value")

    def __init__(self, type: str, value: Any) -> None:
        self.type = type
        self.value = value

    def __reduce__(self):
        return (internalSubscriptionMessage, (self.type, self.value))

    def __repr__(self) -> str:
        return f"internalSubscriptionMessage({self.type!r}, {self.value!r})"


_CLOSED = object()


class _SubscriptionFailed:
    """Sent to the worker in place of an item when the consumer's subscription raised: its ``_get()``
    raises ``error``, as a threaded consumer's does."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def __reduce__(self):
        return (_SubscriptionFailed, (self.error,))


class _WorkerSide:
    """What a process-based object has in its child process instead of subscriptions and events."""

    def __init__(self, obj: Any, endpoint: WorkerEndpoint, block: bool) -> None:
        self.obj = obj
        self.endpoint = endpoint
        self.block = block
        self.closeRequested = threading.Event()
        self.items: queue.SimpleQueue = queue.SimpleQueue()
        # Flow control (see _FeedsWorker): the parent is told how many items _get() took, every half window,
        # and, when it waits for room, as soon as all but the last item it sent were taken.
        self.lock = threading.Lock()
        self.received = 0  # items from the parent so far
        self.taken = 0  # items _get() returned
        self.reported = 0  # taken items the parent was told about
        self.report_at: Optional[int] = None  # the parent waits: report once this many items were taken
        self.report_every = max(1, getattr(obj, "_feed_window", 2) // 2)
        self.reader = threading.Thread(target=self._read, name="rtcbot-worker-reader", daemon=True)
        self.reader.start()

    def _read(self) -> None:
        # Items from the parent queue up for _get(); a close message (or the parent vanishing) stops the worker.
        try:
            while True:
                item = self.endpoint.recv()
                if type(item) is internalSubscriptionMessage:
                    if item.type == "close":
                        break
                    if item.type == "report":
                        with self.lock:
                            self.report_at = self.received - 1
                        self.report()
                        continue
                with self.lock:
                    self.received += 1
                self.items.put(item)
        except ChannelClosed:
            pass
        self.requestStop()

    def requestStop(self) -> None:
        self.obj._shouldClose = True
        self.closeRequested.set()
        self.items.put(_CLOSED)
        # A _put_nowait waiting for the parent to free a slot would wait forever: the parent stops reading
        # once it asked us to close. It raises SubscriptionClosed instead, which ends the worker.
        self.endpoint.stop_waiting()

    def get(self) -> Any:
        if self.obj._shouldClose:
            raise SubscriptionClosed("closed")
        item = self.items.get()
        if item is _CLOSED:
            self.items.put(_CLOSED)  # every later _get() ends too
            raise SubscriptionClosed("closed")
        with self.lock:
            self.taken += 1
        self.report()
        if type(item) is _SubscriptionFailed:
            raise item.error
        return item

    def report(self) -> None:
        """Tell the parent how many items were taken, when it is due (few messages for a fast stream)."""
        with self.lock:
            due = self.taken - self.reported
            asked = self.report_at is not None and self.taken >= self.report_at
            if due <= 0 or not (asked or due >= self.report_every):
                return
            self.reported = self.taken
            self.report_at = None
        self.control("took", due)

    def send(self, item: Any, block: bool = True) -> None:
        try:
            self.endpoint.send(item, block=block)
        except ChannelClosed:
            self.requestStop()
            raise SubscriptionClosed("the parent process is gone") from None

    def control(self, kind: str, value: Any = None) -> None:
        try:
            self.endpoint.send(internalSubscriptionMessage(kind, value))
        except ChannelClosed:
            self.requestStop()


def _picklable_error(err: BaseException, tb: str) -> BaseException:
    try:
        pickle.loads(pickle.dumps(err))
        return err
    except Exception:
        return WorkerDiedError(f"{type(err).__name__}: {err}\n{tb}")


_HAVE_SIGMASK = hasattr(signal, "pthread_sigmask")


def _start_without_sigint(process: Any) -> None:
    """Start ``process`` from a helper thread that blocks SIGINT, so the child is born with it blocked.

    Ctrl+C in a terminal reaches the whole process group: a child still starting up (a spawned interpreter
    re-importing the script) would print a KeyboardInterrupt traceback before it ignores SIGINT. Blocked,
    the signal waits in the child until it ignores it (which discards it). The calling thread keeps SIGINT
    unblocked: blocking it there would make the kernel deliver a Ctrl+C to another thread, and Python 3.11
    only notices a signal caught in another thread when something else wakes the main thread, so the
    Ctrl+C was lost.
    """
    if not _HAVE_SIGMASK:
        process.start()
        return
    if process._start_method in ("spawn", "forkserver"):  # type: ignore[attr-defined]
        # Started here, not inside start(): starting the tracker unblocks SIGINT in its thread afterwards.
        multiprocessing.resource_tracker.ensure_running()
    failure: List[BaseException] = []

    def start() -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            process.start()
        except BaseException as e:  # raised again in the calling thread
            failure.append(e)

    starter = threading.Thread(target=start, name="rtcbot-worker-start", daemon=True)
    starter.start()
    starter.join()
    if failure:
        raise failure[0]


DEFAULT_START_METHOD = "forkserver"
"""The start method process workers use unless given ``start_method``. Not ``fork``: forking a process that
has threads (numpy's BLAS pool, any threaded device, Zenoh) can deadlock the child, Python 3.12+ warns about
it, and 3.14 itself moves to forkserver; a forked child would also inherit every open device and port. A
forkserver child starts clean, but imports your script again: keep device creation under
``if __name__ == "__main__":``."""


def _context(start_method: Optional[str]) -> Any:
    method = start_method or DEFAULT_START_METHOD
    if method not in multiprocessing.get_all_start_methods():
        method = multiprocessing.get_start_method()  # e.g. no forkserver on this platform
    context = multiprocessing.get_context(method)
    if method == "forkserver":
        # Children fork from a server that has these imported already, so a worker starts in milliseconds.
        context.set_forkserver_preload(["rtcbot.base.multiprocess"])
    return context


def _worker_process_main(
    cls: Any, state: Dict[str, Any], sock: Any, slots: int, block: bool, environment: Dict[str, str]
) -> None:
    """Entry point of the child process."""
    # A forkserver child inherits the server's environment, from when it started; give it the parent's now,
    # as fork and spawn would (e.g. PULSE_SERVER or DISPLAY set by the script).
    if os.environ != environment:
        os.environ.clear()
        os.environ.update(environment)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if _HAVE_SIGMASK:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # blocked by the parent while starting us
    endpoint = WorkerEndpoint(sock, slots=slots)
    obj: Any = cls.__new__(cls)
    obj.__dict__.update(state)
    obj._shouldClose = False
    obj._workerSide = side = _WorkerSide(obj, endpoint, block)
    try:
        obj._workerMain()
    except SubscriptionClosed:
        pass
    except BaseException as e:  # everything the worker raised must reach the parent, even SystemExit
        tb = traceback.format_exc()
        side.control("error", (_picklable_error(e, tb), tb))
    finally:
        side.control("done")
        endpoint.close()


class _ProcessWorker(StartsWorkerAfterInit, baseEventHandler):
    """The worker-process lifetime shared by process producers and consumers."""

    _handoff_block = True  # child's _put_nowait waits when the parent falls behind (False: drop the item)
    _handoff_slots = 4  # shared-memory slots for arrays in flight, each direction
    _workerSide: Optional[_WorkerSide] = None
    _process: Any = None
    _endpoint: Optional[ParentEndpoint] = None
    _feedTask: Optional[asyncio.Task] = None
    _parentOnlyKeys: FrozenSet[str] = frozenset()
    _workerDone = False

    def _initProcess(
        self,
        preexisting: FrozenSet[str],
        loop: Optional[asyncio.AbstractEventLoop],
        daemonProcess: bool,
        joinTimeout: float,
        start_method: Optional[str],
    ) -> None:
        self._loop = resolve_loop(loop)
        self._daemonProcess = daemonProcess
        self._joinTimeout = joinTimeout
        self._startMethod = start_method
        self._process = None
        self._endpoint = None
        self._feedTask = None
        self._workerDone = False
        # Everything the base classes set is parent-side state; the rest (the subclass's) crosses over.
        # The logger crosses too (loggers pickle by name), so the worker logs like the parent.
        self._parentOnlyKeys = frozenset(set(self.__dict__) - preexisting - {"_log"}) | {"_parentOnlyKeys"}

    # -- starting ------------------------------------------------------------------------------------
    def _workerState(self) -> Dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in self._parentOnlyKeys}

    def _checkPicklable(self, state: Dict[str, Any]) -> None:
        try:
            pickle.dumps((type(self), state))
            return
        except Exception as e:
            whole_error = e
        name = type(self).__name__
        try:
            pickle.dumps(type(self))
        except Exception as e:
            raise NotPicklableError(
                f"{name} cannot be sent to its worker process: the class itself is not picklable ({e}). "
                "Define it at module level, not inside a function."
            ) from e
        for key, value in state.items():
            try:
                pickle.dumps(value)
            except Exception as e:
                raise NotPicklableError(
                    f"{name}.{key} ({type(value).__name__}) cannot be pickled, so it cannot cross into the "
                    f"worker process ({e}). Open devices and create such objects inside the worker method "
                    "(_producer/_consumer/_producerConsumer), not in __init__."
                ) from e
        raise NotPicklableError(f"{name} cannot be sent to its worker process: {whole_error}") from whole_error

    def _startWorker(self) -> None:
        state = self._workerState()
        self._checkPicklable(state)
        context = _context(self._startMethod)
        parent_sock, child_sock = socket_pair()
        self._process = context.Process(
            target=_worker_process_main,
            args=(type(self), state, child_sock, self._handoff_slots, self._handoff_block, dict(os.environ)),
            name=f"rtcbot-{type(self).__name__}",
            daemon=self._daemonProcess,
        )
        try:
            _start_without_sigint(self._process)
        finally:
            child_sock.close()
        self._endpoint = ParentEndpoint(
            parent_sock, self._loop, self._onItem, self._onWorkerGone, slots=self._handoff_slots
        )
        self._endpoint.start()
        self._startFeeding()

    def _startFeeding(self) -> None:
        """Consumers start a task that forwards their subscription to the child."""

    # -- parent side: what arrives from the child ----------------------------------------------------
    def _onItem(self, item: Any) -> None:
        if type(item) is internalSubscriptionMessage:
            self._onControl(item)
        else:
            self._deliver(item)

    def _deliver(self, item: Any) -> None:
        self._log.warning("%s: its worker sent an item, but it is not a producer; dropped", type(self).__name__)

    def _onControl(self, message: internalSubscriptionMessage) -> None:
        kind = message.type
        if kind == "ready":
            self._setReadyNow(message.value)
        elif kind == "error":
            err, tb = message.value
            self._log.error("%s: worker process failed:\n%s", type(self).__name__, tb)
            self._setErrorNow(err)
        elif kind == "took":
            self._feedTook(message.value)
        elif kind == "done":
            # The worker returned (or failed, or was asked to close): it is exiting, so this join is short.
            self._workerDone = True
            self._closeNow(wait=True)
        # "close" from the worker needs nothing here: the worker stops and sends "done".

    def _onWorkerGone(self) -> None:
        if self._workerDone or self._shouldClose:
            return
        process = self._process
        if process is not None:
            process.join(self._joinTimeout)
        code = None if process is None else process.exitcode
        if code is not None and code < 0:
            try:
                how = f"was killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"was killed by signal {-code}"
        else:
            how = f"exited with code {code}"
        advice = "check the log above for what it was doing, and the system log (dmesg) for the OOM killer"
        method = _context(self._startMethod).get_start_method()
        if not self._readyEvent.fired and method != "fork" and code == 1:
            advice = (
                "it died while starting: with the spawn and forkserver start methods the child imports your "
                "script again, so the code that creates devices must sit under `if __name__ == \"__main__\":`; "
                "otherwise " + advice
            )
        err = WorkerDiedError(
            f"{type(self).__name__}: its worker process (pid {getattr(process, 'pid', '?')}) {how} "
            f"without closing; {advice}"
        )
        self._log.error("%s", err)
        self._setErrorNow(err)
        self._closeNow(wait=False)

    def _feedTook(self, count: int) -> None:
        """The worker's _get() took ``count`` items (consumers count them to bound what waits in the worker)."""

    def _setReadyNow(self, value: bool) -> None:
        baseEventHandler._setReady(self, value)  # type: ignore[arg-type]

    def _setErrorNow(self, err: BaseException) -> None:
        baseEventHandler._setError(self, err)  # type: ignore[arg-type]

    # -- worker-side API (these also work in the parent) ---------------------------------------------
    def _workerMain(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _wait_closed(self, timeout: Optional[float] = None) -> bool:
        """In the worker: block until close() was called (True) or ``timeout`` seconds passed (False)."""
        side = self._workerSide
        if side is None:
            return self._shouldClose
        return side.closeRequested.wait(timeout)

    def _sendToParent(self, item: Any) -> None:
        """In the worker: send a status item (counters, a measurement) to the parent, where ``_deliver(item)``
        receives it. A consumer uses this to report back; a producer's ``_put_nowait`` does the same for data.
        Raises SubscriptionClosed once the parent is gone."""
        side = self._workerSide
        if side is None:
            self._deliver(item)
        else:
            side.send(item)

    def _setReady(self, value: bool = True) -> None:
        side = self._workerSide
        if side is None:
            self._setReadyNow(value)
        else:
            side.control("ready", bool(value))

    def _setError(self, err: BaseException) -> None:
        side = self._workerSide
        if side is None:
            self._setErrorNow(err)
        else:
            side.control("error", (_picklable_error(err, ""), f"{type(err).__name__}: {err}"))

    def _close(self) -> None:
        """Close from inside the worker (or the parent) without waiting."""
        side = self._workerSide
        if side is None:
            self._closeNow(wait=False)
        else:
            side.requestStop()
            side.control("close")

    # -- closing -------------------------------------------------------------------------------------
    def _closeNow(self, wait: bool) -> None:
        first = not self._shouldClose
        self._shouldClose = True
        task = self._feedTask
        if task is not None and not task.done():
            try:
                task.cancel()
            except RuntimeError:  # its loop is closed already
                pass
        endpoint = self._endpoint
        process = self._process
        if endpoint is not None and first and process is not None and process.is_alive():
            try:
                endpoint.send_nowait(internalSubscriptionMessage("close", None))
            except (ChannelClosed, OSError, RuntimeError):
                pass
        if process is not None:
            process.join(self._joinTimeout if wait else 0.2)
            if process.is_alive():
                if wait:
                    self._log.warning(
                        "%s: worker process did not stop within %.1f s (stuck in a blocking call?); "
                        "terminating it",
                        type(self).__name__,
                        self._joinTimeout,
                    )
                process.terminate()
                process.join(0.5)
                if process.is_alive():
                    process.kill()
                    process.join(0.5)
            if not process.is_alive():
                process.close()
                self._process = None
        if endpoint is not None:
            endpoint.close()
            self._endpoint = None
        self._closeBase()

    def _closeBase(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def close(self) -> None:
        """Shuts down the worker process (waiting at most ``joinTimeout`` seconds, then terminating it) and
        closes all subscriptions. Safe to call more than once, and on a half-constructed object."""
        if self._workerSide is not None:
            self._close()
            return
        self._closeNow(wait=True)


class _FeedsWorker(_ProcessWorker):
    """Consumers: a task on the event loop forwards the active subscription to the child.

    What waits in the child for its ``_get()`` is bounded: at most ``_feed_window`` items, and beyond two
    items at most ``_feed_window_bytes`` (camera frames: two). The feed then waits, so a slow worker reads
    its subscription at its own pace (a camera's newest-frame subscription drops what it is too slow for,
    as for a threaded consumer) instead of its process queueing every item, without limit.
    """

    _feed_window = 256  # items sent to the worker and not yet taken by its _get(), at most
    _feed_window_bytes = 1 << 20  # ...and beyond two such items, at most this many bytes of them
    _feedInFlight = 0
    _feedInFlightBytes = 0
    _feedSizes: Optional[Deque[int]] = None
    _feedCredit: Optional[asyncio.Event] = None
    _feedAsked = False

    def _startFeeding(self) -> None:
        self._feedTask = self._loop.create_task(self._feed())
        self._feedTask.add_done_callback(self._feedEnded)

    def _feedTook(self, count: int) -> None:
        sizes = self._feedSizes
        for _ in range(count):
            if sizes:
                self._feedInFlightBytes -= sizes.popleft()
        self._feedInFlight -= count
        self._feedAsked = False
        credit = self._feedCredit
        if credit is not None:
            credit.set()

    def _feedIsFull(self) -> bool:
        n = self._feedInFlight
        return n >= self._feed_window or (n >= 2 and self._feedInFlightBytes >= self._feed_window_bytes)

    async def _feed(self) -> None:
        endpoint = self._endpoint
        assert endpoint is not None
        credit = self._feedCredit = asyncio.Event()  # created here: on the loop that runs the feed
        sizes = self._feedSizes = collections.deque()
        while True:
            while self._feedIsFull():
                if not self._feedAsked:  # ask the worker to say when it took all but the last item
                    self._feedAsked = True
                    try:
                        endpoint.send_nowait(internalSubscriptionMessage("report", None))
                    except ChannelClosed:
                        return
                credit.clear()
                await credit.wait()
            try:
                item = await BaseSubscriptionConsumer._get(self)  # type: ignore[arg-type]
            except SubscriptionClosed:
                return
            except Exception as e:
                # The subscription's get() failed. Reading it again would fail again (and spin), and stopping
                # here would leave a consumer that looks alive but takes nothing: the worker's _get() raises
                # the error instead, as in a threaded consumer, and later put_nowait items still arrive.
                subscription = getattr(self, "_userSubscription", None)
                self._log.error(
                    "%s: its subscription %r failed (%s: %s); it is no longer read",
                    type(self).__name__,
                    subscription,
                    type(e).__name__,
                    e,
                )
                self.stopSubscription()  # type: ignore[attr-defined]
                item = _SubscriptionFailed(_picklable_error(e, traceback.format_exc()))
            try:
                size = await endpoint.send(item)
                sizes.append(size)
                self._feedInFlight += 1
                self._feedInFlightBytes += size
            except ChannelClosed:
                return
            except Exception as e:
                self._log.error(
                    "%s: could not send a %s to the worker process (%s: %s); it was dropped",
                    type(self).__name__,
                    type(item).__name__,
                    type(e).__name__,
                    e,
                )

    def _feedEnded(self, task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            err = task.exception()
            self._log.error("%s: feeding the worker failed", type(self).__name__, exc_info=err)

    def _get(self) -> Any:  # type: ignore[override]
        """In the worker: block until the next item arrives; SubscriptionClosed after close()."""
        side = self._workerSide
        if side is None:
            raise RuntimeError(f"{type(self).__name__}._get() is called in the worker process, not the parent")
        return side.get()


class _ProducesInWorker(_ProcessWorker):
    """Producers: items the worker puts reach the parent's subscribers."""

    def _put_nowait(self, element: Any) -> None:
        """In the worker: send an item to the parent's subscribers. In the parent: fan it out directly."""
        side = self._workerSide
        if side is None:
            BaseSubscriptionProducer._put_nowait(self, element)  # type: ignore[arg-type]
        else:
            side.send(element, side.block)

    def _deliver(self, item: Any) -> None:
        BaseSubscriptionProducer._put_nowait(self, item)  # type: ignore[arg-type]


class ProcessSubscriptionProducer(_ProducesInWorker, BaseSubscriptionProducer):
    """A producer whose ``_producer()`` runs in a child process; ``_put_nowait()`` in the child reaches the
    subscribers in the parent, in order. The base class can be constructed directly: its default worker sets
    ready and idles until closed."""

    def __init__(
        self,
        defaultSubscriptionType: Any = asyncio.Queue,
        logger: Optional[logging.Logger] = None,
        loop: Optional[asyncio.AbstractEventLoop] = None,
        daemonProcess: bool = True,
        joinTimeout: float = 1,
        *,
        start_method: Optional[str] = None,
    ) -> None:
        pre = frozenset(self.__dict__)
        BaseSubscriptionProducer.__init__(self, defaultSubscriptionType, logger=logger, ready=False)
        self._initProcess(pre, loop, daemonProcess, joinTimeout, start_method)

    def _producer(self) -> None:
        """Runs in the worker process. Override it; the default sets ready and waits for close()."""
        self._setReady(True)
        self._wait_closed()

    def _workerMain(self) -> None:
        self._producer()

    def _closeBase(self) -> None:
        BaseSubscriptionProducer.close(self)

    def close(self) -> None:
        """Shuts down data gathering, and closes all subscriptions. It waits (at most ``joinTimeout``) for
        the worker process, so prefer calling it on the way out of your program."""
        _ProcessWorker.close(self)


class ProcessSubscriptionConsumer(_FeedsWorker, BaseSubscriptionConsumer):
    """A consumer whose ``_consumer()`` runs in a child process, where ``self._get()`` blocks for the next
    item put into the object or read from its subscription in the parent."""

    def __init__(
        self,
        directPutSubscriptionType: Any = asyncio.Queue,
        logger: Optional[logging.Logger] = None,
        loop: Optional[asyncio.AbstractEventLoop] = None,
        daemonProcess: bool = True,
        joinTimeout: float = 1,
        *,
        start_method: Optional[str] = None,
    ) -> None:
        pre = frozenset(self.__dict__)
        BaseSubscriptionConsumer.__init__(self, directPutSubscriptionType, logger=logger, ready=False)
        self._initProcess(pre, loop, daemonProcess, joinTimeout, start_method)

    def _consumer(self) -> None:
        """Runs in the worker process. Override it; the default sets ready and waits for close()."""
        self._setReady(True)
        self._wait_closed()

    def _workerMain(self) -> None:
        self._consumer()

    def _closeBase(self) -> None:
        BaseSubscriptionConsumer.close(self)

    def close(self) -> None:
        """Shuts down the worker process (at most ``joinTimeout`` seconds) and closes the object."""
        _ProcessWorker.close(self)


class ProcessSubscriptionProducerConsumer(
    _ProducesInWorker, _FeedsWorker, BaseSubscriptionConsumer, BaseSubscriptionProducer
):
    """Both a producer and a consumer run as a separate process, common with two-way connections: in
    ``_producerConsumer()``, call ``_get()`` for incoming data and ``_put_nowait()`` for outgoing data."""

    def __init__(
        self,
        directPutSubscriptionType: Any = asyncio.Queue,
        defaultSubscriptionType: Any = asyncio.Queue,
        logger: Optional[logging.Logger] = None,
        defaultAutosubscribe: bool = False,
        loop: Optional[asyncio.AbstractEventLoop] = None,
        daemonProcess: bool = True,
        joinTimeout: float = 1,
        *,
        start_method: Optional[str] = None,
    ) -> None:
        pre = frozenset(self.__dict__)
        BaseSubscriptionConsumer.__init__(self, directPutSubscriptionType, logger=logger, ready=False)
        BaseSubscriptionProducer.__init__(
            self, defaultSubscriptionType, defaultAutosubscribe, logger=self._log, ready=False
        )
        self._initProcess(pre, loop, daemonProcess, joinTimeout, start_method)

    def _producerConsumer(self) -> None:
        """Runs in the worker process. Override it; the default sets ready and waits for close()."""
        self._setReady(True)
        self._wait_closed()

    def _workerMain(self) -> None:
        self._producerConsumer()

    def _closeBase(self) -> None:
        BaseSubscriptionConsumer.close(self)
        BaseSubscriptionProducer.close(self)

    def close(self) -> None:
        """Shuts down the worker process (at most ``joinTimeout`` seconds) and closes all subscriptions."""
        _ProcessWorker.close(self)
