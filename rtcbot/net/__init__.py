"""Streaming between hosts over Zenoh: publish any producer's items under a key, subscribe from anywhere.

::

    from rtcbot.net import ZenohPublisher, ZenohSubscriber

    pub = ZenohPublisher("robot1/camera", jpeg_quality=80)      # on the robot
    pub.putSubscription(camera)

    frames = ZenohSubscriber("robot1/camera", delivery="latest")  # on the desktop
    frame = await frames.get()

Needs the ``net`` extra (``pip install 'rtcbot[net]'``, i.e. eclipse-zenoh); Zenoh is imported only when a
publisher, subscriber or session is created.
"""

from __future__ import annotations

from .codec import DecodeError, Encoded, SampleTooLargeError, decode, encode
from .session import (
    SessionLease,
    SessionOptions,
    acquire_session,
    configure,
    default_options,
    open_session_count,
)
from .zenoh_io import PublisherStats, SubscriberStats, ZenohPublisher, ZenohSample, ZenohSubscriber

__all__ = [
    "DecodeError",
    "Encoded",
    "PublisherStats",
    "SampleTooLargeError",
    "SessionLease",
    "SessionOptions",
    "SubscriberStats",
    "ZenohPublisher",
    "ZenohSample",
    "ZenohSubscriber",
    "acquire_session",
    "configure",
    "decode",
    "default_options",
    "encode",
    "open_session_count",
]
