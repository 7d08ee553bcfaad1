"""The producer/consumer layer: asyncio, threaded and process-based producers and consumers.

See ``shared/spec/base-api.txt`` for the API; every public class is importable from here::

    from rtcbot.base import ThreadedSubscriptionProducer, SubscriptionClosed
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
