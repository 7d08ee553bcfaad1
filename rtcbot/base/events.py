"""Ready, error and close events shared by every producer and consumer.

Each event can be watched with a callback, a coroutine, a subscription, or awaited directly::

    @camera.onError
    def failed(err):
        print("camera stopped:", err)

    await camera.onReady()          # returns once the camera delivers frames
    err = await camera.onError()    # returns the exception that stopped it
    await camera                    # returns once it is closed
"""
from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import threading
import warnings
from typing import Any, List, Optional

from ..errors import DeviceClosedError
from ..subscriptions import CallbackSubscription, EventSubscription
from .lifecycle import Lifecycle
from .waiters import Waiters

__all__ = ["LoopBound", "baseEventHandler", "threadedEventHandler", "resolve_loop"]


def resolve_loop(loop: Optional[asyncio.AbstractEventLoop] = None) -> asyncio.AbstractEventLoop:
    """The event loop an object created now should use.

    The running loop when there is one (objects created inside ``asyncio.run()``). Otherwise (classic RTCBot
    style: objects created at module level, then ``asyncio.get_event_loop().run_forever()``) the thread's
    current loop, created and set if there is none, without the DeprecationWarning that
    ``asyncio.get_event_loop()`` gives there on Python 3.12+.
    """
    if loop is not None:
        return loop
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        pass
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        policy = asyncio.get_event_loop_policy()
        try:
            return policy.get_event_loop()
        except RuntimeError:
            new_loop = policy.new_event_loop()
            policy.set_event_loop(new_loop)
            return new_loop


def _as_subscription(subscription: Any, owner: Optional[str] = None) -> Any:
    """Turn what a user passed to subscribe()/onReady()... into something with put_nowait. ``owner`` names
    who will call it ("SimCamera subscriber"), for the log when the callback raises."""
    if hasattr(subscription, "put_nowait"):
        return subscription
    if callable(subscription):
        return CallbackSubscription(subscription, owner=owner)
    raise TypeError(
        f"{owner or 'subscribe()'} must be a callback, a coroutine function or a subscription with "
        f"put_nowait(), got {type(subscription).__name__}: {subscription!r}"
    )


def _takes_no_argument(fn: Any) -> bool:
    """True for a callback declared with no positional parameter (``def on_ready(): ...``)."""
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: call it with the value
        return False
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return not any(p.kind in positional or p.kind == inspect.Parameter.VAR_POSITIONAL for p in parameters)


def _without_argument(fn: Any) -> Any:
    """Adapts a no-argument event callback (as the API documents them) to be called with the event's value."""
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def call_async(value: Any) -> Any:
            return await fn()

        return call_async

    @functools.wraps(fn)
    def call(value: Any) -> Any:
        return fn()

    return call


class _Event:
    """One event (ready, error or close): a value, whether it fired, and who listens."""

    __slots__ = ("_listeners", "fired", "value", "_repeat", "_name")

    def __init__(self, repeat: bool, name: str = "event") -> None:
        self._listeners: List[Any] = []
        self.fired = False
        self.value: Any = None
        self._repeat = repeat  # ready can fire again after it was lost; error and close fire once
        self._name = name  # "SimCamera.onError", for the log

    def subscribe(self, subscription: Any) -> Any:
        if subscription is None:
            sink = EventSubscription()
            result: Any = sink
        else:
            callback = subscription
            if not hasattr(callback, "put_nowait") and callable(callback) and _takes_no_argument(callback):
                callback = _without_argument(callback)  # @camera.onReady def ready(): ... (as documented)
            sink = _as_subscription(callback, owner=f"{self._name} callback")
            result = subscription
        if self.fired and self.value is not False:
            sink.put_nowait(self.value)
            if isinstance(sink, EventSubscription):
                return result
        self._listeners.append(sink)
        return result

    def fire(self, value: Any) -> None:
        if self.fired and not self._repeat:
            return
        self.fired = True
        self.value = value
        listeners = self._listeners
        self._listeners = [s for s in listeners if not isinstance(s, EventSubscription)]
        for sink in listeners:
            try:
                sink.put_nowait(value)
            except Exception:
                logging.getLogger("rtcbot.base.events").exception("%s listener %r raised", self._name, sink)


class _ReadyWait:
    """What ``onReady()`` returns: awaiting it (or its ``get()``) gives True once the object is ready, and
    raises at once if the object failed or closed first: the error that stopped it, or DeviceClosedError."""

    __slots__ = ("_owner",)

    def __init__(self, owner: baseEventHandler) -> None:
        self._owner = owner

    async def get(self) -> bool:
        owner = self._owner
        if owner._is_ready:
            return True
        failure = owner._not_ready_reason()
        if failure is not None:
            raise failure
        waiters = owner._ready_waiters
        assert waiters is not None
        return await waiters.wait()

    def __await__(self):
        return self.get().__await__()


class baseEventHandler:
    """This class handles base events: ready, error and close (see the module docstring).

    Objects are context managers: ``with obj:`` and ``async with obj:`` close them on the way out.

    ``await obj.onReady()`` never hangs: if the object fails or is closed before it was ready, the await
    ends at once, raising the error that stopped it (e.g. :class:`~rtcbot.errors.DeviceOpenError`,
    :class:`~rtcbot.errors.WorkerDiedError`) or, closed without an error, a
    :class:`~rtcbot.errors.DeviceClosedError`.

    Hooks for subclasses: ``_setReady(value)``, ``_setError(err)`` (both callable from the worker in the
    threaded and process flavours), and ``_life`` (the :class:`~rtcbot.base.lifecycle.Lifecycle`).
    """

    # Class-level defaults keep the properties and close() safe on a half-constructed object.
    _is_ready = False
    _error: Optional[BaseException] = None
    _is_closed = False
    _life: Optional[Lifecycle] = None
    _ready_waiters: Optional[Waiters] = None

    def __init__(self, logger: Optional[logging.Logger] = None) -> None:
        self._log = logger if logger is not None else logging.getLogger("rtcbot." + type(self).__name__)
        name = type(self).__name__
        self._ready_event = _Event(repeat=True, name=f"{name}.onReady")
        self._error_event = _Event(repeat=False, name=f"{name}.onError")
        self._close_event = _Event(repeat=False, name=f"{name}.onClose")
        self._is_ready = False
        self._error = None
        self._is_closed = False
        if self._life is None:  # a flavour may have made it already (both consumer and producer init)
            self._life = Lifecycle()
            self._ready_waiters = Waiters(f"{name}.onReady")

    def _not_ready_reason(self) -> Optional[BaseException]:
        """Why an ``await onReady()`` cannot succeed any more (None while it still can)."""
        if self._error is not None:
            return self._error
        # Not ``self.closed``: while a close is under way (a worker that failed has begun closing, its error
        # still on its way to the loop), the wait goes on; the close itself ends it, with the error if any.
        if self._is_closed:
            return DeviceClosedError(
                f"{type(self).__name__} was closed before it was ready (check the log for why it stopped)"
            )
        return None

    def _setReady(self, value: bool = True) -> None:
        """Sets the ready state, firing onReady() subscriptions when it becomes True."""
        value = bool(value)
        if value and self.closed:
            return  # a worker finishing its start after close(): the object stays not ready
        was = self._is_ready
        self._is_ready = value
        if value and not was:
            self._ready_event.fire(True)
            if self._ready_waiters is not None:
                self._ready_waiters.wake(True)
        elif not value:
            self._ready_event.fired = False

    def _setError(self, value: BaseException) -> None:
        """Sets the error state: the object crashed and is no longer processing data. Fires onError()."""
        if self._error is not None:
            return
        self._error = value
        self._is_ready = False
        if hasattr(self, "_ready_event"):
            self._ready_event.fired = False  # a later onReady() listener is not told "ready"
            if self._ready_waiters is not None:
                self._ready_waiters.fail_all(value)
            self._error_event.fire(value)

    @property
    def ready(self) -> bool:
        """True once the object is fully initialized and processing data."""
        return self._is_ready

    @property
    def error(self) -> Optional[BaseException]:
        """The exception that stopped the object, or None."""
        return self._error

    @property
    def closed(self) -> bool:
        """Whether the object was closed, cleanly or by an error."""
        life = self._life
        return self._is_closed or self._error is not None or (life is not None and life.closing)

    def onReady(self, subscription: Any = None) -> Any:
        """Listen for the ready event: a callback, coroutine or subscription; with no argument, an awaitable
        that returns True once ready, or raises if the object failed or closed first (see the class doc)."""
        if subscription is None:
            return _ReadyWait(self)
        return self._ready_event.subscribe(subscription)

    def onError(self, subscription: Any = None) -> Any:
        """Listen for the error event; ``err = await obj.onError()`` returns the exception."""
        return self._error_event.subscribe(subscription)

    def onClose(self, subscription: Any = None) -> Any:
        """Listen for the close event; equivalent to ``await obj``."""
        return self._close_event.subscribe(subscription)

    def close(self) -> None:
        """Fires the onClose event (once); a pending ``await onReady()`` raises DeviceClosedError."""
        life = self._life
        if life is not None:
            life.begin_close()
        self._is_closed = True
        self._is_ready = False
        if hasattr(self, "_close_event"):
            self._ready_event.fired = False
            failure = self._not_ready_reason()
            if self._ready_waiters is not None and failure is not None:
                self._ready_waiters.fail_all(failure)
            self._close_event.fire(None)

    def __await__(self):
        return self.onClose().__await__()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        self.close()


class LoopBound:
    """Belongs to one event loop, and can run code on it from any thread: the threaded and process flavours
    share this. ``_bind_loop(loop)`` in the constructor; then ``_onLoopThread()`` says whether the caller is on
    that loop's thread and ``_call_on_loop(fn, *args)`` runs ``fn`` there::

        self._call_on_loop(self._set_ready_now, True)   # from a worker thread: runs on the loop, in order
    """

    _loop: asyncio.AbstractEventLoop
    _owner_thread: Optional[int] = None

    def _bind_loop(self, loop: Optional[asyncio.AbstractEventLoop]) -> None:
        self._loop = resolve_loop(loop)
        self._owner_thread = threading.get_ident()

    def _onLoopThread(self) -> bool:
        """True when called on the thread running this object's event loop (or owning it, not running)."""
        try:
            return asyncio.get_running_loop() is self._loop
        except RuntimeError:
            # No loop running in this thread: safe only in the thread that owns the (not yet running) loop.
            return threading.get_ident() == self._owner_thread and not self._loop.is_running()

    def _call_on_loop(self, fn: Any, *args: Any) -> None:
        """Run ``fn(*args)`` on the object's loop: at once on its thread, scheduled from others, and in place
        when the loop is closed (nobody else is left to notify)."""
        if self._onLoopThread():
            fn(*args)
            return
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:
            fn(*args)


class threadedEventHandler(LoopBound, baseEventHandler):
    """A threadsafe version of baseEventHandler: ``_setReady``, ``_setError`` and ``_close`` may be called from
    a worker thread, and take effect on the object's event loop."""

    def __init__(self, logger: Optional[logging.Logger] = None, loop: Optional[asyncio.AbstractEventLoop] = None):
        super().__init__(logger)
        self._bind_loop(loop)

    def _set_ready_now(self, value: bool) -> None:
        baseEventHandler._setReady(self, value)

    def _set_error_now(self, err: BaseException) -> None:
        baseEventHandler._setError(self, err)

    def _setReady(self, value: bool = True) -> None:
        """Threadsafe version of baseEventHandler._setReady()."""
        self._call_on_loop(self._set_ready_now, value)

    def _setError(self, err: BaseException) -> None:
        """Threadsafe version of baseEventHandler._setError()."""
        self._call_on_loop(self._set_error_now, err)
