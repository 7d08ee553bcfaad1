"""EncodedVideoTrack: pre-encoded H.264 through two real aiortc peer connections on loopback, in one process;
the receiving side decodes what arrives."""
from __future__ import annotations

import asyncio
import fractions
import importlib
import sys
from typing import Any, List, Optional

import numpy as np
import pytest

from rtcbot.base import SubscriptionProducer
from rtcbot.devices.encoded import EncodedVideoFrame
from rtcbot.devices.picamera import PiCamera2
from rtcbot.devices.picamera_h264 import PiCamera2H264
from tests.fakes import picamera2 as fake
from tests.helpers import run

aiortc = pytest.importorskip("aiortc")
av = pytest.importorskip("av")
encoded_track = importlib.import_module("rtcbot.web.encoded_track")  # rtcbot/web may be a namespace package
EncodedVideoTrack = encoded_track.EncodedVideoTrack

WAIT = 15.0


class SyntheticH264(SubscriptionProducer):
    """Encodes a moving test picture with libx264 at ``fps``, numbering frames by their timestamps."""

    def __init__(self, width: int = 160, height: int = 120, fps: float = 30, gop: int = 30) -> None:
        super().__init__()
        self.width, self.height, self.fps = width, height, fps
        codec = av.CodecContext.create("libx264", "w")
        codec.width, codec.height, codec.pix_fmt = width, height, "yuv420p"
        codec.time_base = fractions.Fraction(1, 1000)
        codec.gop_size = gop
        codec.options = {"preset": "ultrafast", "tune": "zerolatency", "profile": "baseline"}
        self._codec = codec
        self._force_key = False
        self.keyframe_requests = 0
        self.sent: List[EncodedVideoFrame] = []
        self._task: Optional[asyncio.Task] = asyncio.ensure_future(self._run())

    def request_keyframe(self) -> None:
        self.keyframe_requests += 1
        self._force_key = True

    def encode(self, index: int) -> EncodedVideoFrame:
        image = np.full((self.height, self.width, 3), (index * 7) % 256, np.uint8)
        image[:, (index * 4) % self.width] = 255
        picture = av.VideoFrame.from_ndarray(image, format="bgr24").reformat(format="yuv420p")
        picture.pts = int(index * 1000 / self.fps)
        if self._force_key:
            self._force_key = False
            picture.pict_type = av.video.frame.PictureType.I
        (packet,) = self._codec.encode(picture)
        return EncodedVideoFrame(
            bytes(packet), bool(packet.is_keyframe), index / self.fps, self.width, self.height, index=index
        )

    async def _run(self) -> None:
        index = 0
        while not self._shouldClose:
            frame = self.encode(index)
            self.sent.append(frame)
            self._put_nowait(frame)
            index += 1
            await asyncio.sleep(1 / self.fps)  # pacing, like a camera

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        super().close()

    async def aclose(self) -> None:
        self.close()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)


async def connect(sender_track: Any, answer_side_adds: bool = False):
    """Two peer connections; the first sends ``sender_track``. Returns (pc1, pc2, received-track future)."""
    pc1, pc2 = aiortc.RTCPeerConnection(), aiortc.RTCPeerConnection()
    received: asyncio.Future = asyncio.get_running_loop().create_future()

    @pc2.on("track")
    def on_track(track):
        if not received.done():
            received.set_result(track)

    if answer_side_adds:  # the robot answers a browser's offer: the receiver offers recvonly
        pc2.addTransceiver("video", direction="recvonly")
        await pc2.setLocalDescription(await pc2.createOffer())
        encoded_track.add_encoded_track(pc1, sender_track)  # before the offer is applied: codecs are chosen there
        await pc1.setRemoteDescription(pc2.localDescription)
        await pc1.setLocalDescription(await pc1.createAnswer())
        await pc2.setRemoteDescription(pc1.localDescription)
    else:
        encoded_track.add_encoded_track(pc1, sender_track)
        await pc1.setLocalDescription(await pc1.createOffer())
        await pc2.setRemoteDescription(pc1.localDescription)
        await pc2.setLocalDescription(await pc2.createAnswer())
        await pc1.setRemoteDescription(pc2.localDescription)
    return pc1, pc2, received


def video_codec(description) -> str:
    lines = [line for line in description.sdp.splitlines() if line.startswith("a=rtpmap:")]
    return " ".join(lines)


@pytest.mark.parametrize("answer_side_adds", [False, True], ids=["offerer", "answerer"])
def test_pre_encoded_frames_arrive_decoded_in_order_and_all_of_them(answer_side_adds):
    async def main():
        source = SyntheticH264()
        track = EncodedVideoTrack(source, maxsize=64)  # room for a loaded machine's stalls: nothing is dropped
        pc1, pc2, received = await connect(track, answer_side_adds)
        try:
            assert "H264/90000" in video_codec(pc1.localDescription)
            assert "VP8" not in video_codec(pc1.localDescription)
            remote = await asyncio.wait_for(received, WAIT)
            frames = [await asyncio.wait_for(remote.recv(), WAIT) for _ in range(20)]
            return frames, list(source.sent), track
        finally:
            track.stop()
            await source.aclose()
            await pc1.close()
            await pc2.close()

    frames, sent, track = run(main(), timeout=60)
    assert all((f.width, f.height) == (160, 120) for f in frames)
    # The first frame sent is the first keyframe the source made after the track subscribed; from there
    # every frame arrives, once, in order: the 90 kHz timestamps step by one frame period (3000) each.
    pts = [f.pts - frames[0].pts for f in frames]
    assert pts == [3000 * i for i in range(20)]
    first = next(f for f in sent if f.keyframe)
    assert track.frames_sent >= 20 and first.keyframe


def test_the_track_asks_for_a_keyframe_when_it_joins_mid_gop():
    async def main():
        source = SyntheticH264(gop=1000)
        while len(source.sent) < 3:  # the stream is under way, its only keyframe long gone
            await asyncio.sleep(0.01)
        track = EncodedVideoTrack(source)
        pc1, pc2, received = await connect(track)
        try:
            remote = await asyncio.wait_for(received, WAIT)
            picture = await asyncio.wait_for(remote.recv(), WAIT)
            return picture, source.keyframe_requests, track
        finally:
            track.stop()
            await source.aclose()
            await pc1.close()
            await pc2.close()

    picture, requests, track = run(main(), timeout=60)
    assert picture.width == 160 and requests >= 1 and track.keyframe_requests >= 1


def test_a_pli_from_the_receiver_reaches_the_source():
    async def main():
        source = SyntheticH264(gop=1000)
        track = EncodedVideoTrack(source)
        pc1, pc2, received = await connect(track)
        try:
            remote = await asyncio.wait_for(received, WAIT)
            await asyncio.wait_for(remote.recv(), WAIT)
            before = source.keyframe_requests
            (sender,) = [t.sender for t in pc1.getTransceivers() if t.sender.track is track]
            sender._send_keyframe()  # what aiortc does on an RTCP PLI or FIR
            return before, source.keyframe_requests
        finally:
            track.stop()
            await source.aclose()
            await pc1.close()
            await pc2.close()

    before, after = run(main(), timeout=60)
    assert after == before + 1


def test_recv_ends_with_media_stream_error_when_the_source_closes():
    async def main():
        source = SyntheticH264()
        track = EncodedVideoTrack(source)
        packet = await asyncio.wait_for(track.recv(), WAIT)
        assert packet.time_base == fractions.Fraction(1, 90000) and packet.pts == 0
        pending = asyncio.ensure_future(track.recv())
        await source.aclose()
        with pytest.raises(aiortc.mediastreams.MediaStreamError):
            await asyncio.wait_for(pending, WAIT)  # a frame queued before the close may come first
        assert track.readyState == "ended"

    run(main())


def test_adding_the_track_after_a_remote_offer_is_refused_with_what_to_do():
    async def main():
        pc1, pc2 = aiortc.RTCPeerConnection(), aiortc.RTCPeerConnection()
        source = SyntheticH264()
        track = EncodedVideoTrack(source)
        try:
            pc2.addTransceiver("video", direction="recvonly")
            await pc2.setLocalDescription(await pc2.createOffer())
            await pc1.setRemoteDescription(pc2.localDescription)
            with pytest.raises(encoded_track.NegotiationOrderError, match="before setRemoteDescription"):
                encoded_track.add_encoded_track(pc1, track)
        finally:
            track.stop()
            await source.aclose()
            await pc1.close()
            await pc2.close()

    run(main())


def test_prefer_h264_refuses_a_profile_aiortc_cannot_offer():
    with pytest.raises(ValueError, match="profile-level-id"):
        encoded_track.h264_codecs("640032")


@pytest.fixture
def picamera(monkeypatch):
    fake.system.reset(cameras=1)
    fake.install(monkeypatch)
    yield fake.system
    fake.system.reset()


def test_the_fake_pi_cameras_h264_reaches_the_other_peer_decoded(picamera, no_leaks):
    async def main():
        with PiCamera2(width=320, height=240, fps=30) as camera, PiCamera2H264(camera) as video:
            track = EncodedVideoTrack(video)
            pc1, pc2, received = await connect(track)
            try:
                remote = await asyncio.wait_for(received, WAIT)
                return [await asyncio.wait_for(remote.recv(), WAIT) for _ in range(10)]
            finally:
                track.stop()
                await pc1.close()
                await pc2.close()

    frames = run(main(), timeout=60)
    assert all((f.width, f.height) == (320, 240) for f in frames)
    image = frames[-1].to_ndarray(format="bgr24")
    top_left = image[:120, :160].reshape(-1, 3).mean(axis=0)  # the fake's red quadrant
    assert top_left[2] > 200 and top_left[1] < 60


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
