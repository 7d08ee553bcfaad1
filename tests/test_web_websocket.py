"""Websocket: aiohttp websockets on both sides, as producers and consumers of messages."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

pytest.importorskip("aiohttp", reason="the web extra is not installed: pip install 'rtcbot[web]'")
from aiohttp import web  # noqa: E402

from rtcbot.errors import DeviceOpenError, EncodeError  # noqa: E402
from rtcbot.web import Websocket  # noqa: E402
from tests.helpers import next_item, run  # noqa: E402


@contextlib.asynccontextmanager
async def server(handler):
    app = web.Application()
    app.router.add_get("/ws", handler)
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/ws"
    finally:
        await runner.cleanup()


def test_messages_both_ways_between_client_and_server():
    async def body():
        from_client: asyncio.Queue = asyncio.Queue()

        async def handler(request):
            ws = Websocket(request)
            ws.subscribe(from_client)
            ws.put_nowait({"welcome": [1, 2]})
            ws.put_nowait(b"\x00binary")
            await ws  # returns when the client closes
            return ws.response

        async with server(handler) as url:
            client = Websocket(url)
            incoming = client.subscribe()  # before it connects: the server speaks first
            await asyncio.wait_for(client.onReady(), 5)
            client.put_nowait("text")
            client.put_nowait([1, "two"])
            assert await next_item(from_client) == "text"
            assert await next_item(from_client) == [1, "two"]
            assert await next_item(incoming) == {"welcome": [1, 2]}
            assert await next_item(incoming) == b"\x00binary"
            await client.close()
            assert client.closed

    run(body())


def test_server_closing_closes_the_client():
    async def body():
        async def handler(request):
            ws = Websocket(request)
            await ws.onReady()
            await ws.close()
            return ws.response

        async with server(handler) as url:
            client = Websocket(url)
            await asyncio.wait_for(client.onClose(), 5)
            assert client.error is None

    run(body())


def test_unreachable_url_reports_an_open_error():
    async def body():
        client = Websocket("http://127.0.0.1:9/ws")  # the discard port: nothing listens
        err = await asyncio.wait_for(client.onError(), 10)
        assert isinstance(err, DeviceOpenError) and "127.0.0.1:9" in str(err)
        await client.close()

    run(body())


def test_unsendable_message_fails_at_put():
    async def body():
        async def handler(request):
            ws = Websocket(request)
            await ws
            return ws.response

        async with server(handler) as url:
            client = Websocket(url)
            with pytest.raises(EncodeError):
                client.put_nowait(object())
            await client.close()

    run(body())
