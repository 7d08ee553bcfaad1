"""examples/browser_robot.py, run as a user runs it, driven from headless Chromium."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import pytest

pytest.importorskip("aiortc", reason="the web extra is not installed: pip install 'rtcbot[web]'")

from tests.helpers import run, sigint_as_in_a_terminal  # noqa: E402
from tests.web.chromium import Chromium, find_chromium  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


async def line_matching(stream, pattern, timeout):
    """The first line of ``stream`` matching ``pattern`` (a regex), within ``timeout`` seconds."""

    async def find():
        while True:
            line = (await stream.readline()).decode()
            if not line:
                raise AssertionError(f"the example ended before printing {pattern!r}")
            match = re.search(pattern, line)
            if match:
                return match

    return await asyncio.wait_for(find(), timeout)


@pytest.mark.slow
@pytest.mark.skipif(find_chromium() is None, reason="needs Chromium (apt install chromium; scripts/bootstrap)")
def test_browser_robot_example_drives_from_the_page():
    async def body():
        env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
        process = await asyncio.create_subprocess_exec(
            sys.executable, "examples/browser_robot.py", "--sim", "--seconds", "60", "--host", "127.0.0.1",
            "--http-port", "0", cwd=REPO, env=env, stdout=asyncio.subprocess.PIPE,
            preexec_fn=sigint_as_in_a_terminal,
        )  # fmt: skip
        try:
            url = (await line_matching(process.stdout, r"(http://\S+)", 30)).group(1)
            async with Chromium() as browser:
                page = await browser.open(url)
                await page.wait_for("window.robot && robot.connectionState === 'connected'", 15)
                await page.wait_for("document.querySelector('video').videoWidth === 640", 15)
                await page.press("KeyW")
                await line_matching(process.stdout, r"motor command: left=150 right=150", 10)
                await page.close()
                await line_matching(process.stdout, r"motors stopped", 10)
            process.send_signal(signal.SIGINT)
            assert await asyncio.wait_for(process.wait(), 15) == 0
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()

    run(body(), timeout=90)


def test_browser_robot_example_stops_by_itself():
    import subprocess

    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    result = subprocess.run(
        [sys.executable, "examples/browser_robot.py", "--sim", "--seconds", "1", "--http-port", "0"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "open http://localhost:" in result.stdout
