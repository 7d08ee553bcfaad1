"""Websocket: an aiohttp websocket as an rtcbot producer (messages received) and consumer (messages to send).

As a client, give it a URL; in an aiohttp server, give it the request::

    ws = Websocket("http://localhost:8080/ws")      # client
    ws.put_nowait({"hello": "server"})
    reply = await ws.get()

    async def handler(request):                     # server
        ws = Websocket(request)
        async for ...: ws.put_nowait(await ws.get())
        return ws.response                          # or await ws (returns when it closes)

Messages are encoded as on a data channel (:mod:`rtcbot.web.messages`): strings as text, dicts and lists
as JSON (parsed back on arrival), bytes as binary. ``json=False`` leaves text alone on arrival.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Optional

from ..base import SubscriptionClosed, SubscriptionProducerConsumer
from ..errors import DeviceOpenError, EncodeError
from ._require import require_web as require
from .messages import decode_message, encode_message

__all__ = ["Websocket"]

log = logging.getLogger("rtcbot.web.Websocket")


class Websocket(SubscriptionProducerConsumer):
    """A websocket connection; see the module docstring. Ready once connected; ``onError`` fires if the
    connection cannot be made (a DeviceOpenError naming the URL); closed when either side closes.

    One task runs the connection (connect, then send what is put in); it is ended and awaited by
    ``await ws.close()``.
    """

    _task: Optional[asyncio.Task[None]] = None
    _closing: Optional[asyncio.Future[None]] = None

    def __init__(self, url_or_request: Any, json: bool = True) -> None:
        aiohttp = require("aiohttp")
        super().__init__(asyncio.Queue, asyncio.Queue, logger=log, ready=False)
        self._aiohttp = aiohttp
        self._json = json
        self.ws: Any = None  # the aiohttp websocket, once connected
        self.response: Any = None  # server side: the WebSocketResponse to return from the handler
        self._session: Any = None
        self._target = url_or_request
        if not isinstance(url_or_request, str):
            from aiohttp import web

            self.response = web.WebSocketResponse()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="rtcbot-websocket")

    def _describe(self) -> str:
        target = self._target
        return target if isinstance(target, str) else f"request from {getattr(target, 'remote', '?')}"

    async def _run(self) -> None:
        aiohttp = self._aiohttp
        try:
            if isinstance(self._target, str):
                self._session = aiohttp.ClientSession()
                try:
                    self.ws = await self._session.ws_connect(self._target)
                except (aiohttp.ClientError, OSError) as e:
                    raise DeviceOpenError(
                        f"Websocket could not connect to {self._target} ({type(e).__name__}: {e}); check the "
                        f"URL and that the server is running"
                    ) from e
            else:
                await self.response.prepare(self._target)
                self.ws = self.response
            self._setReady(True)
            sender = asyncio.get_running_loop().create_task(self._send_loop(), name="rtcbot-websocket-send")
            try:
                await self._receive_loop()
            finally:
                sender.cancel()
                await asyncio.gather(sender, return_exceptions=True)
        except DeviceOpenError as e:
            self._setError(e)
        finally:
            if self.ws is not None and not self.ws.closed:
                await self.ws.close()
            if self._session is not None:
                await self._session.close()
            if not self.closed:
                SubscriptionProducerConsumer.close(self)

    async def _receive_loop(self) -> None:
        WSMsgType = self._aiohttp.WSMsgType
        async for msg in self.ws:
            if msg.type == WSMsgType.TEXT:
                self._put_nowait(decode_message(msg.data) if self._json else msg.data)
            elif msg.type == WSMsgType.BINARY:
                self._put_nowait(msg.data)
            elif msg.type == WSMsgType.ERROR:
                log.warning("websocket %s failed: %s", self._describe(), self.ws.exception())
                return

    async def _send_loop(self) -> None:
        try:
            while True:
                message = await self._get()
                try:
                    payload = encode_message(message)
                except EncodeError as e:
                    log.warning("websocket %s: %s; message dropped", self._describe(), e)
                    continue
                if isinstance(payload, bytes):
                    await self.ws.send_bytes(payload)
                else:
                    await self.ws.send_str(payload)
        except SubscriptionClosed:
            pass

    def put_nowait(self, data: Any) -> None:
        """Queues a message to send; an unsendable value raises EncodeError here."""
        encode_message(data)
        super().put_nowait(data)

    def close(self) -> asyncio.Future[None]:  # type: ignore[override]  # RTCBot's API: await conn.close()
        """Closes the websocket; returns an awaitable that finishes when it is closed (``await ws.close()``)."""
        if self._closing is None:
            SubscriptionProducerConsumer.close(self)
            self._closing = asyncio.ensure_future(self._finish())
        return self._closing

    async def _finish(self) -> None:
        if self._task is not None:
            if self.ws is not None and not self.ws.closed:
                await self.ws.close()
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()

    def __exit__(self, *exc_info: Any) -> None:
        self.close()
