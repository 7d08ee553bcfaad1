"""The producer/consumer layer: asyncio, threaded and process-based producers and consumers, with RTCBot's
public API; every public class is importable from here::

    from rtcbot.base import ThreadedSubscriptionProducer, SubscriptionClosed

Modules: ``events`` (ready/error/close events, ``await obj.onReady()``), ``lifecycle`` (the one state machine
that owns starting and closing), ``waiters`` (futures callers await, failed at close), ``base`` (asyncio
producers and consumers), ``thread`` (threaded flavour), ``multiprocess`` (process flavour, the parent's side),
``process_child`` (the worker process's side), ``process_start`` (start method, what the child imports, the
parent-death lifeline), ``process_state`` (what crosses into the child), ``feed_window`` (a consumer feed's
flow control), ``transport`` (the channel to a worker process), ``worker`` (starting workers after
``__init__``, closing live workers at exit, the thread-to-loop hand-off), ``loop_wake`` (waking the event loop
from worker threads through an eventfd), ``bufferpool`` (recycled buffers).
"""
from .base import (
    BaseSubscriptionConsumer,
    BaseSubscriptionProducer,
    NoClosedSubscription,
    SubscriptionClosed,
    SubscriptionConsumer,
    SubscriptionProducer,
    SubscriptionProducerConsumer,
)
from .events import baseEventHandler, threadedEventHandler
from .multiprocess import (
    ProcessSubscriptionConsumer,
    ProcessSubscriptionProducer,
    ProcessSubscriptionProducerConsumer,
    internalSubscriptionMessage,
)
from .thread import ThreadedSubscriptionConsumer, ThreadedSubscriptionProducer

__all__ = [
    "BaseSubscriptionConsumer",
    "BaseSubscriptionProducer",
    "NoClosedSubscription",
    "ProcessSubscriptionConsumer",
    "ProcessSubscriptionProducer",
    "ProcessSubscriptionProducerConsumer",
    "SubscriptionClosed",
    "SubscriptionConsumer",
    "SubscriptionProducer",
    "SubscriptionProducerConsumer",
    "ThreadedSubscriptionConsumer",
    "ThreadedSubscriptionProducer",
    "baseEventHandler",
    "internalSubscriptionMessage",
    "threadedEventHandler",
]
