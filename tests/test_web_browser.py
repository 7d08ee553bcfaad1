"""The browser side, in real headless Chromium (driven over DevTools): video decoded in the page, messages
both ways, keys reaching the simulated Arduino, the browser's microphone on the robot's speaker, and the
motors stopping when the page goes away. Skipped when Chromium is not installed (scripts/bootstrap installs
it)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import wave

import numpy as np
import pytest

pytest.importorskip("aiortc", reason="the web extra is not installed: pip install 'rtcbot[web]'")

from aiohttp import web  # noqa: E402

from rtcbot.devices.arduino_sim import SERIAL_OPTIONS, SimulatedArduino  # noqa: E402
from rtcbot.devices.serial import SerialConnection  # noqa: E402
from rtcbot.devices.sim import SimCamera, SimMicrophone, SimSpeaker  # noqa: E402
from rtcbot.web import RTCConnection, getRTCBotJS  # noqa: E402
from rtcbot.web.dashboard import Dashboard  # noqa: E402
from tests.helpers import run  # noqa: E402
from tests.web.chromium import Chromium, find_chromium  # noqa: E402

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(find_chromium() is None, reason="needs Chromium (apt install chromium; scripts/bootstrap)"),
]

STOP_WITHIN = 0.5  # seconds: the bound for stopping the motors once the page is gone


# -- a page of our own using rtcbot.js ------------------------------------------------------------------

PAGE = """<!doctype html><html><body><video autoplay muted playsinline></video>
<script type="module">
import { RTCConnection, connect } from "/rtcbot.js";
const video = document.querySelector("video");
const state = (window.state = { frames: 0, received: [], connected: false });
const conn = new RTCConnection();
window.conn = conn;
conn.video.subscribe(video);
conn.subscribe((msg) => state.received.push(msg));
conn.put_nowait("hello from the page");
conn.put_nowait({ n: 1, list: [1, 2] });
const count = () => { state.frames += 1; video.requestVideoFrameCallback(count); };
video.requestVideoFrameCallback(count);
await connect(conn, "/connect");
state.connected = true;
</script></body></html>"""


@contextlib.asynccontextmanager
async def page_server(on_connection):
    """Serves PAGE, rtcbot.js and POST /connect (which hands the new RTCConnection to ``on_connection``)."""
    connections = []

    async def page(request):
        return web.Response(content_type="text/html", text=PAGE)

    async def script(request):
        return web.Response(content_type="text/javascript", text=getRTCBotJS())

    async def offer(request):
        conn = RTCConnection()
        connections.append(conn)
        on_connection(conn)
        return web.json_response(await conn.getLocalDescription(await request.json()))

    app = web.Application()
    app.router.add_get("/", page)
    app.router.add_get("/rtcbot.js", script)
    app.router.add_post("/connect", offer)
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/", connections
    finally:
        await asyncio.gather(*(c.close() for c in connections), return_exceptions=True)
        await runner.cleanup()


def test_rtcbot_js_page_shows_video_and_exchanges_messages():
    async def body():
        with SimCamera(width=320, height=240, fps=30) as camera:
            received = asyncio.Queue()

            def serve(conn):
                conn.video.putSubscription(camera)
                conn.subscribe(received)
                conn.put_nowait({"hello": "browser"})
                conn.put_nowait("plain text")

            async with page_server(serve) as (url, _), Chromium() as browser:
                page = await browser.open(url)
                assert await asyncio.wait_for(received.get(), 10) == "hello from the page"
                assert await asyncio.wait_for(received.get(), 5) == {"n": 1, "list": [1, 2]}
                assert await page.wait_for("state.received.length >= 2 && state.received") == [
                    {"hello": "browser"},
                    "plain text",
                ]
                await page.wait_for("state.frames >= 10")
                size = await page.evaluate(
                    "[document.querySelector('video').videoWidth, document.querySelector('video').videoHeight]"
                )
                assert size == [320, 240]

    run(body(), timeout=60)


# -- the dashboard ----------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def robot(cameras=1):
    """A dashboard on simulated devices: yields (dashboard, arduino, readings queue, speaker)."""
    with contextlib.ExitStack() as devices:
        cams = {f"cam{i}": devices.enter_context(SimCamera(width=320, height=240, fps=30)) for i in range(cameras)}
        mic = devices.enter_context(SimMicrophone())
        speaker = devices.enter_context(SimSpeaker())
        arduino = devices.enter_context(SimulatedArduino())
        motors = devices.enter_context(SerialConnection(arduino.port, **SERIAL_OPTIONS))
        readings = motors.subscribe()
        async with Dashboard(cameras=cams, microphone=mic, speaker=speaker, motors=motors) as dashboard:
            await dashboard.start(port=0)
            yield dashboard, arduino, readings, speaker


async def reading_where(readings, condition, timeout=5.0):
    """The first reading from the board for which ``condition`` holds (the board answers each command)."""

    async def find():
        while True:
            reading = await readings.get()
            if condition(reading):
                return reading

    return await asyncio.wait_for(find(), timeout)


def test_dashboard_shows_every_camera():
    async def body():
        async with robot(cameras=2) as (dashboard, *_), Chromium() as browser:
            page = await browser.open(dashboard.url)
            await page.wait_for(
                "window.rtcbot && rtcbot.frames.length === 2 && rtcbot.frames.every((n) => n >= 10)", 20
            )
            captions = await page.evaluate("[...document.querySelectorAll('figcaption')].map((c) => c.textContent)")
            assert captions == ["cam0", "cam1"]

    run(body(), timeout=60)


def test_dashboard_shows_serial_readings_and_microphone_level():
    async def body():
        async with robot() as (dashboard, *_), Chromium() as browser:
            page = await browser.open(dashboard.url)
            await page.wait_for("rtcbot.last && rtcbot.last.serial && rtcbot.last.serial.millis > 0", 15)
            level = await page.wait_for("rtcbot.last.level", 5)
            assert -20 < level < 0  # the simulated tone, about -9 dBFS
            assert await page.evaluate("document.querySelector('#readings').textContent.includes('a0')")

    run(body(), timeout=60)


def test_key_press_reaches_the_arduino_as_a_motor_command():
    async def body():
        async with robot() as (dashboard, arduino, readings, _), Chromium() as browser:
            page = await browser.open(dashboard.url)
            await page.wait_for("rtcbot.connected && rtcbot.messages > 0", 15)
            await page.press("KeyW")
            await reading_where(readings, lambda r: (r["left"], r["right"]) == (150, 150))
            await page.release("KeyW")
            await reading_where(readings, lambda r: (r["left"], r["right"]) == (0, 0))
            await page.press("KeyA")
            await reading_where(readings, lambda r: (r["left"], r["right"]) == (-150, 150))
            assert (150, 150) in arduino.commands

    run(body(), timeout=60)


def test_gamepad_stick_drives_the_arduino():
    async def body():
        async with robot() as (dashboard, arduino, readings, _), Chromium() as browser:
            page = await browser.open(dashboard.url)
            await page.wait_for("rtcbot.connected && rtcbot.messages > 0", 15)
            # Headless Chromium has no gamepad: stand one in for the Gamepad API, left stick pushed forward.
            await page.evaluate(
                "const pad = {index: 0, id: 'test pad', axes: [0, -1], buttons: [{value: 0}]};"
                "navigator.getGamepads = () => [pad]; window.testPad = pad; 1"
            )
            await reading_where(readings, lambda r: (r["left"], r["right"]) == (255, 255))
            await page.evaluate("testPad.axes = [0.05, 0.1]; 1")  # back in the dead zone: stop
            await reading_where(readings, lambda r: (r["left"], r["right"]) == (0, 0))

    run(body(), timeout=60)


def test_closing_the_page_stops_the_motors():
    async def body():
        async with robot() as (dashboard, arduino, readings, _), Chromium() as browser:
            page = await browser.open(dashboard.url)
            await page.wait_for("rtcbot.connected && rtcbot.messages > 0", 15)
            await page.press("ArrowUp")
            await reading_where(readings, lambda r: r["left"] == 150)
            closed = time.monotonic()
            await page.close()
            await reading_where(readings, lambda r: (r["left"], r["right"]) == (0, 0), timeout=2)
            assert time.monotonic() - closed < STOP_WITHIN
            assert dashboard.guard.stops == 1  # the server saw the page go (or fall silent)
            await asyncio.wait_for(dashboard.wait_viewers(0), 5)

    run(body(), timeout=60)


def test_a_browser_that_dies_stops_the_motors():
    async def body():
        async with robot() as (dashboard, arduino, readings, _), Chromium() as browser:
            page = await browser.open(dashboard.url)
            await page.wait_for("rtcbot.connected && rtcbot.messages > 0", 15)
            await page.press("KeyD")
            await reading_where(readings, lambda r: (r["left"], r["right"]) == (150, -150))
            killed = time.monotonic()
            os.killpg(browser.process.pid, signal.SIGKILL)  # no goodbye: the page cannot say stop
            await reading_where(readings, lambda r: (r["left"], r["right"]) == (0, 0), timeout=2)
            assert time.monotonic() - killed < STOP_WITHIN
            assert dashboard.guard.stops == 1  # stopped by the server, not by the board's own watchdog
            await asyncio.wait_for(dashboard.wait_viewers(0), 5)  # silent for 2 s: its connection closed

    run(body(), timeout=60)


def test_two_browsers_share_one_encode_per_camera():
    async def body():
        async with robot() as (dashboard, *_), Chromium() as first, Chromium() as second:
            pages = [await first.open(dashboard.url), await second.open(dashboard.url)]
            encoder = dashboard.encoders["cam0"]
            for page in pages:
                await page.wait_for("window.rtcbot && rtcbot.frames[0] >= 5", 20)
            assert len(dashboard.viewers) == 2
            tracks = [viewer.conn.video.addTrack() for viewer in dashboard.viewers.values()]  # their video tracks
            encoded, sent = encoder.encoded, [track.frames for track in tracks]
            for page in pages:
                seen = await page.evaluate("rtcbot.frames[0]")
                await page.wait_for(f"rtcbot.frames[0] >= {seen + 30}", 20)  # both pages keep showing video
            encoded = encoder.encoded - encoded
            sent = [track.frames - before for track, before in zip(tracks, sent)]
            # Each packet encoded once went to both pages (two encodes would give 1 packet per encode each).
            assert min(sent) >= 30 and sum(sent) >= 1.7 * encoded, (encoded, sent)

    run(body(), timeout=90)


def write_tone(path, seconds=2.0, rate=48000, amplitude=0.5, frequency=1000):
    """A 16-bit mono WAV of a tone (-9 dBFS RMS) for Chromium's fake microphone (not the robot microphone's
    440 Hz, which the page plays: echo cancellation would take that out)."""
    t = np.arange(int(seconds * rate)) / rate
    samples = (amplitude * 32767 * np.sin(2 * np.pi * frequency * t)).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())


def test_browser_microphone_plays_on_the_robot_speaker(tmp_path):
    tone = tmp_path / "tone.wav"
    write_tone(tone)

    async def body():
        microphone = [f"--use-file-for-fake-audio-capture={tone}"]
        async with robot() as (dashboard, _, _, speaker), Chromium(extra_flags=microphone) as browser:
            page = await browser.open(dashboard.url)
            await page.wait_for("rtcbot.connected && rtcbot.messages > 0", 15)
            assert speaker.frames == 0  # nothing plays until "talk" is held
            await page.evaluate("document.querySelector('#talk').dispatchEvent(new PointerEvent('pointerdown')); 1")
            await asyncio.wait_for(speaker.received(48000), 10)
            # The -9 dBFS tone through Opus: about -12 dBFS (the first blocks, from before "talk", are quieter);
            # Chromium's default fake microphone (a short beep a second) gives under -55, silence -inf.
            assert -20 < speaker.level_dbfs < -6

    run(body(), timeout=60)


def test_dashboard_without_motors_hides_the_drive_pad():
    async def body():
        with SimCamera(width=160, height=120, fps=30) as camera:
            async with Dashboard(cameras={"only": camera}) as dashboard:
                await dashboard.start(port=0)
                async with Chromium() as browser:
                    page = await browser.open(dashboard.url)
                    await page.wait_for("window.rtcbot && rtcbot.frames[0] >= 5", 20)
                    hidden = await page.evaluate(
                        "['drive', 'serial', 'sound'].map((id) => document.getElementById(id).hidden)"
                    )
                    assert hidden == [True, True, True]

    run(body(), timeout=60)
