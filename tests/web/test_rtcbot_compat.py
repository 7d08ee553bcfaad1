"""RTCBot's own tests of RTCConnection and Websocket (its tests/test_RTCConnection.py and
tests/test_websocket.py), run against rtcbot. The bodies are RTCBot's; only the harness changed: aiounittest
and pytest-aiohttp's fixtures became ``run()`` and a small aiohttp server fixture on a free port."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

pytest.importorskip("aiortc", reason="the web extra is not installed: pip install 'rtcbot[web]'")
from aiohttp import web  # noqa: E402

from rtcbot.web import RTCConnection, Websocket  # noqa: E402
from tests.helpers import run  # noqa: E402


def test_basic():
    """Creates a connection, and ensures that multiple messages go through in both directions."""

    async def body():
        testmsg1 = "Testy mc test-test"
        testmsg2 = "Hai wrld"

        c1 = RTCConnection()
        c2 = RTCConnection()

        q1 = c1.subscribe()
        q2 = c2.subscribe()

        offer = await c1.getLocalDescription()
        response = await c2.getLocalDescription(offer)
        await c1.setRemoteDescription(response)

        c1.put_nowait(testmsg1)
        c2.put_nowait(testmsg2)

        c1.send("OMG")  # Just to check
        c2.put_nowait("OMG2")

        msg1 = await asyncio.wait_for(q1.get(), 5)
        msg2 = await asyncio.wait_for(q2.get(), 5)

        assert msg1 == testmsg2
        assert msg2 == testmsg1

        msg1 = await asyncio.wait_for(q1.get(), 5)
        msg2 = await asyncio.wait_for(q2.get(), 5)

        assert msg1 == "OMG2"
        assert msg2 == "OMG"

        await c1.close()
        await c2.close()

    run(body())


def test_multipleDataChannels():
    async def body():
        c1 = RTCConnection()
        c2 = RTCConnection()

        dcs1 = c1.onDataChannel()  # noqa: F841 (RTCBot's test stops here: "CONTINUE...")
        dcs2 = c2.onDataChannel()  # noqa: F841

        await c1.close()
        await c2.close()

    run(body())


# -- tests/test_websocket.py ---------------------------------------------------------------------------


async def wsping(request):
    ws = Websocket(request)
    await ws.onReady()
    while ws.ready:
        ws.put_nowait(await ws.get())
    return ws.response


def create_ws_server():
    app = web.Application()
    app.router.add_route("GET", "/", wsping)
    return app


@contextlib.asynccontextmanager
async def serving(app):
    """Serves ``app`` on a free port of localhost; yields the port (pytest-aiohttp's aiohttp_client did)."""
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


def test_websocket():
    async def body():
        async with serving(create_ws_server()) as port:
            ws = Websocket(f"http://localhost:{port}/")
            ws.put_nowait("Hello")
            assert await ws.get() == "Hello"
            ws.put_nowait({"foo": "bar"})
            resp = await ws.get()
            assert "foo" in resp
            assert resp["foo"] == "bar"
            s = ws.onClose()
            await ws.close()
            await s

    run(body())
