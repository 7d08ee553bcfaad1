"""RTCConnection: a WebRTC connection (aiortc) with RTCBot's API.

The connection itself is a producer and consumer of messages on its "default" data channel; ``conn.video``
and ``conn.audio`` send and receive media. The usual server side, answering a browser's offer::

    from aiohttp import web
    from rtcbot import RTCConnection, CVCamera

    camera = CVCamera()

    async def connect(request):
        conn = RTCConnection()
        conn.video.putSubscription(camera)
        conn.subscribe(print)                           # messages from the browser
        answer = await conn.getLocalDescription(await request.json())
        conn.put_nowait({"hello": "browser"})           # sent once the channel opens
        return web.json_response(answer)

Between two Python programs, one calls ``offer = await a.getLocalDescription()``, the other
``answer = await b.getLocalDescription(offer)``, then ``await a.setRemoteDescription(answer)``.

Only host candidates are gathered (the LAN, no internet needed) unless ``iceServers`` names STUN/TURN
servers (``[{"urls": "stun:stun.l.google.com:19302"}]``). Descriptions are complete (no trickle ICE).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Dict, List, Optional

from ..base import SubscriptionProducer, SubscriptionProducerConsumer
from ..subscriptions import GetterSubscription
from ._require import require_web as require
from .datachannel import DataChannel
from .media import AudioHandler, VideoHandler

__all__ = ["RTCConnection"]

log = logging.getLogger("rtcbot.web.RTCConnection")


def _ice_servers(servers: Optional[List[Any]]) -> List[Any]:
    from aiortc import RTCIceServer

    result = []
    for server in servers or []:
        if isinstance(server, RTCIceServer):
            result.append(server)
        elif isinstance(server, str):
            result.append(RTCIceServer(urls=server))
        else:
            result.append(RTCIceServer(**server))
    return result


class RTCConnection(SubscriptionProducerConsumer):
    """A WebRTC connection; see the module docstring.

    :param defaultChannelOrdered: whether the default data channel keeps messages in order.
    :param iceServers: STUN/TURN servers (URLs, dicts as in the browser API, or ``aiortc.RTCIceServer``);
        none by default: host candidates only.

    ``await conn.onReady()`` returns once connected (the default data channel is open; messages put before
    wait for it). ``await conn.close()`` (or ``async with RTCConnection() as conn``) closes it; ``await conn``
    returns when it closed, from either side.
    """

    _pc: Any = None
    _closing: Optional[asyncio.Future[None]] = None

    def __init__(self, defaultChannelOrdered: bool = True, iceServers: Optional[List[Any]] = None) -> None:
        aiortc = require("aiortc")
        super().__init__(asyncio.Queue, asyncio.Queue, logger=log, ready=False)
        self._pc = aiortc.RTCPeerConnection(aiortc.RTCConfiguration(iceServers=_ice_servers(iceServers)))
        self._pc.on("datachannel", self._remote_channel)
        self._pc.on("track", self._remote_track)
        self._pc.on("connectionstatechange", self._state_changed)
        self._ordered = defaultChannelOrdered
        self._channels: Dict[str, DataChannel] = {}
        self._default: Optional[DataChannel] = None
        self._channel_producer = SubscriptionProducer(logger=log)
        self._video = VideoHandler(self._pc)
        self._audio = AudioHandler(self._pc)
        self._has_remote = False

    # -- signalling ----------------------------------------------------------------------------------
    async def getLocalDescription(self, description: Optional[Dict[str, str]] = None) -> Dict[str, str]:
        """This side's description, as ``{"sdp": ..., "type": ...}`` to send to the other side.

        With no remote description yet (and none given) it is an offer, with the default data channel and a
        request for the media ``conn.video.subscribe()`` / ``conn.audio.subscribe()`` asked for. Given the
        other side's offer (or after :meth:`setRemoteDescription`), it is the answer."""
        if description is not None and not self._has_remote:
            await self.setRemoteDescription(description)
        if self._has_remote:
            await self._pc.setLocalDescription(await self._pc.createAnswer())
        else:
            self._attach_default(DataChannel(self._pc.createDataChannel("default", ordered=self._ordered)))
            for handler in (self._video, self._audio):
                if handler.wants_remote and not handler.sending:
                    self._pc.addTransceiver(handler.kind, direction="recvonly")
            await self._pc.setLocalDescription(await self._pc.createOffer())
        local = self._pc.localDescription
        return {"sdp": local.sdp, "type": local.type}

    async def setRemoteDescription(self, description: Dict[str, str]) -> None:
        """Sets the other side's offer or answer (a dict with ``sdp`` and ``type``)."""
        from aiortc import RTCSessionDescription

        await self._pc.setRemoteDescription(RTCSessionDescription(sdp=description["sdp"], type=description["type"]))
        self._has_remote = True

    # -- data channels -------------------------------------------------------------------------------
    def _attach_default(self, channel: DataChannel) -> None:
        """The default channel carries the connection's own messages both ways."""
        self._default = channel
        self._channels[channel.name] = channel
        channel.putSubscription(GetterSubscription(self._get))
        channel.subscribe(self._put_nowait)
        channel.onReady(self._channel_open)

    def _channel_open(self) -> None:
        if not self.closed:
            self._setReady(True)

    def _remote_channel(self, rtc_channel: Any) -> None:
        channel = DataChannel(rtc_channel)
        if channel.name == "default" and self._default is None:
            self._attach_default(channel)
            return
        self._channels[channel.name] = channel
        self._channel_producer._put_nowait(channel)

    def onDataChannel(self, callback: Any = None) -> Any:
        """Called with each data channel the other side adds (a :class:`DataChannel`), like ``subscribe()``::

        @conn.onDataChannel
        def added(channel):
            channel.subscribe(print)
        """
        return self._channel_producer.subscribe(callback)

    def addDataChannel(self, name: str, ordered: bool = True) -> DataChannel:
        """Adds a data channel (before :meth:`getLocalDescription` on the offering side, or any time once
        connected); the other side gets it from :meth:`onDataChannel`."""
        if name == "default" or name in self._channels:
            raise KeyError(f"RTCConnection already has a data channel named {name!r}")
        channel = DataChannel(self._pc.createDataChannel(name, ordered=ordered))
        self._channels[name] = channel
        return channel

    def getDataChannel(self, name: str) -> DataChannel:
        """The data channel called ``name`` (not "default": use the connection itself for that one)."""
        if name == "default":
            raise KeyError("the default channel is the RTCConnection itself: use its subscribe() and put_nowait()")
        return self._channels[name]

    # -- media ---------------------------------------------------------------------------------------
    @property
    def video(self) -> VideoHandler:
        """Video out (``putSubscription(camera)``) and in (``subscribe()``): see :mod:`rtcbot.web.media`."""
        return self._video

    @property
    def audio(self) -> AudioHandler:
        """Audio out (``putSubscription(microphone)``) and in (``subscribe()``)."""
        return self._audio

    def _remote_track(self, track: Any) -> None:
        if track.kind == "video":
            self._video._remote_track(track)
        elif track.kind == "audio":
            self._audio._remote_track(track)

    @property
    def connectionState(self) -> str:
        """ "new", "connecting", "connected", "failed" or "closed"."""
        return str(self._pc.connectionState)

    async def _state_changed(self) -> None:
        state = self._pc.connectionState
        log.debug("connection state %s", state)
        if state in ("failed", "closed") and not self.closed:
            await self.close()

    # -- messages ------------------------------------------------------------------------------------
    def send(self, msg: Any) -> None:
        """Sends a message on the default channel (the same as ``put_nowait``)."""
        self.put_nowait(msg)

    def put_nowait(self, data: Any) -> None:
        """Queues a message for the default channel: strings as text, dicts and lists as JSON."""
        from .messages import encode_message

        encode_message(data)  # an unsendable value fails here, at the caller
        super().put_nowait(data)

    # -- closing -------------------------------------------------------------------------------------
    def close(self) -> asyncio.Future[None]:  # type: ignore[override]  # RTCBot's API: await conn.close()
        """Closes the connection, its channels and tracks. Returns an awaitable that finishes the closing
        (``await conn.close()``); calling it again returns the same one."""
        if self._closing is not None:
            return self._closing
        self._closing = asyncio.ensure_future(self._close_all())  # set first: onClose callbacks may call close()
        super().close()
        return self._closing

    async def _close_all(self) -> None:
        self._channel_producer.close()
        try:
            await asyncio.gather(
                *(channel.aclose() for channel in list(self._channels.values())),
                self._video.aclose(),
                self._audio.aclose(),
                return_exceptions=True,
            )
        finally:
            await self._pc.close()

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()

    def __exit__(self, *exc_info: Any) -> None:
        self.close()
