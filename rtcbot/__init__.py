"""rtcbot: asyncio producers and consumers for robot hardware.

A camera, a microphone or a serial port is a *producer*; a display, a speaker or a motor controller is a
*consumer*; you plug one into the other::

    import asyncio
    from rtcbot import CVCamera, CVDisplay

    async def main():
        with CVCamera() as camera, CVDisplay() as display:
            display.putSubscription(camera)
            await asyncio.sleep(10)

    asyncio.run(main())

Importing rtcbot imports no device library: each device class is loaded on first use (PEP 562), and a
missing library raises :class:`rtcbot.MissingDependencyError` saying what to install.
"""
from __future__ import annotations

from ._lazy import lazy_exports
from .base import (
    BaseSubscriptionConsumer,
    BaseSubscriptionProducer,
    NoClosedSubscription,
    ProcessSubscriptionConsumer,
    ProcessSubscriptionProducer,
    ProcessSubscriptionProducerConsumer,
    SubscriptionClosed,
    SubscriptionConsumer,
    SubscriptionProducer,
    SubscriptionProducerConsumer,
    ThreadedSubscriptionConsumer,
    ThreadedSubscriptionProducer,
)
from .errors import (
    DeviceClosedError,
    DeviceLostError,
    DeviceOpenError,
    EncodeError,
    InvalidItemError,
    MissingDependencyError,
    NotPicklableError,
    RtcbotError,
    WorkerDiedError,
)
from .subscriptions import (
    BoundedQueue,
    CallbackSubscription,
    DelayedSubscription,
    EventSubscription,
    GetterSubscription,
    MostRecentSubscription,
    RebatchSubscription,
)

__version__ = "0.1.0"

# Public name -> module that defines it. Loaded on first attribute access, so that `import rtcbot` stays
# light and a missing device library only matters to the script that uses that device.
_LAZY = {
    "CVCamera": "rtcbot.devices.camera",
    "PiCamera2": "rtcbot.devices.picamera",
    "CVDisplay": "rtcbot.devices.display",
    "Microphone": "rtcbot.devices.audio",
    "Speaker": "rtcbot.devices.audio",
    "SerialConnection": "rtcbot.devices.serial",
    "SimCamera": "rtcbot.devices.sim",
    "SimMicrophone": "rtcbot.devices.sim",
    "SimSpeaker": "rtcbot.devices.sim",
    "Gamepad": "rtcbot.devices.inputs",
    "Keyboard": "rtcbot.devices.inputs",
    "Mouse": "rtcbot.devices.inputs",
    "ZenohPublisher": "rtcbot.net",
    "ZenohSubscriber": "rtcbot.net",
    "PiCamera2H264": "rtcbot.devices.picamera_h264",
    "RTCConnection": "rtcbot.web.connection",
    "Websocket": "rtcbot.web.websocket",
    "getRTCBotJS": "rtcbot.web.static_files",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())


__all__ = [
    "BaseSubscriptionConsumer",
    "BaseSubscriptionProducer",
    "BoundedQueue",
    "CallbackSubscription",
    "DelayedSubscription",
    "DeviceClosedError",
    "DeviceLostError",
    "DeviceOpenError",
    "EncodeError",
    "EventSubscription",
    "GetterSubscription",
    "InvalidItemError",
    "MissingDependencyError",
    "MostRecentSubscription",
    "NoClosedSubscription",
    "NotPicklableError",
    "ProcessSubscriptionConsumer",
    "ProcessSubscriptionProducer",
    "ProcessSubscriptionProducerConsumer",
    "RebatchSubscription",
    "RtcbotError",
    "SubscriptionClosed",
    "SubscriptionConsumer",
    "SubscriptionProducer",
    "SubscriptionProducerConsumer",
    "ThreadedSubscriptionConsumer",
    "ThreadedSubscriptionProducer",
    "WorkerDiedError",
    *_LAZY,
]
