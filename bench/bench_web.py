"""WebRTC into a real browser: 640x480 at 30 frames/s from a server process into headless Chromium.

Each frame carries its capture time (wall clock, ms) drawn as 32 black/white 40x40 blocks across its top;
the page reads them back from a canvas on every displayed frame (``requestVideoFrameCallback``), so latency is
capture -> displayed in the page, codec and jitter buffer included. Measured for three servers streaming the
same frames (pre-rendered test pattern + the stamp), each in its own process:

- ``aiortc``: a bare aiortc server (a ``VideoStreamTrack`` calling ``VideoFrame.from_ndarray``), the baseline;
- ``rtcbot``: ``RTCConnection`` with ``conn.video.putSubscription(camera)`` (aiortc's encoder per connection);
- ``rtcbot-shared``: the dashboard's path, a ``SharedVideoEncoder`` (one VP8 encode for every viewer).

and, for H.264 passthrough, the server CPU of ``rtcbot-h264-passthrough`` (a producer of
``EncodedVideoFrame`` replaying pre-encoded H.264, as a Pi camera's hardware encoder (``PiCamera2H264``)
would) against ``aiortc-h264`` (bare aiortc encoding the raw frames with H.264); those frames carry no
stamp, so only frames/s and CPU are reported for them.

Metrics: frames/s displayed, time to first frame (from the page starting its offer), capture-to-display
latency p50/p90, server CPU (all its threads, % of one core) over the same window. Targets: >= 29 frames/s,
first frame < 1 s, p50 latency < 100 ms, CPU <= 1.1x the bare aiortc server.

    python -m bench --only web
    python -m bench.bench_web          # the quick run, rows printed
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import statistics
import sys
import time
from typing import Any, Dict, List, Optional

import numpy as np

WIDTH, HEIGHT, FPS = 640, 480, 30
BITS, BLOCK = 32, 40  # the stamp: 32 bits, 16 blocks of 40x40 px per row, two rows
SERVERS = ("aiortc", "rtcbot", "rtcbot-shared")  # H.264: "aiortc-h264", "rtcbot-h264-passthrough"


def _row(case: str, metric: str, value: float, unit: str, baseline: Optional[str] = None,
         baseline_value: Optional[float] = None, target: Optional[str] = None,
         met: Optional[bool] = None) -> Dict[str, Any]:  # fmt: skip
    from ._table import row

    return row("web", case, metric, value, unit, baseline, baseline_value, target, met)


# -- the frames ---------------------------------------------------------------------------------------------


def stamp(frame: np.ndarray, millis: int) -> None:
    """Draw ``millis`` (mod 2**32) into the top of ``frame`` as black (0) / white (1) blocks, LSB first."""
    for bit in range(BITS):
        row, col = divmod(bit, WIDTH // BLOCK)
        value = 255 if (millis >> bit) & 1 else 0
        frame[row * BLOCK : (row + 1) * BLOCK, col * BLOCK : (col + 1) * BLOCK] = value


class StampedCamera:
    """A 30 frames/s source of the test pattern with the capture time stamped in; a producer (subscribe)."""

    def __init__(self) -> None:
        from rtcbot.base import SubscriptionProducer
        from rtcbot.devices.sim import render_test_pattern
        from rtcbot.subscriptions import MostRecentSubscription

        class Producer(SubscriptionProducer):
            pass

        self.producer = Producer(MostRecentSubscription)
        self.patterns = [render_test_pattern(WIDTH, HEIGHT, i) for i in range(FPS)]
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        from rtcbot.devices.camera import Frame

        period = 1.0 / FPS
        next_at = time.monotonic()
        index = 0
        while True:
            frame = self.patterns[index % FPS].copy()
            stamp(frame, int(time.time() * 1000) & 0xFFFFFFFF)
            self.producer._put_nowait(Frame(frame, time.monotonic(), index))
            index += 1
            next_at += period
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))


# -- the servers (each run in its own process: python -m bench.bench_web --serve KIND) -----------------------

PAGE = """<!doctype html><html><body><video autoplay muted playsinline></video>
<canvas width="640" height="80" style="display:none"></canvas>
<script type="module">
import { RTCConnection, connect } from "/rtcbot.js";
const video = document.querySelector("video");
const ctx = document.querySelector("canvas").getContext("2d", { willReadFrequently: true });
const s = (window.stats = { frames: 0, times: [], latencies: [], first: null, started: performance.now() });
const conn = new RTCConnection();
conn.video.subscribe(video);
const onFrame = (now, meta) => {
  s.frames += 1;
  s.times.push(now);
  if (s.first === null) s.first = now - s.started;
  ctx.drawImage(video, 0, 0, 640, 80, 0, 0, 640, 80);
  const px = ctx.getImageData(0, 0, 640, 80).data;
  let stamp = 0;
  for (let bit = 0; bit < 32; bit++) {
    const x = (bit % 16) * 40 + 20, y = Math.floor(bit / 16) * 40 + 20;
    if (px[(y * 640 + x) * 4 + 1] > 128) stamp += 2 ** bit;
  }
  const shown = performance.timeOrigin + meta.expectedDisplayTime;
  s.latencies.push(((shown % 2 ** 32) - stamp + 2 ** 32) % 2 ** 32);
  video.requestVideoFrameCallback(onFrame);
};
video.requestVideoFrameCallback(onFrame);
await connect(conn, "/connect");
</script></body></html>"""


async def _serve(kind: str) -> None:
    import aiortc  # noqa: F401  (imported before serving, as a real server would: not counted in first frame)
    from aiohttp import web

    from rtcbot.web import RTCConnection, getRTCBotJS

    camera = StampedCamera()
    encoder: Any = None
    if kind == "rtcbot-h264-passthrough":
        encoder = await _replayed_h264()
    if kind == "rtcbot-shared":
        from rtcbot.web.encoder import SharedVideoEncoder

        encoder = SharedVideoEncoder(camera.producer)
    connections: List[Any] = []

    async def connect(request: Any) -> Any:
        offer = await request.json()
        if kind in ("aiortc", "aiortc-h264"):
            answer = await _bare_aiortc_answer(offer, camera, connections, h264=kind == "aiortc-h264")
        else:
            conn = RTCConnection()
            connections.append(conn)
            conn.video.putSubscription(encoder if encoder is not None else camera.producer)
            answer = await conn.getLocalDescription(offer)
        return web.json_response(answer)

    async def page(request: Any) -> Any:
        return web.Response(content_type="text/html", text=PAGE)

    async def script(request: Any) -> Any:
        return web.Response(content_type="text/javascript", text=getRTCBotJS())

    app = web.Application()
    app.add_routes([web.get("/", page), web.get("/rtcbot.js", script), web.post("/connect", connect)])
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    print(f"http://127.0.0.1:{runner.addresses[0][1]}/", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent closes stdin
    await asyncio.gather(*(c.close() for c in connections), return_exceptions=True)
    replay = getattr(encoder, "replay", None)
    if replay is not None:
        replay.cancel()
    if hasattr(encoder, "aclose"):
        await encoder.aclose()
    elif encoder is not None:
        encoder.close()
    camera.task.cancel()
    await runner.cleanup()


async def _replayed_h264() -> Any:
    """A stand-in for a camera's hardware H.264 encoder: 3 s of the test pattern encoded beforehand (libx264,
    a keyframe a second), replayed at 30 frames/s by a producer of EncodedVideoFrame with a ``codec``, as
    ``PiCamera2H264`` is. Its encoding costs this process nothing, as a Pi's encoder costs the CPU nothing."""
    import fractions

    import av

    from rtcbot.base import SubscriptionProducer
    from rtcbot.devices.encoded import EncodedVideoFrame
    from rtcbot.devices.sim import render_test_pattern

    context = av.CodecContext.create("libx264", "w")
    context.width, context.height, context.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    context.time_base = fractions.Fraction(1, 90000)
    context.gop_size = FPS
    context.bit_rate = 1_500_000
    context.options = {"preset": "ultrafast", "tune": "zerolatency", "profile": "baseline", "level": "31"}
    units = []
    for i in range(3 * FPS):
        frame = av.VideoFrame.from_ndarray(render_test_pattern(WIDTH, HEIGHT, i), format="bgr24")
        frame = frame.reformat(format="yuv420p")
        frame.pts = i * 3000
        units += [(bytes(p), bool(p.is_keyframe)) for p in context.encode(frame)]
    class ReplayedH264(SubscriptionProducer):
        codec = "h264"

        def request_keyframe(self) -> None:
            """One comes every second anyway (the frames are fixed)."""

    source = ReplayedH264()

    async def replay() -> None:
        next_at = time.monotonic()
        for index in itertools.count():  # 3 s = 3 whole GOPs: the replay starts again at a keyframe
            data, keyframe = units[index % len(units)]
            source._put_nowait(EncodedVideoFrame(data, keyframe, time.monotonic(), WIDTH, HEIGHT, index=index))
            next_at += 1.0 / FPS
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    source.replay = asyncio.get_running_loop().create_task(replay())  # type: ignore[attr-defined]
    return source


async def _bare_aiortc_answer(
    offer: Dict[str, str], camera: StampedCamera, connections: List[Any], h264: bool = False
) -> Dict[str, str]:
    """What a bare aiortc program does: a VideoStreamTrack converting each numpy frame with from_ndarray."""
    import fractions

    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription, VideoStreamTrack
    from av import VideoFrame

    frames = camera.producer.subscribe()

    class Track(VideoStreamTrack):
        start: Optional[float] = None

        async def recv(self) -> Any:
            image = await frames.get()
            frame = VideoFrame.from_ndarray(np.asarray(image), format="bgr24")
            if self.start is None:
                self.start = image.timestamp
            frame.pts = int((image.timestamp - self.start) * 90000)
            frame.time_base = fractions.Fraction(1, 90000)
            return frame

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    connections.append(pc)
    pc.addTrack(Track())
    if h264:
        from rtcbot.web.media import codec_preferences

        pc.getTransceivers()[0].setCodecPreferences(codec_preferences("video", "video/H264"))
    await pc.setRemoteDescription(RTCSessionDescription(**offer))
    await pc.setLocalDescription(await pc.createAnswer())
    return {"sdp": pc.localDescription.sdp, "type": pc.localDescription.type}


# -- the measurement ----------------------------------------------------------------------------------------


async def _measure(kind: str, window: float) -> Dict[str, float]:
    import psutil

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    from tests.web.chromium import Chromium

    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.bench_web", "--serve", kind,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()  # type: ignore[union-attr]
        url = re.search(r"(http://\S+)", line).group(1)  # type: ignore[union-attr]
        server = psutil.Process(process.pid)
        async with Chromium() as browser:
            page = await browser.open(url)
            await page.wait_for("stats.frames >= 60", 30)  # two seconds in: past start-up and ramp-up
            first = await page.evaluate("stats.first")
            frames0, count0 = await page.evaluate("[stats.frames, stats.latencies.length]")
            cpu0, t0 = sum(server.cpu_times()[:2]), time.monotonic()
            await page.evaluate(f"new Promise((r) => setTimeout(r, {int(window * 1000)}))", timeout=window + 10)
            cpu1, t1 = sum(server.cpu_times()[:2]), time.monotonic()
            frames1 = await page.evaluate("stats.frames")
            latencies = await page.evaluate(f"stats.latencies.slice({count0})")
    finally:
        if process.stdin is not None:
            process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except asyncio.TimeoutError:
            process.kill()
            await process.wait()
    plausible = [x for x in latencies if 0 <= x < 10_000]  # a misread stamp (a block mid-transition) is dropped
    return {
        "fps": (frames1 - frames0) / (t1 - t0),
        "first_ms": float(first),
        "p50": statistics.median(plausible) if plausible else float("nan"),
        "p90": float(np.percentile(plausible, 90)) if plausible else float("nan"),
        "cpu": 100.0 * (cpu1 - cpu0) / (t1 - t0),
        "misread": 1.0 - len(plausible) / max(1, len(latencies)),
    }


def run(quick: bool) -> List[Dict[str, Any]]:
    window = 5.0 if quick else 15.0
    rounds = 1 if quick else 3
    results: Dict[str, List[Dict[str, float]]] = {kind: [] for kind in SERVERS}
    for _ in range(rounds):  # alternate, so background load hits all alike
        for kind in SERVERS:
            results[kind].append(asyncio.run(_measure(kind, window)))

    def best(kind: str, key: str, lowest: bool = True) -> float:
        values = [r[key] for r in results[kind]]
        return min(values) if lowest else max(values)

    case = f"{WIDTH}x{HEIGHT} at {FPS} frames/s -> headless Chromium, loopback, {window:g} s x {rounds}"
    base = {key: best("aiortc", key, key != "fps") for key in ("fps", "first_ms", "p50", "p90", "cpu")}
    rows = []
    for kind in SERVERS[1:]:
        fps, first, p50 = best(kind, "fps", False), best(kind, "first_ms"), best(kind, "p50")
        p90, cpu = best(kind, "p90"), best(kind, "cpu")
        label = f"{case}, {kind}"
        rows += [
            _row(label, "frames/s displayed", fps, "frames/s", "bare aiortc", base["fps"], ">= 29", fps >= 29),
            _row(label, "time to first frame", first, "ms", "bare aiortc", base["first_ms"], "< 1000 ms", first < 1000),
            _row(label, "p50 capture -> display", p50, "ms", "bare aiortc", base["p50"], "< 100 ms", p50 < 100),
            _row(label, "p90 capture -> display", p90, "ms", "bare aiortc", base["p90"]),
            _row(label, "server CPU", cpu, "% of a core", "bare aiortc", base["cpu"], "<= 1.1x",
                 cpu <= 1.1 * base["cpu"]),
        ]  # fmt: skip
    h264 = {kind: [] for kind in ("aiortc-h264", "rtcbot-h264-passthrough")}  # type: Dict[str, List[Dict[str, float]]]
    for _ in range(rounds):
        for kind in h264:
            h264[kind].append(asyncio.run(_measure(kind, window)))
    reencode_cpu = min(r["cpu"] for r in h264["aiortc-h264"])
    passthrough_cpu = min(r["cpu"] for r in h264["rtcbot-h264-passthrough"])
    passthrough_fps = max(r["fps"] for r in h264["rtcbot-h264-passthrough"])
    label = f"{WIDTH}x{HEIGHT} H.264 at {FPS} frames/s -> headless Chromium, rtcbot passthrough (camera-encoded)"
    rows += [
        _row(label, "frames/s displayed", passthrough_fps, "frames/s", "bare aiortc re-encoding H.264",
             max(r["fps"] for r in h264["aiortc-h264"]), ">= 29", passthrough_fps >= 29),
        _row(label, "server CPU", passthrough_cpu, "% of a core", "bare aiortc re-encoding H.264", reencode_cpu),
    ]  # fmt: skip
    return rows


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        asyncio.run(_serve(sys.argv[2]))
    else:
        for result in run(quick="--full" not in sys.argv):
            print(result)
