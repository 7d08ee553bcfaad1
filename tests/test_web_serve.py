"""``rtcbot serve``: its options, and the --sim dashboard as a user runs it, seen in headless Chromium."""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import sys

import pytest

pytest.importorskip("aiortc", reason="the web extra is not installed: pip install 'rtcbot[web]'")

from rtcbot.web import serve  # noqa: E402
from tests.helpers import run, sigint_as_in_a_terminal  # noqa: E402
from tests.web.chromium import Chromium, find_chromium  # noqa: E402


def test_options_for_the_cli():
    parser = argparse.ArgumentParser()
    serve.add_arguments(parser)
    args = parser.parse_args(["--sim", "--host", "127.0.0.1", "--port", "9000"])
    assert (args.sim, args.host, args.port, args.ice_server, args.serial) == (True, "127.0.0.1", 9000, [], None)
    defaults = parser.parse_args([])
    assert (defaults.host, defaults.port, defaults.sim) == ("0.0.0.0", 8080, False)


@pytest.mark.slow
@pytest.mark.skipif(find_chromium() is None, reason="needs Chromium (apt install chromium; scripts/bootstrap)")
def test_serve_sim_shows_the_robot_and_stops_on_ctrl_c():
    async def body():
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "rtcbot.web.serve", "--sim", "--host", "127.0.0.1", "--port", "0", "--seconds", "60",
            stdout=asyncio.subprocess.PIPE, preexec_fn=sigint_as_in_a_terminal,
        )  # fmt: skip
        try:
            line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
            url = re.search(r"(http://\S+)", line).group(1)
            async with Chromium() as browser:
                page = await browser.open(url)
                await page.wait_for("window.rtcbot && rtcbot.frames[0] >= 10", 20)
                await page.wait_for("rtcbot.last && rtcbot.last.serial", 10)
            process.send_signal(signal.SIGINT)
            assert await asyncio.wait_for(process.wait(), 15) == 0
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()

    run(body(), timeout=90)


@pytest.fixture
def picamera(monkeypatch):
    from tests.fakes import picamera2 as fake

    fake.system.reset(cameras=1)
    fake.install(monkeypatch)
    yield fake.system
    fake.system.reset()


def test_h264_is_on_by_default_and_can_be_turned_off():
    parser = argparse.ArgumentParser()
    serve.add_arguments(parser)
    assert parser.parse_args([]).h264 is True
    assert parser.parse_args(["--no-h264"]).h264 is False
    assert "--no-h264" in parser.format_help() and "hardware encoder" in parser.format_help()


@pytest.mark.parametrize("h264", [True, False], ids=["h264", "no-h264"])
def test_a_csi_camera_is_served_from_its_hardware_encoder_unless_turned_off(picamera, h264, no_leaks):
    from rtcbot.devices.picamera import PiCamera2
    from rtcbot.devices.picamera_h264 import PiCamera2H264

    parser = argparse.ArgumentParser()
    serve.add_arguments(parser)
    args = parser.parse_args(["--no-audio", "--width", "320", "--height", "240"] + ([] if h264 else ["--no-h264"]))

    async def body():
        async with serve._Devices(args) as devices:
            await devices.open()
            return type(devices.cameras["csi:0"])

    assert run(body()) is (PiCamera2H264 if h264 else PiCamera2)


def test_the_dashboard_sends_a_hardware_encoders_h264_as_it_is(picamera, no_leaks):
    from aiohttp import ClientSession

    from rtcbot.devices.picamera import PiCamera2
    from rtcbot.devices.picamera_h264 import PiCamera2H264
    from rtcbot.web import Dashboard, RTCConnection
    from tests.helpers import next_item

    async def body():
        with PiCamera2(width=320, height=240, fps=30) as camera, PiCamera2H264(camera) as video:
            async with Dashboard(cameras={"csi:0": video}) as dashboard:
                url = await dashboard.start("127.0.0.1", 0)
                assert dashboard.encoders["csi:0"] is video  # no software encoder made for it
                viewer = RTCConnection()
                try:
                    frames = viewer.video.subscribe()
                    offer = await viewer.getLocalDescription()
                    async with ClientSession() as session:
                        async with session.post(url + "connect", json=offer) as response:
                            answer = await response.json()
                    assert "H264" in answer["sdp"] and "VP8" not in answer["sdp"]
                    await viewer.setRemoteDescription(answer)
                    frame = await next_item(frames, timeout=15)
                    assert frame.shape == (240, 320, 3)
                finally:
                    await viewer.close()

    run(body(), timeout=60)
