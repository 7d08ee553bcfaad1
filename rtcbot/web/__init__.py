"""rtcbot in the browser: WebRTC connections (aiortc), websockets (aiohttp), a JavaScript client and the
``rtcbot serve`` dashboard. Needs the ``web`` extra: ``pip install 'rtcbot[web]'``.

    from rtcbot.web import RTCConnection, Websocket, getRTCBotJS

RTCConnection and Websocket keep RTCBot's API; ``getRTCBotJS()`` is the browser client (an ES module);
SharedVideoEncoder encodes a camera once for every viewer; ``conn.video.putSubscription(PiCamera2H264(camera))``
passes a Pi camera's hardware H.264 through; Dashboard is what ``rtcbot serve`` runs.
"""

from __future__ import annotations

from .._lazy import lazy_exports

_LAZY = {
    "RTCConnection": "rtcbot.web.connection",
    "DataChannel": "rtcbot.web.datachannel",
    "SharedVideoEncoder": "rtcbot.web.encoder",
    "Dashboard": "rtcbot.web.dashboard",
    "Websocket": "rtcbot.web.websocket",
    "getRTCBotJS": "rtcbot.web.static_files",
}

__all__ = list(_LAZY)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
