"""A headless Chromium driven over its DevTools protocol (with aiohttp's websocket client), for tests.

    async with Chromium() as browser:
        page = await browser.open("http://127.0.0.1:8080/")
        title = await page.evaluate("document.title")
        await page.press("KeyW")
        await page.close()                     # as a user closing the tab

The browser runs in a fresh profile directory with fake camera/microphone and media permission granted, and
is killed (and its profile removed) on the way out, whatever happened. ``CHROMIUM`` names the binary;
:func:`find_chromium` returns None when there is none (tests skip then).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import shutil
import signal
import tempfile
from typing import Any, Dict, List, Optional

import aiohttp

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-port=0",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
    # Host candidates as IP addresses (not mDNS names) so aiortc can reach the page without multicast DNS.
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--disable-dev-shm-usage",
]

# Virtual key codes DevTools needs to produce real key events, by KeyboardEvent.code.
_KEYS = {
    "KeyW": ("w", 87),
    "KeyA": ("a", 65),
    "KeyS": ("s", 83),
    "KeyD": ("d", 68),
    "ArrowUp": ("ArrowUp", 38),
    "ArrowDown": ("ArrowDown", 40),
    "ArrowLeft": ("ArrowLeft", 37),
    "ArrowRight": ("ArrowRight", 39),
    "Space": (" ", 32),
}


def find_chromium() -> Optional[str]:
    """The Chromium binary to use, or None."""
    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


class DevToolsError(RuntimeError):
    """A DevTools command failed or a page script threw."""


class Page:
    """One tab, reached through a flattened DevTools session."""

    def __init__(self, browser: Chromium, target_id: str, session_id: str) -> None:
        self.browser = browser
        self.target_id = target_id
        self.session_id = session_id

    async def send(self, method: str, params: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        return await self.browser.send(method, params, session_id=self.session_id)

    async def evaluate(self, expression: str, timeout: float = 10.0) -> Any:
        """The value of a JavaScript expression (awaited if it is a promise), as JSON."""
        result = await asyncio.wait_for(
            self.send(
                "Runtime.evaluate",
                {"expression": expression, "awaitPromise": True, "returnByValue": True},
            ),
            timeout,
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise DevToolsError(f"page script failed: {text}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 10.0) -> Any:
        """Wait (in the page, on each animation frame) until ``expression`` is truthy; returns its value."""
        script = f"""new Promise((resolve) => {{
            const check = () => {{ let v; try {{ v = ({expression}); }} catch (e) {{ v = null; }}
                if (v) resolve(v); else requestAnimationFrame(check); }};
            check(); }})"""
        try:
            return await self.evaluate(script, timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"the page never got to: {expression} (waited {timeout} s)") from None

    async def press(self, code: str) -> None:
        """Press a key (``"KeyW"``, ``"ArrowUp"``...) down, without releasing it."""
        key, vk = _KEYS[code]
        await self.send(
            "Input.dispatchKeyEvent",
            {
                "type": "keyDown",
                "key": key,
                "code": code,
                "windowsVirtualKeyCode": vk,
                "text": key if len(key) == 1 else "",
            },
        )

    async def release(self, code: str) -> None:
        key, vk = _KEYS[code]
        await self.send(
            "Input.dispatchKeyEvent", {"type": "keyUp", "key": key, "code": code, "windowsVirtualKeyCode": vk}
        )

    async def close(self) -> None:
        """Closes the tab, as a user would."""
        await self.browser.send("Target.closeTarget", {"targetId": self.target_id})


class Chromium:
    """A headless Chromium process and its DevTools connection (an async context manager)."""

    def __init__(self, binary: Optional[str] = None, extra_flags: Optional[List[str]] = None) -> None:
        self.binary = binary or find_chromium()
        if self.binary is None:
            raise FileNotFoundError("no chromium binary found (apt install chromium, or set CHROMIUM)")
        self.extra_flags = list(extra_flags or [])
        self.process: Optional[asyncio.subprocess.Process] = None
        self.stderr_lines: List[str] = []
        self._profile: Optional[str] = None
        self._session: Optional[aiohttp.ClientSession] = None
        self._ws: Any = None
        self._reader: Optional[asyncio.Task] = None
        self._drain: Optional[asyncio.Task] = None
        self._ids = itertools.count(1)
        self._pending: Dict[int, asyncio.Future] = {}
        self.events: asyncio.Queue = asyncio.Queue()

    async def __aenter__(self) -> Chromium:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    async def start(self, timeout: float = 20.0) -> None:
        self._profile = tempfile.mkdtemp(prefix="rtcbot-chromium-")
        self.process = await asyncio.create_subprocess_exec(
            self.binary,
            *FLAGS,
            *self.extra_flags,
            f"--user-data-dir={self._profile}",
            "about:blank",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # its own process group: stop() kills every child it started
        )
        url = await asyncio.wait_for(self._devtools_url(), timeout)
        self._drain = asyncio.get_running_loop().create_task(self._drain_stderr())
        self._session = aiohttp.ClientSession()
        self._ws = await self._session.ws_connect(url, max_msg_size=0)
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _devtools_url(self) -> str:
        assert self.process is not None and self.process.stderr is not None
        while True:
            line = await self.process.stderr.readline()
            if not line:
                raise RuntimeError("chromium exited before DevTools listened:\n" + "".join(self.stderr_lines[-20:]))
            text = line.decode(errors="replace")
            self.stderr_lines.append(text)
            match = re.search(r"DevTools listening on (ws://\S+)", text)
            if match:
                return match.group(1)

    async def _drain_stderr(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        while True:
            line = await self.process.stderr.readline()
            if not line:
                return
            self.stderr_lines.append(line.decode(errors="replace"))
            del self.stderr_lines[:-200]

    async def _read(self) -> None:
        try:
            async for msg in self._ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                data = json.loads(msg.data)
                future = self._pending.pop(data.get("id"), None) if "id" in data else None
                if future is not None and not future.done():
                    if "error" in data:
                        future.set_exception(DevToolsError(f"{data['error']}"))
                    else:
                        future.set_result(data.get("result", {}))
                elif "method" in data:
                    self.events.put_nowait(data)
        finally:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(DevToolsError("the DevTools connection closed"))

    async def send(
        self, method: str, params: Optional[Dict[str, Any]] = None, session_id: Optional[str] = None
    ) -> Dict[str, Any]:
        message_id = next(self._ids)
        message: Dict[str, Any] = {"id": message_id, "method": method, "params": params or {}}
        if session_id is not None:
            message["sessionId"] = session_id
        future = asyncio.get_running_loop().create_future()
        self._pending[message_id] = future
        await self._ws.send_str(json.dumps(message))
        return await future

    async def open(self, url: str) -> Page:
        """Opens ``url`` in a new tab and waits until it has loaded."""
        target = await self.send("Target.createTarget", {"url": "about:blank"})
        attached = await self.send("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True})
        page = Page(self, target["targetId"], attached["sessionId"])
        await page.send("Page.enable")
        await page.send("Runtime.enable")
        await page.send("Page.navigate", {"url": url})
        await page.wait_for("document.readyState === 'complete'", timeout=15)
        return page

    async def stop(self) -> None:
        """Kills the browser (its whole process group) and removes its profile. Safe to call twice."""
        if self._ws is not None:
            await self._ws.close()
        for task in (self._reader, self._drain):
            if task is not None:
                task.cancel()
        await asyncio.gather(*(t for t in (self._reader, self._drain) if t is not None), return_exceptions=True)
        self._reader = self._drain = None
        if self._session is not None:
            await self._session.close()
            self._session = None
        process, self.process = self.process, None
        if process is not None and process.returncode is None:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            await asyncio.wait_for(process.wait(), 10)
        if self._profile is not None:
            shutil.rmtree(self._profile, ignore_errors=True)
            self._profile = None
