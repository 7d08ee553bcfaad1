"""Process-based producers and consumers: the device loop runs in its own process, off the GIL.

Subclass and implement ``_producer()``, ``_consumer()`` or ``_producerConsumer()``; it runs in a child
process started once your ``__init__`` has returned. The object's attributes cross into the child when the
process starts (see :mod:`rtcbot.base.process_state`: all but those listed in ``_parent_only_attributes``),
pickled by multiprocessing itself, so a ``multiprocessing.Queue``, ``Event``, ``Lock``, ``Value`` or ``Pipe``
end works as it would through ``multiprocessing.Process(args=...)``. Open devices inside the worker method::

    class Squarer(ProcessSubscriptionProducerConsumer):
        def _producerConsumer(self):
            self._setReady(True)
            while True:
                x = self._get()              # blocks; SubscriptionClosed after close()
                self._put_nowait(x * x)      # reaches the parent's subscribers

    with Squarer() as sq:
        sq.put_nowait(3)
        assert await sq.get() == 9

Start method: ``start_method=`` (keyword of every process class), else ``$RTCBOT_START_METHOD``, else
``forkserver`` (see :mod:`rtcbot.base.process_start`). A worker class defined in an importable module needs no
``if __name__ == "__main__":`` guard in the script: the child does not import the script. Only a class defined
in the script itself does; without the guard the script stops at once with one message saying what to add.

Items cross through a socket; numpy arrays (anywhere inside an item) cross through shared memory, and the
receiver owns what it gets (often a view of shared memory that nothing writes while it lives, see
:mod:`rtcbot.base.transport`). In the child, ``_put_nowait`` waits when the parent falls behind by more than
the shared slots (``_handoff_block = True``, the default), or drops the item (``_handoff_block = False``,
right for a camera, where a newer frame is coming).

The child ignores SIGINT: Ctrl+C in the script closes everything through ``close()``. If the child dies, the
object fires ``onError`` with a :class:`~rtcbot.errors.WorkerDiedError` giving the exit code. If the script
dies (even by SIGKILL), the child ends within a second, stuck or not.

Hooks for subclasses (the names are kept; use these, not other attributes):

- in the worker: ``_producer()``/``_consumer()``/``_producerConsumer()`` (override), ``_put_nowait(item)``,
  ``_get()``, ``_setReady(value)``, ``_setError(err)``, ``_close()``, ``_wait_closed(timeout)``,
  ``_sendToParent(item)``, and ``self.closed``, ``self.ready``, ``self.error``;
- in the parent: ``_deliver(item)`` (receives what ``_sendToParent`` sent; call super for the rest),
  ``_onLoopThread()``, ``close()`` / ``await close_async()``;
- class settings: ``_handoff_block``, ``_handoff_slots``, ``_handoff_pool_bytes``, ``_feed_window``,
  ``_feed_window_bytes``, ``_feed_window_stretch``, ``_parent_only_attributes``; keywords ``joinTimeout``,
  ``daemonProcess``, ``start_method``.
"""
from __future__ import annotations

import asyncio
import logging
import os
import pickle
import signal
import threading
import traceback
from typing import Any, FrozenSet, Optional

from ..errors import WorkerDiedError
from .base import BaseSubscriptionConsumer, BaseSubscriptionProducer, SubscriptionClosed
from .events import LoopBound, baseEventHandler
from .feed_window import FeedWindow
from .process_child import (
    SubscriptionFailed,
    WorkerSide,
    internalSubscriptionMessage,
    picklable_error,
    worker_process_main,
)
from .process_start import (
    DEFAULT_START_METHOD,
    START_METHOD_VARIABLE,
    chosen_start_method,
    context_for,
    lifeline,
    needs_main,
    script_name,
    start_process,
)
from .process_state import check_class_picklable, check_state_without_spawning, find_what_cannot_cross, worker_state
from .thread import _close_in_thread
from .transport import ChannelClosed, ParentEndpoint, socket_pair
from .worker import EXIT_MAIN_NOT_GUARDED, StartsWorkerMeta

__all__ = [
    "DEFAULT_START_METHOD",
    "START_METHOD_VARIABLE",
    "ProcessSubscriptionConsumer",
    "ProcessSubscriptionProducer",
    "ProcessSubscriptionProducerConsumer",
    "internalSubscriptionMessage",
]

# Former private names, kept for code that imported them.
_SubscriptionFailed = SubscriptionFailed
_WorkerSide = WorkerSide
_picklable_error = picklable_error


class _ProcessWorker(LoopBound, baseEventHandler, metaclass=StartsWorkerMeta):
    """The worker-process lifetime shared by process producers and consumers (the parent's side).

    One :class:`~rtcbot.base.lifecycle.Lifecycle` owns it. The first to begin closing does the teardown:

    - ``close()`` (any thread): asks the worker to stop, waits ``joinTimeout`` for it, then terminates and
      kills it, then closes the channel and fires onClose on the loop. Later callers wait for that.
    - the worker ending by itself ("done", or the channel's EOF when it died): a reaper thread (owned, and
      joined by ``close()``) joins, escalates and reports a death with its exit code, so the event loop
      never blocks on a child that lingers.
    """

    _handoff_block = True  # child's _put_nowait waits when the parent falls behind (False: drop the item)
    _handoff_slots = 4  # shared-memory slots for arrays in flight, each direction, at least
    # ...and arrays small enough get up to twice as many, while a pool of them fits in this many bytes: eight
    # slots for 640x480 frames, four for 1280x720 and up. With four, the sender took turns with the receiver
    # (it waited for a slot while the other process slept, once per frame or two); eight keep both busy.
    _handoff_pool_bytes = 8 << 20
    # Attributes that stay in the parent (see rtcbot.base.process_state); subclasses add their own.
    _parent_only_attributes = frozenset(
        {
            "_life", "_ready_waiters", "_ready_event", "_error_event", "_close_event", "_is_ready", "_error",
            "_is_closed", "_loop", "_process", "_endpoint", "_feed_task", "_feed_flow", "_feed_credit",
            "_lifeline", "_reaper", "_daemon_process", "_join_timeout", "_start_method", "_worker_done",
            "_shouldClose", "_worker_side", "_default_subscription_class", "_default_subscription",
            "_subscriptions", "_puts", "_put_one", "_pending_gets", "_subscriber_failures",
            "_direct_put_subscription_type", "_direct_put_subscription", "_source", "_user_subscription",
            "_owned_subscription", "_pending_get", "_switches", "_parent_only_keys", "_owner_thread", "_ended_gets",
        }
    )
    _worker_side: Optional[WorkerSide] = None
    _process: Any = None
    _endpoint: Optional[ParentEndpoint] = None
    _lifeline: Any = None
    _reaper: Optional[threading.Thread] = None
    _feed_task: Optional[asyncio.Task] = None
    _join_timeout = 1.0
    _worker_done = False

    def _init_process(
        self,
        preexisting: FrozenSet[str],
        loop: Optional[asyncio.AbstractEventLoop],
        daemonProcess: bool,
        joinTimeout: float,
        start_method: Optional[str],
    ) -> None:
        self._bind_loop(loop)
        self._daemon_process = daemonProcess
        self._join_timeout = joinTimeout
        self._start_method = start_method
        self._process = None
        self._endpoint = None
        self._feed_task = None
        self._worker_done = False

    @property
    def joinTimeout(self) -> float:
        """Seconds ``close()`` waits for the worker process before terminating it."""
        return self._join_timeout

    @joinTimeout.setter
    def joinTimeout(self, value: float) -> None:
        self._join_timeout = value

    # -- starting ------------------------------------------------------------------------------------
    def _start_worker(self) -> None:
        cls = type(self)
        check_class_picklable(cls)
        state = worker_state(self)
        context = context_for(self._start_method)
        if context.get_start_method() == "fork":  # nothing is pickled: the child inherits the values
            check_state_without_spawning(cls.__name__, state)
        parent_sock, child_sock = socket_pair()
        parent_life, child_life = lifeline()
        self._lifeline = parent_life
        self._process = context.Process(
            target=worker_process_main,
            args=(
                cls,
                state,
                child_sock,
                child_life,
                self._handoff_slots,
                self._handoff_pool_bytes,
                self._handoff_block,
                dict(os.environ),
            ),
            name=f"rtcbot-{cls.__name__}",
            daemon=self._daemon_process,
        )
        try:
            try:
                start_process(self._process, omit_main=not needs_main(cls, state))
            except (TypeError, AttributeError, pickle.PicklingError) as e:  # the state failed to pickle
                raise find_what_cannot_cross(cls.__name__, state, e) from e
        except BaseException:
            self._process = None
            parent_sock.close()
            self._release_lifeline()
            raise
        finally:
            child_sock.close()
            child_life.close()
        self._endpoint = ParentEndpoint(
            parent_sock,
            self._loop,
            self._on_item_from_worker,
            self._on_worker_gone,
            slots=self._handoff_slots,
            pool_bytes=self._handoff_pool_bytes,
        )
        self._endpoint.start()
        assert self._life is not None
        self._life.running()
        self._start_feeding()

    def _start_feeding(self) -> None:
        """Consumers start a task that forwards their subscription to the child."""

    # -- parent side: what arrives from the child ----------------------------------------------------
    def _on_item_from_worker(self, item: Any) -> None:
        if type(item) is internalSubscriptionMessage:
            self._on_control(item)
        else:
            self._deliver(item)

    def _deliver(self, item: Any) -> None:
        """Receives what the worker sent with ``_sendToParent`` (producers: their items). Override it to
        handle status items; call super for the rest."""
        self._log.warning("%s: its worker sent an item, but it is not a producer; dropped", type(self).__name__)

    def _on_control(self, message: internalSubscriptionMessage) -> None:
        kind = message.type
        if kind == "ready":
            self._set_ready_now(message.value)
        elif kind == "error":
            err, tb = message.value
            self._log.error("%s: worker process failed:\n%s", type(self).__name__, tb)
            self._set_error_now(err)
        elif kind == "took":
            self._feed_took(*message.value)
        elif kind == "done":
            # The worker returned (or failed, or was asked to close): it is exiting.
            self._worker_done = True
            self._worker_ended(died=False)
        # "close" from the worker needs nothing here: the worker stops and sends "done".

    def _on_worker_gone(self) -> None:
        if not self._worker_done:
            self._worker_ended(died=True)

    def _worker_ended(self, died: bool) -> None:
        """On the loop: the worker ended by itself. The joining happens in a reaper thread, not here."""
        life = self._life
        assert life is not None
        if not life.begin_close():
            return  # someone is closing it already
        self._shouldClose = True
        self._reaper = threading.Thread(
            target=self._reap, args=(died,), name=f"rtcbot-reaper-{type(self).__name__}", daemon=True
        )
        self._reaper.start()

    def _reap(self, died: bool) -> None:
        """In the reaper thread: wait for the child to exit (escalating), report a death, then close."""
        life = self._life
        assert life is not None
        try:
            code = self._stop_process(self._join_timeout, warn=False)
            if died:
                self._report_death(code)
        finally:
            self._call_on_loop(self._close_loop_side)
            life.finish_close()

    def _report_death(self, code: Optional[int]) -> None:
        name = type(self).__name__
        if code == EXIT_MAIN_NOT_GUARDED:
            message = (
                f"{script_name()} creates devices when it is imported: {name} is defined in the script, so its "
                "worker process imports the script again. Put the code that creates devices under "
                '`if __name__ == "__main__":` (or move the class into a module of its own).'
            )
            self._call_on_loop(self._set_error_now, WorkerDiedError(message))
            self._call_on_loop(_stop_the_script, message)
            return
        if code is not None and code < 0:
            try:
                how = f"was killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"was killed by signal {-code}"
        else:
            how = f"exited with code {code}"
        advice = "check the log above for what it was doing, and the system log (dmesg) for the OOM killer"
        err = WorkerDiedError(f"{name}: its worker process {how} without closing; {advice}")
        self._log.error("%s", err)
        self._call_on_loop(self._set_error_now, err)

    def _feed_took(self, count: int, starved: bool) -> None:
        """The worker's _get() took ``count`` items, and waited for one since its last report if ``starved``
        (consumers count them to bound what waits in the worker)."""

    def _set_ready_now(self, value: bool) -> None:
        baseEventHandler._setReady(self, value)

    def _set_error_now(self, err: BaseException) -> None:
        baseEventHandler._setError(self, err)

    # -- worker-side API (these also work in the parent) ---------------------------------------------
    def _worker_main(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _wait_closed(self, timeout: Optional[float] = None) -> bool:
        """In the worker: block until close() was called (True) or ``timeout`` seconds passed (False)."""
        side = self._worker_side
        if side is None:
            return self._shouldClose
        return side.close_requested.wait(timeout)

    def _sendToParent(self, item: Any) -> None:
        """In the worker: send a status item (counters, a measurement) to the parent, where ``_deliver(item)``
        receives it. A consumer uses this to report back; a producer's ``_put_nowait`` does the same for data.
        Raises SubscriptionClosed once the parent is gone."""
        side = self._worker_side
        if side is None:
            self._deliver(item)
        else:
            side.send(item)

    def _setReady(self, value: bool = True) -> None:
        side = self._worker_side
        if side is None:
            self._set_ready_now(value)
        else:
            self._is_ready = bool(value) and not self._shouldClose
            side.control("ready", bool(value))

    def _setError(self, err: BaseException) -> None:
        side = self._worker_side
        if side is None:
            self._set_error_now(err)
        else:
            if self._error is None:
                self._error = err
            self._is_ready = False
            side.control("error", (picklable_error(err, ""), f"{type(err).__name__}: {err}"))

    def _close(self) -> None:
        """Close from inside the worker (or the parent) without waiting."""
        side = self._worker_side
        if side is None:
            self._begin_close_without_waiting()
        else:
            side.request_stop()
            side.control("close")

    def _begin_close_without_waiting(self) -> None:
        life = self._life
        if life is None or not life.begin_close():
            return
        self._shouldClose = True
        self._ask_worker_to_stop()
        self._reaper = threading.Thread(
            target=self._reap, args=(False,), name=f"rtcbot-reaper-{type(self).__name__}", daemon=True
        )
        self._reaper.start()

    # -- closing -------------------------------------------------------------------------------------
    def _ask_worker_to_stop(self) -> None:
        self._shouldClose = True
        endpoint = self._endpoint
        if endpoint is not None:
            endpoint.shutdown_write()  # the worker reads EOF and stops; threadsafe

    def _stop_process(self, timeout: float, warn: bool) -> Optional[int]:
        """Join the child (``timeout``), then terminate and kill it; release it. Returns its exit code.
        Called by the one closer only (the lifecycle guarantees it), from a thread that may block."""
        process = self._process
        if process is None:
            self._release_lifeline()
            return None
        process.join(timeout)
        if process.is_alive():
            if warn:
                self._log.warning(
                    "%s: worker process did not stop within %.1f s (stuck in a blocking call?); terminating it",
                    type(self).__name__,
                    timeout,
                )
            process.terminate()
            process.join(0.5)
            if process.is_alive():
                process.kill()
                process.join(0.5)
        code = process.exitcode
        if not process.is_alive():
            process.close()
            self._process = None
        self._release_lifeline()
        return code

    def _release_lifeline(self) -> None:
        life, self._lifeline = self._lifeline, None
        if life is not None:
            life.close()

    def _close_loop_side(self) -> None:
        """On the loop, once: stop feeding, close the channel, then unsubscribe and fire onClose."""
        life = self._life
        if life is not None and not life.claim_loop_side():
            return
        self._shouldClose = True
        task = self._feed_task
        if task is not None and not task.done():
            try:
                task.cancel()
            except RuntimeError:  # its loop is closed already
                pass
        endpoint, self._endpoint = self._endpoint, None
        if endpoint is not None:
            endpoint.close()
        self._close_base()

    def _closeNow(self, wait: bool = True) -> None:
        """Former name of the whole close (kept for subclasses that called it)."""
        if wait:
            _ProcessWorker.close(self)
        else:
            self._begin_close_without_waiting()

    def _close_base(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def close(self) -> None:
        """Shuts down the worker process (waiting at most ``joinTimeout`` seconds, then terminating it) and
        closes all subscriptions. Safe from any thread, any number of times, at any moment, and on a
        half-constructed object. From an async function prefer ``await obj.close_async()``."""
        if self._worker_side is not None:
            self._close()
            return
        life = self._life
        if life is None:
            self._shouldClose = True
            return
        if life.begin_close():
            try:
                self._ask_worker_to_stop()
                self._stop_process(self._join_timeout, warn=True)
            finally:
                self._call_on_loop(self._close_loop_side)
                life.finish_close()
            return
        if not life.wait_closed(self._join_timeout + 2.0):
            self._log.warning(
                "%s: still closing after %.1f s; giving up waiting", type(self).__name__, self._join_timeout
            )
        reaper = self._reaper
        if reaper is not None and reaper is not threading.current_thread():
            reaper.join(1.0)  # it has finished closing: only its last lines are left
        if self._onLoopThread():
            self._close_loop_side()  # so onClose has fired when close() returns on the loop

    async def close_async(self) -> None:
        """Close without blocking the event loop: the waiting for the worker happens in a thread::

            await serial.close_async()
        """
        await _close_in_thread(self)


def _stop_the_script(message: str) -> None:
    """On the loop: a worker class defined in an unguarded script cannot start; end the script with one
    message instead of tracebacks (SystemExit leaves run_forever()/asyncio.run() and prints the message)."""
    raise SystemExit(f"rtcbot: {message}")


class _FeedsWorker(_ProcessWorker):
    """Consumers: a task on the event loop forwards the active subscription to the child.

    What waits in the child for its ``_get()`` is bounded by a :class:`~rtcbot.base.feed_window.FeedWindow`:
    at most ``_feed_window`` items, and beyond two items at most ``_feed_window_bytes`` (camera frames: three
    at 640x480, two at 1280x720 and larger: a worker slower than its camera works on a frame at most that many
    frames old, and a fast one is refilled while it works on the others). While the worker keeps up (it
    waits for items while the feed waits for room), both bounds, the bytes and the two items always allowed,
    stretch up to ``_feed_window_stretch`` times, so that the two processes do not take turns sleeping once
    per frame; they are back at the first report saying items were waiting for the worker. With the default
    settings the stretched byte bound (8 MB) is ``_handoff_pool_bytes``, so a frame that waits in the worker
    is lent its slot (eight at 640x480) rather than copied, and up to eight larger frames may go ahead (as
    many as the slots allow: four at 1080p).
    The feed then waits, so a slow worker reads its subscription at its own pace (a camera's newest-frame
    subscription drops what it is too slow for, as for a threaded consumer) instead of its process queueing
    every item, without limit.
    """

    _feed_window = 256  # items sent to the worker and not yet taken by its _get(), at most
    _feed_window_bytes = 2 << 20  # ...and beyond two such items, at most this many bytes of them
    _feed_window_stretch = 4  # ...or up to this many times that while the worker keeps up (see FeedWindow)
    _feed_flow: Optional[FeedWindow] = None
    _feed_credit: Optional[asyncio.Event] = None

    @property
    def _feedInFlight(self) -> int:
        """Items sent to the worker and not yet taken (for tests and diagnostics)."""
        window = self._feed_flow
        return 0 if window is None else window.in_flight

    def _start_feeding(self) -> None:
        self._feed_flow = FeedWindow(self._feed_window, self._feed_window_bytes, self._feed_window_stretch)
        self._feed_task = self._loop.create_task(self._feed())
        self._feed_task.add_done_callback(self._feed_ended)

    def _feed_took(self, count: int, starved: bool) -> None:
        window = self._feed_flow
        if window is not None:
            window.took(count, starved)
        credit = self._feed_credit
        if credit is not None:
            credit.set()

    async def _feed(self) -> None:
        endpoint = self._endpoint
        window = self._feed_flow
        assert endpoint is not None and window is not None
        credit = self._feed_credit = asyncio.Event()  # created here: on the loop that runs the feed
        held = False  # the item sent last waits to go out with this one
        last_size = 0  # bytes the item sent last took
        while True:
            while window.full:
                if window.ask():  # ask the worker to say when it took half of what waits there
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
                subscription = getattr(self, "_user_subscription", None)
                self._log.error(
                    "%s: its subscription %r failed (%s: %s); it is no longer read",
                    type(self).__name__,
                    subscription,
                    type(e).__name__,
                    e,
                )
                self.stopSubscription()  # type: ignore[attr-defined]
                item = SubscriptionFailed(picklable_error(e, traceback.format_exc()))
            try:
                if window.half_full and window.ask():  # ask early: the report is back before the window is full
                    endpoint.send_nowait(internalSubscriptionMessage("report", None), flush=False)  # rides along
                # Unpaced, the next item is often waiting already: it goes in the same write, so the worker
                # is woken once per pair of items (a write that wakes it costs both processes more than the
                # bytes). One item waits for the next at most, never for one that is not there yet, and only
                # while the window has room for that next one (large frames, two to a window, go at once).
                pair = (
                    not held
                    and window.in_flight > 0
                    and not window.fills_up_with(last_size)  # this item's size is known once it is sent
                    and BaseSubscriptionConsumer._next_item_ready(self)  # type: ignore[arg-type]
                )
                last_size = await endpoint.send(item, flush=not pair)
                window.sent(last_size)
                held = pair
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

    def _feed_ended(self, task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            err = task.exception()
            self._log.error("%s: feeding the worker failed", type(self).__name__, exc_info=err)

    def _get(self) -> Any:  # type: ignore[override]
        """In the worker: block until the next item arrives; SubscriptionClosed after close()."""
        side = self._worker_side
        if side is None:
            raise RuntimeError(f"{type(self).__name__}._get() is called in the worker process, not the parent")
        return side.get()


class _ProducesInWorker(_ProcessWorker):
    """Producers: items the worker puts reach the parent's subscribers."""

    def _put_nowait(self, element: Any) -> None:
        """In the worker: send an item to the parent's subscribers. In the parent: fan it out directly."""
        side = self._worker_side
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
        chosen_start_method(start_method)  # an unknown start method fails first, before anything is set up
        pre = frozenset(self.__dict__)
        BaseSubscriptionProducer.__init__(self, defaultSubscriptionType, logger=logger, ready=False)
        self._init_process(pre, loop, daemonProcess, joinTimeout, start_method)

    def _producer(self) -> None:
        """Runs in the worker process. Override it; the default sets ready and waits for close()."""
        self._setReady(True)
        self._wait_closed()

    def _worker_main(self) -> None:
        self._producer()

    def _close_base(self) -> None:
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
        chosen_start_method(start_method)  # an unknown start method fails first, before anything is set up
        pre = frozenset(self.__dict__)
        BaseSubscriptionConsumer.__init__(self, directPutSubscriptionType, logger=logger, ready=False)
        self._init_process(pre, loop, daemonProcess, joinTimeout, start_method)

    def _consumer(self) -> None:
        """Runs in the worker process. Override it; the default sets ready and waits for close()."""
        self._setReady(True)
        self._wait_closed()

    def _worker_main(self) -> None:
        self._consumer()

    def _close_base(self) -> None:
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
        chosen_start_method(start_method)  # an unknown start method fails first, before anything is set up
        pre = frozenset(self.__dict__)
        BaseSubscriptionConsumer.__init__(self, directPutSubscriptionType, logger=logger, ready=False)
        BaseSubscriptionProducer.__init__(
            self, defaultSubscriptionType, defaultAutosubscribe, logger=self._log, ready=False
        )
        self._init_process(pre, loop, daemonProcess, joinTimeout, start_method)

    def _producerConsumer(self) -> None:
        """Runs in the worker process. Override it; the default sets ready and waits for close()."""
        self._setReady(True)
        self._wait_closed()

    def _worker_main(self) -> None:
        self._producerConsumer()

    def _close_base(self) -> None:
        BaseSubscriptionConsumer.close(self)
        BaseSubscriptionProducer.close(self)

    def close(self) -> None:
        """Shuts down the worker process (at most ``joinTimeout`` seconds) and closes all subscriptions."""
        _ProcessWorker.close(self)
