"""H.264 passthrough: a Pi camera's hardware encoder output (the fake picamera2's encoder makes real H.264
with PyAV) into WebRTC without decoding or re-encoding, to Python and to headless Chromium."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

pytest.importorskip("aiortc", reason="the web extra is not installed: pip install 'rtcbot[web]'")

from aiohttp import web  # noqa: E402

from rtcbot.devices.picamera import PiCamera2  # noqa: E402
from rtcbot.devices.picamera_h264 import PiCamera2H264  # noqa: E402
from rtcbot.web import RTCConnection, getRTCBotJS  # noqa: E402
from tests.fakes import picamera2 as fake  # noqa: E402
from tests.helpers import next_item, run  # noqa: E402
from tests.web.chromium import Chromium, find_chromium  # noqa: E402


@pytest.fixture
def picamera(monkeypatch):
    fake.system.reset(cameras=1)
    fake.install(monkeypatch)
    yield fake.system
    fake.system.reset()


@contextlib.asynccontextmanager
async def passthrough_pair(source):
    a, b = RTCConnection(), RTCConnection()
    try:
        b.video.putSubscription(source)
        frames = a.video.subscribe()
        offer = await a.getLocalDescription()
        answer = await b.getLocalDescription(offer)
        await a.setRemoteDescription(answer)
        yield a, b, frames, answer
    finally:
        await asyncio.gather(a.close(), b.close())


def test_the_cameras_h264_reaches_python_undecoded_on_the_way(picamera):
    async def body():
        with PiCamera2(width=320, height=240, fps=30) as camera:
            # its keyframes are a minute apart: the one the viewer starts from is one it asked for
            with PiCamera2H264(camera, keyframe_interval=1800) as video:
                await video.get()  # the stream is under way
                async with passthrough_pair(video) as (a, b, frames, answer):
                    codecs = [
                        line for line in answer["sdp"].splitlines() if line.startswith("a=rtpmap") and "rtx" not in line
                    ]
                    assert codecs and all("H264" in line for line in codecs), codecs
                    for _ in range(10):
                        frame = await next_item(frames, timeout=10)
                    assert frame.shape == (240, 320, 3)
                    # The track passed on what the camera encoded (aiortc only packetized it) and asked the
                    # encoder for the keyframe it started from.
                    track = b.video.addTrack()
                    assert track.frames >= 10 and track.keyframe_requests + video.restarts >= 1

    run(body(), timeout=40)


PAGE = """<!doctype html><html><body><video autoplay muted playsinline></video><script type="module">
import { RTCConnection, connect } from "/rtcbot.js";
const video = document.querySelector("video");
const conn = (window.conn = new RTCConnection());
window.frames = 0;
conn.video.subscribe(video);
const count = () => { window.frames += 1; video.requestVideoFrameCallback(count); };
video.requestVideoFrameCallback(count);
await connect(conn, "/connect");
</script></body></html>"""


@pytest.mark.slow
@pytest.mark.skipif(find_chromium() is None, reason="needs Chromium (apt install chromium; scripts/bootstrap)")
def test_chromium_shows_the_pi_cameras_h264(picamera):
    async def body():
        connections = []
        with PiCamera2(width=320, height=240, fps=30) as camera, PiCamera2H264(camera) as video:

            async def connect(request):
                conn = RTCConnection()
                connections.append(conn)
                conn.video.putSubscription(video)
                return web.json_response(await conn.getLocalDescription(await request.json()))

            async def page(request):
                return web.Response(content_type="text/html", text=PAGE)

            async def script(request):
                return web.Response(content_type="text/javascript", text=getRTCBotJS())

            app = web.Application()
            app.add_routes([web.get("/", page), web.get("/rtcbot.js", script), web.post("/connect", connect)])
            runner = web.AppRunner(app, shutdown_timeout=1)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            try:
                async with Chromium() as browser:
                    page = await browser.open(f"http://127.0.0.1:{runner.addresses[0][1]}/")
                    await page.wait_for("window.frames >= 20", 20)
                    codec = await page.evaluate(
                        """conn.peerConnection.getStats().then((stats) => {
                            for (const s of stats.values()) if (s.type === "codec" && s.mimeType.startsWith("video"))
                                return s.mimeType; })"""
                    )
                    assert codec == "video/H264"
            finally:
                await asyncio.gather(*(c.close() for c in connections))
                await runner.cleanup()

    run(body(), timeout=60)
