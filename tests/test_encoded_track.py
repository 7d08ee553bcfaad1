"""Encoded video into WebRTC: a producer of EncodedVideoFrame put into ``conn.video`` is sent as it is, through
two real aiortc peers on loopback in one process; the receiving side decodes what arrives."""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import sys
from typing import Any, List, Optional

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtcbot.base import SubscriptionProducer
from rtcbot.devices.encoded import EncodedFrameQueue, EncodedVideoFrame, h264_is_keyframe
from rtcbot.devices.picamera import PiCamera2
from rtcbot.devices.picamera_h264 import PiCamera2H264
from tests.fakes import picamera2 as fake
from tests.helpers import run

aiortc = pytest.importorskip("aiortc")
av = pytest.importorskip("av")

from rtcbot.web import RTCConnection  # noqa: E402
from rtcbot.web.media import NegotiationOrderError, codec_preferences  # noqa: E402
from rtcbot.web.tracks import FrameTrack  # noqa: E402

WAIT = 15.0


class SyntheticH264(SubscriptionProducer):
    """Encodes a moving test picture with libx264 at ``fps``, numbering frames by their timestamps."""

    codec = "h264"

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
        self.progress = asyncio.Condition()
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
            async with self.progress:
                self.progress.notify_all()
            index += 1
            await asyncio.sleep(1 / self.fps)  # pacing, like a camera

    async def wait_frames(self, count: int) -> None:
        async with self.progress:
            await asyncio.wait_for(self.progress.wait_for(lambda: len(self.sent) >= count), WAIT)

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        super().close()

    async def aclose(self) -> None:
        self.close()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)


@contextlib.asynccontextmanager
async def sending(source: Any, answer_side_adds: bool = False, queue_size: Optional[int] = None):
    """An RTCConnection sending ``source`` to a bare aiortc peer; yields (conn, pc, received-track future)."""
    conn, pc = RTCConnection(), aiortc.RTCPeerConnection()
    received: asyncio.Future = asyncio.get_running_loop().create_future()

    @pc.on("track")
    def on_track(track):
        if not received.done():
            received.set_result(track)

    try:
        if queue_size is not None:
            conn.video.encoded_queue_size = queue_size
        if answer_side_adds:  # the robot answers a browser's offer: the receiver offers recvonly
            pc.addTransceiver("video", direction="recvonly")
            await pc.setLocalDescription(await pc.createOffer())
            conn.video.putSubscription(source)  # before the offer is applied: codecs are chosen there
            offer = {"sdp": pc.localDescription.sdp, "type": pc.localDescription.type}
            answer = await conn.getLocalDescription(offer)
            await pc.setRemoteDescription(aiortc.RTCSessionDescription(**answer))
        else:
            conn.video.putSubscription(source)
            offer = await conn.getLocalDescription()
            await pc.setRemoteDescription(aiortc.RTCSessionDescription(**offer))
            await pc.setLocalDescription(await pc.createAnswer())
            await conn.setRemoteDescription({"sdp": pc.localDescription.sdp, "type": pc.localDescription.type})
        yield conn, pc, received
    finally:
        await asyncio.gather(conn.close(), pc.close())


def video_codecs(sdp: str) -> str:
    return " ".join(line for line in sdp.splitlines() if line.startswith("a=rtpmap:"))


@pytest.mark.parametrize("answer_side_adds", [False, True], ids=["offerer", "answerer"])
def test_pre_encoded_frames_arrive_decoded_in_order_and_all_of_them(answer_side_adds):
    async def main():
        source = SyntheticH264()
        try:
            # room for a loaded machine's stalls: nothing is dropped
            async with sending(source, answer_side_adds, queue_size=64) as (conn, pc, received):
                assert "H264/90000" in video_codecs(pc.remoteDescription.sdp)
                assert "VP8" not in video_codecs(pc.remoteDescription.sdp)
                remote = await asyncio.wait_for(received, WAIT)
                frames = [await asyncio.wait_for(remote.recv(), WAIT) for _ in range(20)]
                return frames, conn.video.addTrack().frames
        finally:
            await source.aclose()

    frames, sent = run(main(), timeout=60)
    assert all((f.width, f.height) == (160, 120) for f in frames)
    # From the first keyframe on every frame arrives, once, in order: the 90 kHz timestamps step by one
    # frame period (3000) each.
    pts = [f.pts - frames[0].pts for f in frames]
    assert pts == [3000 * i for i in range(20)]
    assert sent >= 20


def test_the_connection_asks_for_a_keyframe_when_it_joins_mid_gop():
    async def main():
        source = SyntheticH264(gop=1000)
        await source.wait_frames(3)  # the stream is under way, its only keyframe long gone
        try:
            async with sending(source) as (conn, pc, received):
                remote = await asyncio.wait_for(received, WAIT)
                picture = await asyncio.wait_for(remote.recv(), WAIT)
                return picture, source.keyframe_requests
        finally:
            await source.aclose()

    picture, requests = run(main(), timeout=60)
    assert picture.width == 160 and requests >= 1


def test_a_pli_from_the_receiver_reaches_the_source():
    async def main():
        source = SyntheticH264(gop=1000)
        try:
            async with sending(source) as (conn, pc, received):
                remote = await asyncio.wait_for(received, WAIT)
                await asyncio.wait_for(remote.recv(), WAIT)
                track = conn.video.addTrack()
                (sender,) = [t.sender for t in conn._pc.getTransceivers() if t.sender.track is track]
                before = source.keyframe_requests
                sender._send_keyframe()  # what aiortc does on an RTCP PLI or FIR
                return before, source.keyframe_requests
        finally:
            await source.aclose()

    before, after = run(main(), timeout=60)
    assert after == before + 1


def test_putting_the_source_again_relays_each_pli_once():
    async def main():
        source = SyntheticH264(gop=1000)
        try:
            async with sending(source) as (conn, pc, received):
                conn.video.putSubscription(source)  # the same default track, now fed anew
                track = conn.video.addTrack()
                (sender,) = [t.sender for t in conn._pc.getTransceivers() if t.sender.track is track]
                before = source.keyframe_requests
                sender._send_keyframe()
                return before, source.keyframe_requests
        finally:
            await source.aclose()

    before, after = run(main(), timeout=60)
    assert after == before + 1


def test_a_track_of_encoded_frames_ends_with_media_stream_error_when_its_queue_closes():
    async def main():
        source = SyntheticH264()
        frames = source.subscribe(EncodedFrameQueue(8, on_gap=source.request_keyframe))
        track = FrameTrack(frames.get, source.request_keyframe)
        packet = await asyncio.wait_for(track.recv(), WAIT)
        assert packet.time_base == fractions.Fraction(1, 90000) and packet.pts == 0
        pending = asyncio.ensure_future(track.recv())
        source.unsubscribe(frames)
        frames.close()
        await source.aclose()
        with pytest.raises(aiortc.mediastreams.MediaStreamError):
            await asyncio.wait_for(pending, WAIT)  # a frame queued before the close may come first

    run(main())


def test_a_gap_in_the_frames_waits_for_a_keyframe_and_asks_for_it():
    async def main():
        source = SyntheticH264(gop=1000)
        await source.aclose()  # frames made by hand below
        frames = [source.encode(i) for i in range(5)]
        queue: asyncio.Queue = asyncio.Queue()
        requests: List[int] = []
        track = FrameTrack(queue.get, lambda: requests.append(1))
        for frame in (frames[0], frames[1], frames[3]):  # frame 2 is lost
            queue.put_nowait(frame)
        source.request_keyframe()
        keyframe = source.encode(5)
        queue.put_nowait(keyframe)
        sent = [await asyncio.wait_for(track.recv(), WAIT) for _ in range(3)]
        return sent, keyframe.keyframe, len(requests)

    sent, was_keyframe, requests = run(main())
    assert was_keyframe and len(sent) == 3 and requests == 1  # frames 0, 1, then the keyframe; 3 was dropped


def test_encoded_video_after_the_remote_offer_is_refused_with_what_to_do():
    async def main():
        conn, pc = RTCConnection(), aiortc.RTCPeerConnection()
        source = SyntheticH264()
        try:
            pc.addTransceiver("video", direction="recvonly")
            await pc.setLocalDescription(await pc.createOffer())
            await conn.setRemoteDescription({"sdp": pc.localDescription.sdp, "type": pc.localDescription.type})
            with pytest.raises(NegotiationOrderError, match="before getLocalDescription"):
                conn.video.putSubscription(source)
            assert not conn.video.sending
        finally:
            await source.aclose()
            await asyncio.gather(conn.close(), pc.close())

    run(main())


def test_encoded_video_is_refused_where_raw_frames_already_chose_the_codec():
    from rtcbot.devices.sim import SimCamera

    async def main():
        source = SyntheticH264()
        try:
            with SimCamera(width=160, height=120, fps=30) as camera:
                async with sending(camera) as (conn, pc, received):
                    with pytest.raises(NegotiationOrderError, match="only be sent in its own codec"):
                        conn.video.putSubscription(source)
        finally:
            await source.aclose()

    run(main())


def test_codec_preferences_refuse_a_codec_aiortc_cannot_send():
    with pytest.raises(ValueError, match="cannot send video/AV1"):
        codec_preferences("video", "video/AV1")
    h264 = [c for c in codec_preferences("video", "video/H264") if c.mimeType == "video/H264"]
    assert h264 and all(c.parameters.get("packetization-mode") in ("1", 1) for c in h264)


def test_h264_keyframes_are_found_in_the_stream():
    async def main():
        source = SyntheticH264(gop=4)
        await source.aclose()
        return [source.encode(i) for i in range(9)]

    frames = run(main())
    assert [h264_is_keyframe(f.data) for f in frames] == [f.keyframe for f in frames]
    assert [f.keyframe for f in frames] == [True, False, False, False, True, False, False, False, True]
    assert not h264_is_keyframe(b"") and not h264_is_keyframe(b"\x00\x00\x01")


nal_unit = st.tuples(
    st.integers(0, 31),  # nal_unit_type
    st.integers(0, 3),  # nal_ref_idc
    st.binary(max_size=20).map(lambda b: b.replace(b"\x00", b"\x01")),  # no start code inside (as in real streams)
    st.sampled_from([b"\x00\x00\x01", b"\x00\x00\x00\x01"]),
)


@given(st.lists(nal_unit, max_size=8))
def test_an_access_unit_is_a_keyframe_when_one_of_its_nal_units_is_an_idr_slice(units):
    data = b"".join(start + bytes([ref << 5 | kind]) + payload for kind, ref, payload, start in units)
    assert h264_is_keyframe(data) == any(kind == 5 for kind, _, _, _ in units)


@pytest.fixture
def picamera(monkeypatch):
    fake.system.reset(cameras=1)
    fake.install(monkeypatch)
    yield fake.system
    fake.system.reset()


def test_the_fake_pi_cameras_h264_reaches_the_other_peer_decoded(picamera, no_leaks):
    async def main():
        with PiCamera2(width=320, height=240, fps=30) as camera, PiCamera2H264(camera) as video:
            async with sending(video) as (conn, pc, received):
                remote = await asyncio.wait_for(received, WAIT)
                return [await asyncio.wait_for(remote.recv(), WAIT) for _ in range(10)]

    frames = run(main(), timeout=60)
    assert all((f.width, f.height) == (320, 240) for f in frames)
    image = frames[-1].to_ndarray(format="bgr24")
    top_left = image[:120, :160].reshape(-1, 3).mean(axis=0)  # the fake's red quadrant
    assert top_left[2] > 200 and top_left[1] < 60


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
