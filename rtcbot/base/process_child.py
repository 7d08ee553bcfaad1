"""The child side of a process producer/consumer: what runs in the worker process.

:func:`worker_process_main` is the child's entry point. It rebuilds the object from the state that crossed
(see :mod:`rtcbot.base.process_state`) as a whole object, with ``closed``, ``ready`` and ``error`` working,
attaches a :class:`WorkerSide` (the channel to the parent, the items waiting for ``_get()``, the flow-control
reports), runs the worker method and reports how it ended. A watchdog thread ends the child within half a
second of the parent dying, even when the worker is stuck in a blocking call.
"""
from __future__ import annotations

import logging
import os
import pickle
import queue
import signal
import socket
import threading
import traceback
from typing import Any, Dict, Optional

from ..errors import WorkerDiedError
from .base import SubscriptionClosed
from .lifecycle import Lifecycle
from .transport import ChannelClosed, WorkerEndpoint

__all__ = ["internalSubscriptionMessage", "WorkerSide", "worker_process_main"]

logger = logging.getLogger("rtcbot.base.process_child")

PARENT_GONE_GRACE = 0.25  # seconds a worker has to end by itself once its parent died, before it is ended


class internalSubscriptionMessage:
    """A control message between the parent and the worker process: ``type`` is "ready", "error", "close",
    "done", "took" or "report", ``value`` its argument."""

    __slots__ = ("type", "value")

    def __init__(self, type: str, value: Any) -> None:
        self.type = type
        self.value = value

    def __reduce__(self):
        return (internalSubscriptionMessage, (self.type, self.value))

    def __repr__(self) -> str:
        return f"internalSubscriptionMessage({self.type!r}, {self.value!r})"


_CLOSED = object()


class SubscriptionFailed:
    """Sent to the worker in place of an item when the consumer's subscription raised: its ``_get()``
    raises ``error``, as a threaded consumer's does."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def __reduce__(self):
        return (SubscriptionFailed, (self.error,))


def picklable_error(err: BaseException, tb: str) -> BaseException:
    """``err`` if it can cross to the parent, else a WorkerDiedError carrying its text."""
    try:
        pickle.loads(pickle.dumps(err))
        return err
    except Exception:
        return WorkerDiedError(f"{type(err).__name__}: {err}\n{tb}")


class WorkerSide:
    """What a process-based object has in its child process instead of subscriptions and events."""

    def __init__(self, obj: Any, sock: socket.socket, slots: int, pool_bytes: int, block: bool) -> None:
        self.obj = obj
        self.block = block
        self.close_requested = threading.Event()
        self.items: queue.SimpleQueue = queue.SimpleQueue()
        # Flow control (see FeedWindow in the parent): the parent is told how many items _get() took, every
        # half window, and, when it waits for room, once half of the items waiting here were taken. A report
        # does not get a write of its own (each write wakes the parent): it rides with the next one (the
        # returned slot of the item before, usually), and goes at the latest when _get() is called again or
        # is about to wait, when the parent asks while _get() waits, or when the worker ends.
        self.lock = threading.Lock()
        self.getters_waiting = 0  # threads blocked in get() for the next item
        self.starved = False  # get() waited for an item since the last report (the worker keeps up)
        self.received = 0  # items from the parent so far
        self.taken = 0  # items _get() returned
        self.reported = 0  # taken items the parent was told about
        self.report_at: Optional[int] = None  # the parent waits: report once this many items were taken
        self.report_every = max(1, getattr(obj, "_feed_window", 2) // 2)
        self.stopped = False  # a close message came: later items are not for _get()
        # Items are handed over in the thread reading the channel (its reader thread, get() waiting, or
        # _put_nowait() sending through shared memory: no thread of ours in between); it may call back before
        # the endpoint is assigned below, so the callbacks wait for that.
        self._attached = threading.Event()
        self.endpoint = WorkerEndpoint(
            sock, slots=slots, pool_bytes=pool_bytes, on_item=self._on_item, on_eof=self._on_eof
        )
        self._attached.set()

    def _on_eof(self) -> None:
        self._attached.wait()
        self.request_stop()

    def _on_item(self, item: Any) -> None:
        """In the thread reading the channel (its reader thread, _get() waiting, or _put_nowait() sending):
        items queue up for _get(); a close message stops the worker."""
        self._attached.wait()
        if self.stopped:
            return
        if type(item) is internalSubscriptionMessage:
            if item.type == "close":
                self.stopped = True
                self.request_stop()
            elif item.type == "report":
                with self.lock:
                    # once half of what waits here was taken: the parent refills while the rest is worked on
                    self.report_at = self.taken + (self.received - self.taken) // 2
                self.report()
                with self.lock:  # checked after the report was queued: a get() that starts waiting later sends it
                    # waiting with nothing to take (an item that came with the request wakes it: its next get()
                    # or returned slot sends the report)
                    idle = self.getters_waiting > 0 and self.items.empty()
                if idle:  # nobody calls get() to send it: the parent would wait for the next item for good
                    self.endpoint.flush()
            return
        with self.lock:
            self.received += 1
        self.items.put(item)

    def _has_item(self) -> bool:
        return not self.items.empty()

    def request_stop(self) -> None:
        self.obj._shouldClose = True
        self.obj._life.begin_close()
        self.close_requested.set()
        self.items.put(_CLOSED)
        self.endpoint.wake_waiting()  # a get() may be reading the channel for the next item
        # A _put_nowait waiting for the parent to free a slot would wait forever: the parent stops reading
        # once it asked us to close. It raises SubscriptionClosed instead, which ends the worker.
        self.endpoint.stop_waiting()

    def get(self) -> Any:
        if self.obj._shouldClose:
            raise SubscriptionClosed("closed")
        self.endpoint.flush()  # a report held back since the last get() goes now, if nothing took it along
        try:
            item = self.items.get_nowait()
        except queue.Empty:
            with self.lock:
                self.getters_waiting += 1
                self.starved = True
            try:
                self.endpoint.flush()  # a report queued by the channel's reader just before we counted ourselves
                # This thread may read the next item off the channel itself: one thread hop fewer per item.
                self.endpoint.wait_for(self._has_item)
                item = self.items.get()  # the channel ended: on_eof puts _CLOSED here
            finally:
                with self.lock:
                    self.getters_waiting -= 1
        if item is _CLOSED:
            self.items.put(_CLOSED)  # every later _get() ends too
            raise SubscriptionClosed("closed")
        with self.lock:
            self.taken += 1
        self.report()
        if type(item) is SubscriptionFailed:
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
            starved, self.starved = self.starved, False
        self.endpoint.send_soon(internalSubscriptionMessage("took", (due, starved)))  # rides with the next write

    def send(self, item: Any, block: bool = True) -> None:
        try:
            self.endpoint.send(item, block=block)
        except ChannelClosed:
            self.request_stop()
            raise SubscriptionClosed("the parent process is gone") from None

    def control(self, kind: str, value: Any = None) -> None:
        try:
            self.endpoint.send(internalSubscriptionMessage(kind, value))
        except ChannelClosed:
            self.request_stop()


def _watch_parent(lifeline: socket.socket, side_holder: Dict[str, Any], finished: threading.Event) -> None:
    """In the child: block on the lifeline; EOF means the parent died (it holds its end until the child is
    reaped). Ask the worker to stop, give it a moment, then end the process whatever it is doing."""
    try:
        while lifeline.recv(64):
            pass
    except OSError:
        pass
    side = side_holder.get("side")
    if side is not None:
        side.request_stop()
    if not finished.wait(PARENT_GONE_GRACE):
        os._exit(1)


def worker_process_main(
    cls: Any,
    state: Dict[str, Any],
    sock: Any,
    lifeline: Any,
    slots: int,
    pool_bytes: int,
    block: bool,
    environment: Dict[str, str],
) -> None:
    """Entry point of the child process."""
    finished = threading.Event()
    holder: Dict[str, Any] = {}
    watchdog = threading.Thread(
        target=_watch_parent, args=(lifeline, holder, finished), name="rtcbot-parent-watchdog", daemon=True
    )
    watchdog.start()
    # A forkserver child inherits the server's environment, from when it started; give it the parent's now,
    # as fork and spawn would (e.g. PULSE_SERVER or DISPLAY set by the script).
    if os.environ != environment:
        os.environ.clear()
        os.environ.update(environment)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # blocked by the parent while starting us
    obj: Any = cls.__new__(cls)
    obj.__dict__.update(state)
    # The worker side is a whole object: closed, ready and error work here too.
    obj._shouldClose = False
    obj._is_ready = False
    obj._error = None
    obj._is_closed = False
    obj._life = Lifecycle()
    obj._life.running()
    obj._worker_side = side = WorkerSide(obj, sock, slots, pool_bytes, block)
    holder["side"] = side
    try:
        obj._worker_main()
    except SubscriptionClosed:
        pass
    except BaseException as e:  # everything the worker raised must reach the parent, even SystemExit
        tb = traceback.format_exc()
        obj._error = e
        side.control("error", (picklable_error(e, tb), tb))
    finally:
        side.control("done")
        side.endpoint.close()
        finished.set()
