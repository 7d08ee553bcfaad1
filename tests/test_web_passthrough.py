"""H.264 passthrough: an encoder's output into WebRTC without decoding or re-encoding, from a fake camera
encoder made with PyAV (libx264), to Python and to headless Chromium."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

pytest.importorskip("aiortc", reason="the web extra is not installed: pip install 'rtcbot[web]'")

from aiohttp import web  # noqa: E402

from rtcbot.web import RTCConnection, getRTCBotJS  # noqa: E402
from rtcbot.web.passthrough import EncodedVideoSource, h264_is_keyframe  # noqa: E402
from tests.helpers import next_item, run  # noqa: E402
from tests.web.chromium import Chromium, find_chromium  # noqa: E402
from tests.web.fake_h264 import FakeH264Camera  # noqa: E402


def test_keyframes_are_found_in_the_stream():
    units = FakeH264Camera(keyframe_interval=4).encode_all(9)
    assert [h264_is_keyframe(u) for u in units] == [True, False, False, False, True, False, False, False, True]
    assert not h264_is_keyframe(b"") and not h264_is_keyframe(b"\x00\x00\x01")


def test_only_h264_is_taken():
    async def body():
        with pytest.raises(ValueError, match="H.264"):
            EncodedVideoSource(codec="vp8")

    run(body())


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


def test_encoded_frames_reach_python_undecoded_on_the_way():
    async def body():
        with FakeH264Camera(keyframe_interval=300) as camera:
            await asyncio.to_thread(camera.wait_frames, 3)  # its keyframe is gone: the viewer must ask
            source = EncodedVideoSource(request_keyframe=camera.request_keyframe)
            camera.output = source.put_encoded
            async with passthrough_pair(source) as (a, b, frames, answer):
                codecs = [
                    line for line in answer["sdp"].splitlines() if line.startswith("a=rtpmap") and "rtx" not in line
                ]
                assert codecs and all("H264" in line for line in codecs), codecs
                for _ in range(10):
                    frame = await next_item(frames, timeout=10)
                assert frame.shape == (240, 320, 3)
                # The joining viewer asked the encoder for a keyframe (the periodic one is 10 s away).
                assert camera.keyframe_requests >= 1 and camera.keyframes >= 2
                # The track passed on what the camera encoded (aiortc only packetized it).
                assert b.video.addTrack().frames >= 10
            source.close()

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
def test_chromium_shows_the_encoders_video():
    async def body():
        source = EncodedVideoSource()
        connections = []

        async def connect(request):
            conn = RTCConnection()
            connections.append(conn)
            conn.video.putSubscription(source)
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
            with FakeH264Camera(source.put_encoded, keyframe_interval=30):
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
            source.close()

    run(body(), timeout=60)
