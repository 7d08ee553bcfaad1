"""The errors rtcbot raises.

Every error derives from :class:`RtcbotError` and from the built-in exception it refines, so callers can
catch what they mean::

    try:
        cam = CVCamera(cameranumber=3)
    except rtcbot.DeviceOpenError as e:      # also an OSError
        print("camera not available:", e)
"""
from __future__ import annotations


class RtcbotError(Exception):
    """The root of every error rtcbot raises."""


class MissingDependencyError(RtcbotError, ImportError):
    """A device library is not installed; the message says which package (pip extra or apt) to install."""


class DeviceOpenError(RtcbotError, OSError):
    """A device could not be opened; the message names the device and what to check."""


class DeviceLostError(RtcbotError, OSError):
    """A device that was working stopped responding (unplugged, driver reset, read failures in a row)."""


class DeviceClosedError(RtcbotError, RuntimeError):
    """The object was closed and cannot be used any more."""


class WorkerDiedError(RtcbotError, RuntimeError):
    """A background worker thread or process ended unexpectedly (an exception, or killed)."""


class NotPicklableError(RtcbotError, TypeError):
    """State that must cross into a worker process cannot be pickled; the message names the attribute."""


class InvalidItemError(RtcbotError, ValueError):
    """An item put into a consumer is not what the consumer accepts (wrong type, shape or field)."""


class EncodeError(InvalidItemError):
    """A message could not be encoded for the wire (wrong field count, missing key, value out of range)."""
