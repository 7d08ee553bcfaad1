"""DataChannel: one WebRTC data channel as an rtcbot producer (messages received) and consumer (messages to
send).

You get one from :meth:`RTCConnection.addDataChannel` or :meth:`RTCConnection.onDataChannel`::

    channel = conn.addDataChannel("telemetry")
    channel.put_nowait({"battery": 11.9})     # JSON for dicts and lists, text for strings
    reply = await channel.get()

Messages put before the channel opens wait in order and go out once it is open (see :mod:`.messages` for
the encoding).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Optional

from ..base import SubscriptionClosed, SubscriptionProducerConsumer
from ..errors import EncodeError
from .messages import decode_message, encode_message

__all__ = ["DataChannel"]

log = logging.getLogger("rtcbot.web.DataChannel")


class DataChannel(SubscriptionProducerConsumer):
    """Wraps an aiortc ``RTCDataChannel``; ``name`` is its label. Ready once the channel is open; closed when
    either side closes it (``await channel`` returns then).

    A sender task (started here, ended and awaited by :meth:`aclose`) sends what is put in, in order.
    """

    _sender: Optional[asyncio.Task[None]] = None
    _channel: Any = None

    def __init__(self, channel: Any) -> None:
        super().__init__(asyncio.Queue, asyncio.Queue, logger=log, ready=False)
        self._channel = channel
        channel.on("message", self._received)
        channel.on("close", self._remote_closed)
        self._opened = asyncio.Event()
        if channel.readyState == "open":
            self._on_open()
        else:
            channel.on("open", self._on_open)
        self._sender = asyncio.get_running_loop().create_task(self._send_loop(), name=f"rtcbot-dc-{self.name}")

    @property
    def name(self) -> str:
        """The channel's label (``"default"`` for the connection's own channel)."""
        return str(self._channel.label)

    def _on_open(self) -> None:
        self._opened.set()
        self._setReady(True)

    def _received(self, data: Any) -> None:
        self._put_nowait(decode_message(data))

    def _remote_closed(self) -> None:
        if not self.closed:
            log.debug("data channel %r closed by the other side", self.name)
            self.close()

    def put_nowait(self, data: Any) -> None:
        """Queue ``data`` to send; an unsendable value raises EncodeError here, and nothing is queued."""
        encode_message(data)  # fail at the caller, not later in the sender task
        super().put_nowait(data)

    async def _send_loop(self) -> None:
        try:
            await self._opened.wait()
            while True:
                message = await self._get()
                try:
                    payload = encode_message(message)
                except EncodeError as e:  # from a subscription: skip the item, keep the channel
                    log.warning("data channel %r: %s; message dropped", self.name, e)
                    continue
                if self._channel.readyState != "open":
                    return
                self._channel.send(payload)
        except SubscriptionClosed:
            pass

    def close(self) -> None:
        """Closes the channel (both ends see it close); the sender task ends. Idempotent."""
        super().close()
        if self._sender is not None:
            self._sender.cancel()
        if self._channel is not None and self._channel.readyState in ("connecting", "open"):
            self._channel.close()

    async def aclose(self) -> None:
        """close(), then wait for the sender task to end."""
        self.close()
        if self._sender is not None:
            await asyncio.gather(self._sender, return_exceptions=True)
