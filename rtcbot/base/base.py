"""Asyncio producers and consumers: the machinery every rtcbot device is built on.

A producer fans each item out to its subscriptions; a consumer reads one subscription (or items put into it
directly) and can switch subscriptions mid-stream::

    producer = SubscriptionProducer()
    q = producer.subscribe()            # an asyncio.Queue by default
    producer._put_nowait("hello")       # subclasses call this for each new item
    assert await q.get() == "hello"

Hooks for subclasses (the names are kept; use these, not other attributes): producers call
``_put_nowait(item)`` and check ``_shouldClose``; consumers await ``_get()`` (SubscriptionClosed after close)
and may use ``_unread_direct_items()``, ``_take_unread_direct_items()`` and ``_get_holds_an_item()`` to flush
or drain; both call ``_close()`` to close themselves and ``_setReady``/``_setError`` (see ``events``).
"""
from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

from .._ratelimit import EverySoOften
from ..errors import DeviceClosedError
from .events import _as_subscription, baseEventHandler, resolve_loop

__all__ = [
    "BaseSubscriptionConsumer",
    "BaseSubscriptionProducer",
    "NoClosedSubscription",
    "SubscriptionClosed",
    "SubscriptionConsumer",
    "SubscriptionProducer",
    "SubscriptionProducerConsumer",
]


NOT_READY: Any = object()  # what BaseSubscriptionConsumer._get_if_ready() returns when no item is waiting


class SubscriptionClosed(Exception):
    """Raised by ``_get()`` once ``close()`` was called: the consumer's processing loop should clean up and
    exit. Also raised by a producer's ``get()`` after it was closed."""


class NoClosedSubscription:
    """Wraps a coroutine callback so that a SubscriptionClosed raised inside it becomes a cancellation,
    letting an application exit cleanly::

        producer.subscribe(NoClosedSubscription(forward))

    It is also a subscription whose ``get()`` awaits the wrapped coroutine function, as RTCBot uses it::

        consumer.putSubscription(NoClosedSubscription(self._get))
    """

    def __init__(self, awaitable: Callable[..., Any]) -> None:
        self.callback = awaitable

    async def __call__(self, *args: Any) -> Any:
        try:
            return await self.callback(*args)
        except SubscriptionClosed:
            raise asyncio.CancelledError() from None

    async def get(self) -> Any:
        """Await the wrapped coroutine function for the next item (SubscriptionClosed becomes cancellation)."""
        return await self()


def _cancelling() -> bool:
    """True when the current task was asked to cancel (Python 3.11+ can tell; before, assume not)."""
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)
    return bool(cancelling is not None and cancelling())


def _uncancel(task: asyncio.Task) -> None:
    """Take back one cancellation request made to ``task`` (Python 3.11+ counts them; before, nothing to do)."""
    uncancel = getattr(task, "uncancel", None)
    if uncancel is not None:
        uncancel()


def _is_producer(obj: Any) -> bool:
    return isinstance(obj, BaseSubscriptionProducer) or (
        hasattr(obj, "subscribe") and hasattr(obj, "unsubscribe") and not hasattr(obj, "put_nowait")
    )


class BaseSubscriptionProducer(baseEventHandler):
    """This is a base class upon which all things that emit data in RTCBot are built.

    It keeps track of subscriptions and fans every item out to them. A subclass calls ``_put_nowait(item)``
    for each new item, and either watches ``_shouldClose`` or overrides ``close()``::

        class Counter(BaseSubscriptionProducer):
            def tick(self):
                self._put_nowait(time.time())

        c = Counter()
        s = c.subscribe()          # asyncio.Queue; or pass a callback, a coroutine or a subscription
        c.tick()
        print(await s.get())

    :param defaultSubscriptionClass: the subscription type ``subscribe()`` creates when called with no
        argument (``asyncio.Queue`` by default).
    :param defaultAutosubscribe: create the default subscription used by ``get()`` right away, so it never
        misses data (beware: with an unbounded queue it piles up if ``get()`` is never called).
    :param logger: your class logger; by default ``logging.getLogger("rtcbot.<ClassName>")``.
    :param ready: set ready at once (True by default); pass False and call ``_setReady(True)`` yourself if
        your producer needs setup time.
    """

    # Class-level defaults keep close() safe on a half-constructed object.
    _shouldClose = False
    _subscriptions: Dict[Any, Any] = {}
    _default_subscription: Any = None
    _puts: Tuple[Callable[[Any], None], ...] = ()
    _put_one: Optional[Callable[[Any], None]] = None
    _pending_gets: Set[asyncio.Future] = frozenset()  # type: ignore[assignment]
    _ended_gets: Set[asyncio.Future] = frozenset()  # type: ignore[assignment]

    def __init__(
        self,
        defaultSubscriptionClass: Any = asyncio.Queue,
        defaultAutosubscribe: bool = False,
        logger: Optional[logging.Logger] = None,
        ready: bool = True,
    ) -> None:
        baseEventHandler.__init__(self, logger)
        self._default_subscription_class = defaultSubscriptionClass
        self._default_subscription: Any = None
        self._subscriptions = {}  # what the user holds -> the sink that receives items
        self._puts = ()  # bound put_nowait of every sink, rebuilt on (un)subscribe, not per item
        self._pending_gets: Set[asyncio.Future] = set()
        self._ended_gets: Set[asyncio.Future] = set()  # pending gets cancelled by us, not by their caller
        self._subscriber_failures = EverySoOften(self._log, period=1.0)
        self._shouldClose = False
        if defaultAutosubscribe:
            self._default_subscription = self.subscribe()
        if ready:
            self._setReady(True)

    # -- subscriptions -------------------------------------------------------------------------------
    def subscribe(self, subscription: Any = None) -> Any:
        """Subscribe to new data, returning a subscription.

        With no argument, creates one of the default class (``s = obj.subscribe(); await s.get()``). Given an
        object with ``put_nowait``, a callback or a coroutine function, feeds it and returns what was passed,
        so it works as a decorator::

            @camera.subscribe
            def newFrame(frame):
                print(frame.shape)
        """
        if subscription is None:
            subscription = self._default_subscription_class()
        sink = _as_subscription(subscription, owner=f"{type(self).__name__} subscriber")
        self._subscriptions[subscription] = sink
        self._rebuild_puts()
        return subscription

    def unsubscribe(self, subscription: Any = None) -> None:
        """Removes the given subscription (by default the one created by ``get()``); unknown ones are ignored."""
        if subscription is None:
            subscription = self._default_subscription
            self._default_subscription = None
            if subscription is None:
                return
            if self._pending_gets:
                self._move_pending_gets()
        elif subscription is self._default_subscription:
            self._default_subscription = None
            if self._pending_gets:
                self._move_pending_gets()
        sink = self._subscriptions.pop(subscription, None)
        if sink is not None:
            self._rebuild_puts()
            closer = getattr(sink, "close", None) if sink is not subscription else None
            if closer is not None:
                closer()

    def unsubscribeAll(self) -> None:
        """Removes all active subscriptions, including the default one."""
        for subscription in list(self._subscriptions):
            self.unsubscribe(subscription)
        if self._default_subscription not in self._subscriptions:  # not one made for pending gets just now
            self._default_subscription = None

    def _rebuild_puts(self) -> None:
        self._puts = tuple(sink.put_nowait for sink in self._subscriptions.values())
        # One subscriber is the common case (a camera feeding one consumer): it skips the loop.
        self._put_one = self._puts[0] if len(self._puts) == 1 else None

    async def get(self) -> Any:
        """Like ``subscribe().get()``, on one default subscription created at the first call::

            frame = await camera.get()

        A ``get()`` pending while the default subscription is unsubscribed goes on waiting on the new one;
        pending and later calls raise SubscriptionClosed once the producer is closed.
        """
        while True:
            if self.closed:
                raise SubscriptionClosed(f"{type(self).__name__} is closed")
            if self._default_subscription is None:
                self._default_subscription = self.subscribe()
            subscription = self._default_subscription
            get_nowait = getattr(subscription, "get_nowait", None)
            if get_nowait is not None:
                try:
                    return get_nowait()
                except asyncio.QueueEmpty:
                    pass
            # The caller's task awaits the subscription itself (no task per get, no extra loop turn per
            # item); close() or unsubscribe() wakes it by cancelling it, a request it takes back below.
            task = asyncio.current_task()
            waiter = task if task is not None else asyncio.ensure_future(subscription.get())
            self._pending_gets.add(waiter)
            try:
                return await (subscription.get() if task is not None else waiter)
            except asyncio.CancelledError:
                if waiter not in self._ended_gets:
                    raise  # the caller was cancelled: never swallowed
                if task is not None:
                    _uncancel(task)
                if _cancelling():
                    raise  # the caller was cancelled as well
                if get_nowait is not None:
                    try:
                        return get_nowait()  # an item that reached it before it was unsubscribed
                    except asyncio.QueueEmpty:
                        pass
                if self._shouldClose:
                    raise SubscriptionClosed(f"{type(self).__name__} was closed") from None
                # its subscription was unsubscribed: wait on the new default one
            finally:
                self._pending_gets.discard(waiter)
                self._ended_gets.discard(waiter)

    def _move_pending_gets(self) -> None:
        """The default subscription was unsubscribed under pending ``get()`` calls: they wait on a new one,
        made now, so nothing put from here on is missed."""
        self._end_pending_gets()
        if not self._shouldClose:
            self._default_subscription = self.subscribe()

    def _end_pending_gets(self) -> None:
        """Wake every pending ``get()`` (close, or its default subscription was unsubscribed): each is cancelled
        once, and ``get()`` tells that cancellation from its caller's."""
        for waiter in list(self._pending_gets):
            if not waiter.done() and waiter not in self._ended_gets:
                self._ended_gets.add(waiter)
                waiter.cancel()

    # -- producing -----------------------------------------------------------------------------------
    def _put_nowait(self, element: Any) -> None:
        """Used by subclasses to give an item to every subscription (callbacks included)."""
        one = self._put_one
        if one is not None:
            try:
                one(element)
            except Exception as e:
                self._subscriber_failed(one, e)
            return
        for put in self._puts:
            try:
                put(element)
            except Exception as e:
                self._subscriber_failed(put, e)

    def _subscriber_failed(self, put: Callable[[Any], None], err: Exception) -> None:
        # A full asyncio.Queue(maxsize) or a broken subscription must not stop the other subscribers.
        self._subscriber_failures.warning(
            "%s: subscription %r did not take an item (%s: %s); it was dropped for that subscription",
            type(self).__name__,
            getattr(put, "__self__", put),
            type(err).__name__,
            err,
        )

    # -- closing -------------------------------------------------------------------------------------
    def _close(self) -> None:
        """Closing from the producer itself (use this, not close(), inside an implementation)."""
        BaseSubscriptionProducer.close(self)

    def close(self) -> None:
        """Shuts down the data gathering, and removes all subscriptions."""
        self._shouldClose = True
        if self._pending_gets:
            self._end_pending_gets()
        self.unsubscribeAll()
        if hasattr(self, "_close_event"):
            baseEventHandler.close(self)


class BaseSubscriptionConsumer(baseEventHandler):
    """A base class upon which consumers of subscriptions can be built.

    It handles switching subscriptions mid-stream: a subclass awaits ``self._get()`` in its processing loop
    and always gets the next item of whatever is currently plugged in::

        class Printer(BaseSubscriptionConsumer):
            async def run(self):
                try:
                    while True:
                        print(await self._get())
                except SubscriptionClosed:
                    pass

        p = Printer()
        p.putSubscription(camera)      # a producer, or anything with an async get()
        p.put_nowait("direct item")    # stops the subscription; items now come from put_nowait

    :param directPutSubscriptionType: the queue type that holds items given to ``put_nowait``.
    :param logger: your class logger.
    :param ready: set ready at once (True by default).
    """

    _shouldClose = False
    _pending_get: Optional[asyncio.Future] = None
    _owned_subscription: Optional[Tuple[Any, Any]] = None

    def __init__(
        self,
        directPutSubscriptionType: Any = asyncio.Queue,
        logger: Optional[logging.Logger] = None,
        ready: bool = True,
    ) -> None:
        baseEventHandler.__init__(self, logger)
        if sys.version_info < (3, 10):
            resolve_loop()  # asyncio.Queue() binds the current loop on 3.9: make sure there is one
        self._direct_put_subscription_type = directPutSubscriptionType
        self._direct_put_subscription = directPutSubscriptionType()
        self._source: Any = self._direct_put_subscription  # what _get() reads now
        self._user_subscription: Any = None  # what putSubscription() was given, None for direct puts
        self._owned_subscription = None  # (producer, subscription) we created for a producer passed in
        self._pending_get = None
        self._switches = 0
        self._shouldClose = False
        if ready:
            self._setReady(True)

    @property
    def subscription(self) -> Any:
        """The active subscription given to ``putSubscription()``, or None when reading ``put_nowait``."""
        return self._user_subscription

    def putSubscription(self, subscription: Any) -> None:
        """Keep reading ``subscription`` (anything with an async ``get()``, or a producer, which is subscribed
        to) until another one is put, ``stopSubscription()`` or ``put_nowait()`` is called::

            speaker.putSubscription(microphone)
            display.putSubscription(camera.subscribe(MostRecentSubscription()))
        """
        if _is_producer(subscription):
            source = subscription.subscribe()
            owned: Optional[Tuple[Any, Any]] = (subscription, source)
        elif callable(getattr(subscription, "get", None)):
            source, owned = subscription, None
        else:
            raise TypeError(
                f"{type(self).__name__}.putSubscription() needs a producer or a subscription with an async "
                f"get() (e.g. asyncio.Queue, producer.subscribe()), got {type(subscription).__name__}"
            )
        self._release_owned()
        self._owned_subscription = owned
        self._user_subscription = subscription
        self._switch_to(source)

    def stopSubscription(self) -> None:
        """Stops reading the current subscription; items then come only from ``put_nowait()``."""
        self._release_owned()
        if self._user_subscription is not None:
            self._user_subscription = None
            self._switch_to(self._direct_put_subscription)

    def put_nowait(self, data: Any) -> None:
        """Send an item to the consumer directly; an active subscription is stopped first."""
        if self._shouldClose:
            raise DeviceClosedError(f"{type(self).__name__} is closed; it takes no more items")
        if self._user_subscription is not None:
            self.stopSubscription()
        self._direct_put_subscription.put_nowait(data)

    # -- hooks for consumers that flush or drain (e.g. a publisher sending what was put before close) ------
    def _unread_direct_items(self) -> int:
        """How many items given to ``put_nowait()`` wait for ``_get()`` (0 when that queue cannot tell)."""
        qsize = getattr(self._direct_put_subscription, "qsize", None)
        return int(qsize()) if qsize is not None else 0

    def _take_unread_direct_items(self) -> List[Any]:
        """Remove and return the items given to ``put_nowait()`` that ``_get()`` has not read yet."""
        items: List[Any] = []
        get_nowait = getattr(self._direct_put_subscription, "get_nowait", None)
        while get_nowait is not None:
            try:
                items.append(get_nowait())
            except asyncio.QueueEmpty:
                break
        return items

    def _next_item_ready(self) -> bool:
        """True if ``_get()`` would return at once: the active subscription holds an item (False when it cannot
        tell, having no ``empty()``)."""
        empty = getattr(self._source, "empty", None)
        try:
            return empty is not None and not empty()
        except Exception:  # a subscription of the user's whose empty() fails: not ours to report here
            return False

    def _get_holds_an_item(self) -> bool:
        """True while a pending ``_get()`` has received its item but its caller has not resumed yet."""
        pending = self._pending_get
        return pending is not None and pending.done() and not pending.cancelled()

    def _release_owned(self) -> None:
        owned, self._owned_subscription = self._owned_subscription, None
        if owned is not None:
            producer, source = owned
            producer.unsubscribe(source)

    def _switch_to(self, source: Any) -> None:
        self._source = source
        self._switches += 1
        pending = self._pending_get
        if pending is not None and not pending.done():
            pending.cancel()

    def _get_if_ready(self) -> Any:
        """The next item of the active subscription if it holds one (its ``get_nowait()``), else
        ``NOT_READY``; on the loop's thread. Raises SubscriptionClosed once ``close()`` was called, and what a
        broken subscription raises."""
        if self._shouldClose:
            raise SubscriptionClosed(f"{type(self).__name__} was closed")
        get_nowait = getattr(self._source, "get_nowait", None)
        if get_nowait is not None:
            try:
                return get_nowait()
            except asyncio.QueueEmpty:
                pass
        return NOT_READY

    async def _get(self) -> Any:
        """Awaited by a subclass for the next item of the active subscription; raises SubscriptionClosed once
        ``close()`` was called. Switching subscriptions while waiting is transparent."""
        while True:
            item = self._get_if_ready()
            if item is not NOT_READY:
                return item
            source = self._source
            switches = self._switches
            waiter = asyncio.ensure_future(source.get())
            self._pending_get = waiter
            try:
                return await waiter
            except asyncio.CancelledError:
                if self._switches == switches or _cancelling():
                    raise
                # the subscription was switched (or the object closed) while waiting: go round again
            finally:
                if self._pending_get is waiter:
                    self._pending_get = None

    def close(self) -> None:
        """Cleans up and closes the object; a pending ``_get()`` raises SubscriptionClosed."""
        self._shouldClose = True
        self._release_owned()
        self._switches = getattr(self, "_switches", 0) + 1
        pending = self._pending_get
        if pending is not None and not pending.done():
            pending.cancel()
        if hasattr(self, "_close_event"):
            baseEventHandler.close(self)


class SubscriptionConsumer(BaseSubscriptionConsumer):
    """The asyncio consumer: a BaseSubscriptionConsumer whose ``get()`` is public, so it can be used as it is,
    without a subclass (as in RTCBot)::

        c = SubscriptionConsumer()
        c.putSubscription(microphone)
        block = await c.get()
    """

    async def get(self) -> Any:
        """The next item of the active subscription (or of ``put_nowait``); SubscriptionClosed after close."""
        return await self._get()


class SubscriptionProducer(BaseSubscriptionProducer):
    """The asyncio producer: a BaseSubscriptionProducer whose ``put_nowait()`` is public, so a bare one works
    as a broadcaster (as in RTCBot)::

        news = SubscriptionProducer()
        q = news.subscribe()
        news.put_nowait("hello")     # every subscription gets it
    """

    def put_nowait(self, element: Any) -> None:
        """Give ``element`` to every subscription."""
        self._put_nowait(element)


class SubscriptionProducerConsumer(BaseSubscriptionConsumer, BaseSubscriptionProducer):
    """Both a producer and a consumer, common with two-way connections: call ``_get()`` to consume incoming
    data and ``_put_nowait()`` to produce outgoing data."""

    def __init__(
        self,
        directPutSubscriptionType: Any = asyncio.Queue,
        defaultSubscriptionType: Any = asyncio.Queue,
        logger: Optional[logging.Logger] = None,
        defaultAutosubscribe: bool = False,
        ready: bool = True,
    ) -> None:
        BaseSubscriptionConsumer.__init__(self, directPutSubscriptionType, logger=logger, ready=False)
        BaseSubscriptionProducer.__init__(
            self, defaultSubscriptionType, defaultAutosubscribe, logger=self._log, ready=ready
        )

    def _close(self) -> None:
        """Closing from the object itself."""
        SubscriptionProducerConsumer.close(self)

    def close(self) -> None:
        """Cleans up and closes the object."""
        BaseSubscriptionConsumer.close(self)
        BaseSubscriptionProducer.close(self)
