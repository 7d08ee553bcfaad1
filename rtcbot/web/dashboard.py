"""The robot's dashboard: an aiohttp app that shows every camera, the microphone and the serial readings in
a browser, plays the browser's microphone on the robot's speaker, and drives the motors from the keyboard
or a gamepad. ``rtcbot serve`` runs one; you can run one in your own program::

    async with Dashboard(cameras={"front": camera}, microphone=mic, speaker=speaker, motors=serial) as dash:
        await dash.start(host="0.0.0.0", port=8080)
        await stop_event.wait()

Each camera is captured once and encoded once (:class:`~rtcbot.web.encoder.SharedVideoEncoder`), however
many browsers watch; a camera that encodes itself (a Pi camera's hardware H.264,
:class:`~rtcbot.devices.picamera_h264.PiCamera2H264`) is sent as it is.
Every browser gets one WebRTC connection carrying all cameras, the microphone, its own
microphone back and a data channel (drive commands in; serial readings and the microphone level out).
Motors are commanded to stop when the driving page closes or goes silent (:class:`~rtcbot.web.drive.DriveGuard`).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import math
import time
from typing import Any, Dict, List, Optional

import numpy as np

from ._require import require_web as require
from .connection import RTCConnection
from .drive import DriveGuard, parse_drive
from .encoder import SharedVideoEncoder
from .media import encoded_mime
from .static_files import getRTCBotJS, read_static

__all__ = ["Dashboard"]

log = logging.getLogger("rtcbot.web.dashboard")

_STATUS_PERIOD = 0.1  # seconds between serial-reading / microphone-level updates to the pages
# A page says "alive" twice a second; one silent for this long is gone (a closed tab need not tell WebRTC,
# which would notice only by ICE consent, after ~30 s).
_VIEWER_TIMEOUT = 2.0


class _Viewer:
    """One browser: its connection and what it may do."""

    def __init__(self, number: int, conn: RTCConnection) -> None:
        self.name = f"viewer-{number}"
        self.conn = conn
        self.talking = False
        self.heard = time.monotonic()


class Dashboard:
    """See the module docstring.

    :param cameras: name -> camera: any producer of BGR frames, or of encoded frames (``PiCamera2H264``),
        which is sent as it is.
    :param microphone: a producer of audio blocks (Microphone, SimMicrophone) or None.
    :param speaker: a consumer of audio blocks (Speaker, SimSpeaker) or None.
    :param motors: the motor controller, a SerialConnection speaking ``examples/arduino``'s protocol (a
        producer of readings and a consumer of ``{"left", "right"}``), or None.
    :param iceServers: STUN/TURN servers for the connections (none: host candidates, LAN only).
    :param codec: "vp8" or "h264" for the shared camera encoders.
    """

    def __init__(
        self,
        cameras: Optional[Dict[str, Any]] = None,
        microphone: Any = None,
        speaker: Any = None,
        motors: Any = None,
        iceServers: Optional[List[Any]] = None,
        codec: str = "vp8",
        bitrate: int = 1_500_000,
    ) -> None:
        self._web = require("aiohttp.web")
        self.cameras = dict(cameras or {})
        self.microphone = microphone
        self.speaker = speaker
        self.motors = motors
        self.ice_servers = iceServers
        self._own_encoders = {
            name: SharedVideoEncoder(cam, codec=codec, bitrate=bitrate)
            for name, cam in self.cameras.items()
            if encoded_mime(cam) is None
        }
        #: name -> what each camera's video is sent from: the camera's own encoder, or one made here
        self.encoders: Dict[str, Any] = {name: self._own_encoders.get(name, cam) for name, cam in self.cameras.items()}
        self.guard = DriveGuard(motors) if motors is not None else None
        self.viewers: Dict[str, _Viewer] = {}
        self.level_dbfs = -math.inf
        self.reading: Optional[Dict[str, Any]] = None
        self._numbers = itertools.count(1)
        self._viewers_changed = asyncio.Event()
        self._runner: Any = None
        self.url = ""
        self._status_task: Optional[asyncio.Task[None]] = None
        self._closers: List[asyncio.Future[None]] = []
        if microphone is not None:
            self._level_subscription = microphone.subscribe(self._measure_level)
        if motors is not None:
            self._reading_subscription = motors.subscribe(self._store_reading)
        self.app = self._make_app()

    # -- web app -------------------------------------------------------------------------------------
    def _make_app(self) -> Any:
        web = self._web
        app = web.Application()
        app.router.add_get("/", self._page)
        app.router.add_get("/rtcbot.js", self._script)
        app.router.add_get("/api/info", self._info)
        app.router.add_post("/connect", self._connect)
        return app

    async def _page(self, request: Any) -> Any:
        return self._web.Response(content_type="text/html", text=read_static("dashboard.html"))

    async def _script(self, request: Any) -> Any:
        return self._web.Response(content_type="text/javascript", text=getRTCBotJS())

    def info(self) -> Dict[str, Any]:
        """What the page needs to build its offer: camera names, and which devices exist."""
        return {
            "cameras": list(self.cameras),
            "microphone": self.microphone is not None,
            "speaker": self.speaker is not None,
            "motors": self.motors is not None,
        }

    async def _info(self, request: Any) -> Any:
        return self._web.json_response(self.info())

    async def _connect(self, request: Any) -> Any:
        web = self._web
        try:
            offer = await request.json()
            if not isinstance(offer, dict) or "sdp" not in offer or "type" not in offer:
                raise ValueError("expected {sdp, type}")
        except ValueError as e:
            raise web.HTTPBadRequest(text=f"POST /connect takes the browser's offer as JSON {{sdp, type}}: {e}") from e
        conn = RTCConnection(iceServers=self.ice_servers)
        viewer = _Viewer(next(self._numbers), conn)
        for index, encoder in enumerate(self.encoders.values()):
            if index == 0:
                conn.video.putSubscription(encoder)
            else:
                conn.video.addTrack(encoder)
        if self.microphone is not None:
            conn.audio.putSubscription(self.microphone)
        if self.speaker is not None:
            conn.audio.subscribe(lambda block: self._play(viewer, block))
        conn.subscribe(lambda message: self._message(viewer, message))
        conn.onClose(lambda: self._gone(viewer))
        try:
            answer = await conn.getLocalDescription(offer)
        except Exception as e:
            await conn.close()
            raise web.HTTPBadRequest(text=f"could not answer the offer: {e}") from e
        self.viewers[viewer.name] = viewer
        self._viewers_changed.set()
        log.info("%s connected (%d watching)", viewer.name, len(self.viewers))
        conn.put_nowait({"hello": viewer.name, **self.info()})
        return web.json_response(answer)

    # -- from the pages ------------------------------------------------------------------------------
    def _message(self, viewer: _Viewer, message: Any) -> None:
        viewer.heard = time.monotonic()
        if not isinstance(message, dict):
            return
        if "drive" in message and self.guard is not None:
            speeds = parse_drive(message["drive"])
            if speeds is None:
                log.warning("%s sent a bad drive command %r (expected [left, right])", viewer.name, message["drive"])
            else:
                self.guard.command(viewer.name, *speeds)
        if "talk" in message:
            viewer.talking = bool(message["talk"])

    def _play(self, viewer: _Viewer, block: Any) -> None:
        if not viewer.talking or self.speaker is None:
            return
        channels = getattr(self.speaker, "channels", 1)
        try:
            self.speaker.put_nowait(block[:, :1] if channels == 1 else block)
        except Exception as e:
            log.warning("speaker did not take the browser's audio: %s", e)

    def _gone(self, viewer: _Viewer) -> None:
        if self.guard is not None:
            self.guard.release(viewer.name)  # first: the motors stop before anything else is cleaned up
        if self.viewers.pop(viewer.name, None) is not None:
            self._viewers_changed.set()
            log.info("%s left (%d watching)", viewer.name, len(self.viewers))
            self._closers.append(viewer.conn.close())
        self._closers = [c for c in self._closers if not c.done()]

    async def wait_viewers(self, count: int) -> None:
        """Wait until exactly ``count`` browsers are connected (wrap in wait_for for a timeout)."""
        while len(self.viewers) != count:
            self._viewers_changed.clear()
            await self._viewers_changed.wait()

    # -- to the pages --------------------------------------------------------------------------------
    def _measure_level(self, block: Any) -> None:
        samples = np.asarray(block, dtype=np.float32)
        mean_square = float(np.mean(np.square(samples))) if samples.size else 0.0
        self.level_dbfs = 10 * math.log10(mean_square) if mean_square > 0 else -math.inf

    def _store_reading(self, reading: Any) -> None:
        self.reading = reading

    async def _send_status(self) -> None:
        while True:
            status: Dict[str, Any] = {}
            if self.microphone is not None and math.isfinite(self.level_dbfs):
                status["level"] = round(self.level_dbfs, 1)
            if self.reading is not None:
                status["serial"] = self.reading
            if self.guard is not None:
                status["motors"] = list(self.guard.speeds)
            now = time.monotonic()
            for viewer in list(self.viewers.values()):
                if not viewer.conn.ready:  # still connecting (its data channel not open yet)
                    viewer.heard = now
                elif now - viewer.heard > _VIEWER_TIMEOUT:
                    log.info("%s silent for %.1f s: closing its connection", viewer.name, now - viewer.heard)
                    viewer.conn.close()  # its onClose removes it (and stops the motors if it drove)
            if status:
                text = json.dumps(status, default=str)
                for viewer in list(self.viewers.values()):
                    try:
                        viewer.conn.put_nowait(text)
                    except Exception:
                        continue  # closing: it goes on the next round
            await asyncio.sleep(_STATUS_PERIOD)

    # -- lifetime ------------------------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 8080) -> str:
        """Serves the dashboard; returns its URL (port 0 picks a free port)."""
        web = self._web
        self._runner = web.AppRunner(self.app, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound_host, bound_port = self._runner.addresses[0][:2]
        self.url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{bound_port}/"
        self._status_task = asyncio.get_running_loop().create_task(self._send_status(), name="rtcbot-dashboard-status")
        return self.url

    async def close(self) -> None:
        """Stops the motors, closes every connection, the encoders and the server (not the devices)."""
        if self.guard is not None:
            await self.guard.aclose()
        if self._status_task is not None:
            self._status_task.cancel()
            await asyncio.gather(self._status_task, return_exceptions=True)
        viewers, self.viewers = list(self.viewers.values()), {}
        closing = [v.conn.close() for v in viewers] + self._closers
        await asyncio.gather(*closing, return_exceptions=True)
        await asyncio.gather(*(e.aclose() for e in self._own_encoders.values()), return_exceptions=True)
        if self.microphone is not None:
            self.microphone.unsubscribe(self._level_subscription)
        if self.motors is not None:
            self.motors.unsubscribe(self._reading_subscription)
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> Dashboard:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()
