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
from tests.helpers import run  # noqa: E402
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
            stdout=asyncio.subprocess.PIPE,
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
