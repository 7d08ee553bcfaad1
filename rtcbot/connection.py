"""RTCBot's module path for :class:`~rtcbot.web.connection.RTCConnection` (``from rtcbot.connection import
RTCConnection`` keeps working); the implementation lives in :mod:`rtcbot.web`. Needs the ``web`` extra."""

from __future__ import annotations

from .web.connection import RTCConnection
from .web.datachannel import DataChannel

__all__ = ["DataChannel", "RTCConnection"]
