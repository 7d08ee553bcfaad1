"""H.264 passthrough into WebRTC against aiortc encoding frames itself: CPU per frame on the sending side.

640x480 at 30 frames/s from one aiortc peer connection to another on loopback, the receiver in its own
process (so its decoding is not counted). Three ways to send, one after the other in the same run:

- passthrough: frames encoded beforehand (as the Pi's hardware encoder would hand them over) from a
  producer of ``EncodedVideoFrame`` put into ``RTCConnection().video`` (what ``PiCamera2H264`` does),
  which aiortc only packs into RTP;
- re-encode VP8: BGR frames (what a camera gives) turned into ``av.VideoFrame`` and encoded by aiortc, its
  default path and codec;
- re-encode H.264: the same, with the codec forced to H.264 (aiortc's libx264).

The figure is the sending process's CPU time (all threads, ``time.process_time``) over the frames sent,
divided by their number; the ratio is passthrough / re-encode (lower is better). The CPU columns carry the
same sending-side figure per 1,000 frames (not ``bench._cpu.CpuMeter``: the receiver is a child process, and
its decoding is deliberately left out)::

    python -m bench.bench_h264            # 10 s per case
    python -m bench --quick --only h264   # 3 s per case
"""
from __future__ import annotations

import asyncio
import fractions
import multiprocessing
import time
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from bench._table import row

WIDTH, HEIGHT, FPS = 640, 480, 30
BITRATE = 1_000_000  # what aiortc's encoders aim for by default
DISTINCT_IMAGES = 30


def _images() -> List[np.ndarray]:
    """A textured, moving picture (BGR), so the encoders work as hard as on a camera's frames."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    base = np.stack([(x * 255 // WIDTH), (y * 255 // HEIGHT), ((x + y) * 255 // (WIDTH + HEIGHT))], axis=2)
    base = base.astype(np.uint8)
    rng = np.random.default_rng(0)
    images = []
    for i in range(DISTINCT_IMAGES):
        image = np.roll(base, 8 * i, axis=1)
        noise = rng.integers(0, 24, (HEIGHT // 8, WIDTH // 8, 1), dtype=np.uint8)
        images.append(np.ascontiguousarray(image + np.kron(noise, np.ones((8, 8, 1), np.uint8))))
    return images


def _pre_encode(images: List[np.ndarray], count: int) -> List[Any]:
    """``count`` EncodedVideoFrames of the images in turn: constrained baseline, an IDR every 2 s."""
    import av

    from rtcbot.devices.encoded import EncodedVideoFrame

    codec = av.CodecContext.create("libx264", "w")
    codec.width, codec.height, codec.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    codec.time_base = fractions.Fraction(1, FPS)
    codec.bit_rate = BITRATE
    codec.gop_size = 2 * FPS
    codec.options = {"preset": "ultrafast", "tune": "zerolatency", "profile": "baseline"}
    frames = []
    for i in range(count):
        picture = av.VideoFrame.from_ndarray(images[i % len(images)], format="bgr24")
        picture.pts = i
        for packet in codec.encode(picture):
            frames.append(
                EncodedVideoFrame(bytes(packet), bool(packet.is_keyframe), i / FPS, WIDTH, HEIGHT, index=i)
            )
    return frames


# ------------------------------------------------------------------------------------------ the receiver


def _receiver_main(conn: Any) -> None:
    """Child process: answers the offer, decodes every frame, reports how many arrived."""
    asyncio.run(_receive(conn))


async def _receive(conn: Any) -> None:
    from aiortc import RTCPeerConnection, RTCSessionDescription
    from aiortc.mediastreams import MediaStreamError

    pc = RTCPeerConnection()
    tracks: asyncio.Queue = asyncio.Queue()
    pc.on("track", tracks.put_nowait)
    kind, sdp = await asyncio.to_thread(conn.recv)
    await pc.setRemoteDescription(RTCSessionDescription(sdp, kind))
    await pc.setLocalDescription(await pc.createAnswer())
    conn.send((pc.localDescription.type, pc.localDescription.sdp))
    received, size = 0, None
    try:
        track = await asyncio.wait_for(tracks.get(), 20)
        while True:
            frame = await asyncio.wait_for(track.recv(), 3)
            received += 1
            size = (frame.width, frame.height)
    except (asyncio.TimeoutError, MediaStreamError):
        pass
    finally:
        await pc.close()
    conn.send((received, size))


# ------------------------------------------------------------------------------------------ the sender


class _Pacer:
    """Hands out items at FPS and measures this process's CPU from the first item to the last."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.sent = 0
        self.start = 0.0
        self.cpu_start = 0.0
        self.cpu = 0.0
        self.elapsed = 0.0
        self.done = asyncio.Event()

    async def next(self) -> bool:
        """Waits for the next frame's time; False once ``count`` frames were handed out."""
        now = time.perf_counter()
        if self.sent == 0:
            self.start, self.cpu_start = now, time.process_time()
        if self.sent >= self.count:
            if not self.done.is_set():
                self.cpu = time.process_time() - self.cpu_start
                self.elapsed = now - self.start
                self.done.set()
            return False
        due = self.start + self.sent / FPS
        if due > now:
            await asyncio.sleep(due - now)
        self.sent += 1
        return True


def _frame_track(images: List[np.ndarray], pacer: _Pacer) -> Any:
    """aiortc's default path: a camera's BGR frames as av.VideoFrames, encoded by aiortc."""
    import av
    from aiortc import MediaStreamTrack
    from aiortc.mediastreams import MediaStreamError

    class FrameTrack(MediaStreamTrack):
        kind = "video"

        async def recv(self) -> Any:
            if not await pacer.next():
                raise MediaStreamError
            index = pacer.sent - 1
            frame = av.VideoFrame.from_ndarray(images[index % len(images)], format="bgr24")
            frame.pts = index * 90000 // FPS
            frame.time_base = fractions.Fraction(1, 90000)
            return frame

    return FrameTrack()


class _PacedEncodedSource:
    """A producer of pre-encoded frames at FPS (the camera's encoder), as ``conn.video.putSubscription`` takes
    it: ``codec``, ``request_keyframe()``, ``subscribe``/``unsubscribe``."""

    codec = "h264"

    def __init__(self, frames: List[Any], pacer: _Pacer) -> None:
        self._frames = frames
        self._pacer = pacer
        self._subscriptions: List[Any] = []
        self.task: Optional[asyncio.Task] = None

    def subscribe(self, subscription: Any) -> Any:
        self._subscriptions.append(subscription)
        return subscription

    def start(self) -> None:
        """Starts the camera once the connection is up (as a running camera's frames would be waiting)."""
        self.task = asyncio.ensure_future(self._run())

    def request_keyframe(self) -> None:
        """The frames are fixed: the next IDR comes within 2 s (none is needed: nothing is lost on loopback)."""

    def unsubscribe(self, subscription: Any) -> None:
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)

    async def _run(self) -> None:
        while await self._pacer.next():
            frame = self._frames[self._pacer.sent - 1]
            for subscription in list(self._subscriptions):
                subscription.put_nowait(frame)

    async def aclose(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


async def _send(case: str, images: List[np.ndarray], encoded: List[Any], count: int) -> Dict[str, Any]:
    from aiortc import RTCPeerConnection, RTCSessionDescription

    from rtcbot.web import RTCConnection
    from rtcbot.web.media import codec_preferences

    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=_receiver_main, args=(child,), daemon=True)
    process.start()
    pacer = _Pacer(count)
    try:
        if case == "passthrough":  # rtcbot's path: the encoded producer into conn.video
            source = _PacedEncodedSource(encoded, pacer)
            conn = RTCConnection()
            try:
                conn.video.encoded_queue_size = 64  # nothing is dropped if this machine stalls
                conn.video.putSubscription(source)
                offer = await conn.getLocalDescription()
                parent.send((offer["type"], offer["sdp"]))
                kind, sdp = await asyncio.to_thread(parent.recv)
                await conn.setRemoteDescription({"type": kind, "sdp": sdp})
                await asyncio.wait_for(conn.onReady(), 30)
                source.start()
                await asyncio.wait_for(pacer.done.wait(), count / FPS + 30)
                received, size = await asyncio.to_thread(_recv_within, parent, 30.0)
            finally:
                await source.aclose()
                await conn.close()
        else:  # aiortc's own: BGR frames encoded by its sender
            pc = RTCPeerConnection()
            track = _frame_track(images, pacer)
            try:
                sender = pc.addTrack(track)
                if case == "re-encode H.264":
                    (transceiver,) = [t for t in pc.getTransceivers() if t.sender is sender]
                    transceiver.setCodecPreferences(codec_preferences("video", "video/H264"))
                await pc.setLocalDescription(await pc.createOffer())
                parent.send((pc.localDescription.type, pc.localDescription.sdp))
                kind, sdp = await asyncio.to_thread(parent.recv)
                await pc.setRemoteDescription(RTCSessionDescription(sdp, kind))
                await asyncio.wait_for(pacer.done.wait(), count / FPS + 30)
                received, size = await asyncio.to_thread(_recv_within, parent, 30.0)
            finally:
                track.stop()
                await pc.close()
    finally:
        await asyncio.to_thread(process.join, 10)
        if process.is_alive():
            process.kill()
            await asyncio.to_thread(process.join, 5)
    return {
        "cpu_per_frame": pacer.cpu / pacer.count,
        "fps": pacer.count / pacer.elapsed if pacer.elapsed else float("nan"),
        "received": received,
        "size": size,
    }


def _recv_within(conn: Any, timeout: float) -> Tuple[int, Any]:
    if not conn.poll(timeout):
        raise TimeoutError(f"the receiver process did not report within {timeout:.0f} s")
    return conn.recv()


def run(quick: bool) -> List[Dict[str, Any]]:
    from rtcbot._deps import require

    require("aiortc")  # a clear MissingDependencyError (pip install aiortc) when it is not there
    seconds = 3 if quick else 10
    count = seconds * FPS
    images = _images()
    encoded = _pre_encode(images, count)
    cases = ["passthrough", "re-encode VP8", "re-encode H.264"]
    results: Dict[str, Dict[str, Any]] = {}
    for case in cases:
        results[case] = asyncio.run(_send(case, images, encoded, count))
    rows = []
    passthrough = results["passthrough"]["cpu_per_frame"] * 1000
    for case in cases[1:]:
        reencode = results[case]["cpu_per_frame"] * 1000
        rows.append(  # ms per frame is also CPU seconds per 1,000 frames
            row("h264", f"{WIDTH}x{HEIGHT}@{FPS} loopback", f"send CPU/frame, passthrough vs {case}", passthrough,
                "ms", case, reencode, "< 1 (lower)", passthrough < reencode, cpu=passthrough,
                baseline_cpu=reencode)  # fmt: skip
        )
    for case in cases:
        r = results[case]
        rows.append(
            row("h264", f"{WIDTH}x{HEIGHT}@{FPS} loopback", f"frames decoded by the receiver, {case}",
                r["received"], "frames", "frames sent", float(count), ">= sent - 2",
                r["received"] >= count - 2 and r["size"] == (WIDTH, HEIGHT), cpu=r["cpu_per_frame"] * 1000)  # fmt: skip
        )
    return rows


def main() -> None:
    import argparse

    from bench._table import format_table

    parser = argparse.ArgumentParser(prog="python -m bench.bench_h264", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 s per case instead of 10 s")
    print(format_table(run(parser.parse_args().quick)))


if __name__ == "__main__":
    main()
