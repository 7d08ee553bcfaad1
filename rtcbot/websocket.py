"""RTCBot's module path for :class:`~rtcbot.web.websocket.Websocket` (``from rtcbot.websocket import
Websocket`` keeps working); the implementation lives in :mod:`rtcbot.web`. Needs the ``web`` extra."""

from __future__ import annotations

from .web.websocket import Websocket

__all__ = ["Websocket"]
