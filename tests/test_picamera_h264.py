"""Encoded video: EncodedFrameQueue's GOP-safe dropping, and PiCamera2H264 against the fake picamera2, whose
encoder makes real H.264 (PyAV's libx264) that PyAV decodes back here."""
from __future__ import annotations

import asyncio
import dataclasses
import struct
import threading
from typing import List

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtcbot import DeviceClosedError, DeviceOpenError
from rtcbot.base import SubscriptionClosed
from rtcbot.devices import picamera_h264
from rtcbot.devices.encoded import EncodedFrameQueue, EncodedVideoFrame
from rtcbot.devices.picamera import PiCamera2
from rtcbot.devices.picamera_h264 import PiCamera2H264
from tests.fakes import picamera2 as fake
from tests.helpers import run

WAIT = 10.0


def frame(index: int, keyframe: bool = False) -> EncodedVideoFrame:
    return EncodedVideoFrame(b"\x00\x00\x00\x01" + bytes([index % 256]), keyframe, index / 30, 64, 48, index=index)


# ------------------------------------------------------------------------------------------ EncodedFrameQueue


def test_encoded_frames_are_immutable_and_print_without_their_payload():
    f = frame(3, keyframe=True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        f.keyframe = False  # type: ignore[misc]
    assert "#3 key" in repr(f) and "\\x00" not in repr(f) and f.codec == "h264"


def test_frames_before_the_first_keyframe_are_dropped_and_one_keyframe_is_asked_for():
    asked: List[int] = []
    q = EncodedFrameQueue(4, on_gap=lambda: asked.append(1))
    for i in range(3):
        q.put_nowait(frame(i))
    q.put_nowait(frame(3, keyframe=True))
    q.put_nowait(frame(4))
    assert [q.get_nowait().index for _ in range(q.qsize())] == [3, 4]
    assert q.dropped == 3 and asked == [1] and q.gaps == 1


def test_an_overflow_drops_up_to_the_next_keyframe_and_asks_for_it():
    asked: List[int] = []
    q = EncodedFrameQueue(3, on_gap=lambda: asked.append(1))
    q.put_nowait(frame(0, keyframe=True))
    for i in range(1, 6):  # 1, 2 fit; 3 overflows: 0..3 are dropped, 4 and 5 too (no keyframe yet)
        q.put_nowait(frame(i))
    assert q.empty() and q.waiting_for_keyframe and q.dropped == 6 and asked == [1]
    q.put_nowait(frame(6, keyframe=True))
    q.put_nowait(frame(7))
    assert [q.get_nowait().index for _ in range(2)] == [6, 7] and not q.waiting_for_keyframe


def test_an_overflowing_keyframe_is_kept_and_nothing_is_asked_for():
    asked: List[int] = []
    q = EncodedFrameQueue(2, on_gap=lambda: asked.append(1))
    for f in (frame(0, True), frame(1), frame(2, True)):
        q.put_nowait(f)
    assert [q.get_nowait().index for _ in range(q.qsize())] == [2] and q.dropped == 2
    assert asked == [1]  # the frames dropped were a gap, reported once; the keyframe is already there


def test_close_wakes_a_waiting_get():
    async def main():
        q = EncodedFrameQueue()
        getter = asyncio.ensure_future(q.get())
        await asyncio.sleep(0)
        q.close()
        with pytest.raises(SubscriptionClosed):
            await asyncio.wait_for(getter, WAIT)
        q.put_nowait(frame(0, True))  # ignored once closed
        assert q.empty()

    run(main())


@pytest.mark.parametrize("maxsize", [0, -1, 1.5, True, "8"])
def test_a_bad_maxsize_is_refused(maxsize):
    with pytest.raises(ValueError, match="maxsize"):
        EncodedFrameQueue(maxsize)


@settings(max_examples=200, deadline=None)
@given(
    maxsize=st.integers(1, 6),
    steps=st.lists(st.one_of(st.just("get"), st.booleans()), max_size=80),  # bool: put a (key)frame
)
def test_what_a_reader_gets_always_decodes(maxsize, steps):
    """Every frame given out is a keyframe or the direct successor of the frame given out before it."""
    q = EncodedFrameQueue(maxsize)
    got: List[EncodedVideoFrame] = []
    index = 0
    for step in steps:
        if step == "get":
            if not q.empty():
                got.append(q.get_nowait())
        else:
            q.put_nowait(frame(index, keyframe=step))
            index += 1
            assert q.qsize() <= maxsize
    while not q.empty():
        got.append(q.get_nowait())
    for before, after in zip([None] + got, got):
        assert after.keyframe or (before is not None and after.index == before.index + 1)
    assert len(got) + q.dropped == index


# ------------------------------------------------------------------------------------------ PiCamera2H264


@pytest.fixture
def picamera(monkeypatch):
    """The fake picamera2, whose H264Encoder needs PyAV (it comes with aiortc)."""
    pytest.importorskip("av")
    fake.system.reset(cameras=1)
    fake.install(monkeypatch)
    yield fake.system
    fake.system.reset()


def decode(frames: List[EncodedVideoFrame]) -> List[np.ndarray]:
    import av

    codec = av.CodecContext.create("h264", "r")
    images = []
    for f in frames:  # one access unit per packet, as aiortc's receiver decodes them
        images += [image.to_ndarray(format="bgr24") for image in codec.decode(av.Packet(f.data))]
    images += [image.to_ndarray(format="bgr24") for image in codec.decode(None)]
    return images


async def take(subscription, count: int) -> List[EncodedVideoFrame]:
    return [await asyncio.wait_for(subscription.get(), WAIT) for _ in range(count)]


def test_frames_are_h264_that_decodes_to_the_camera_picture(picamera):
    async def main():
        with PiCamera2(width=64, height=48, fps=30) as camera, PiCamera2H264(camera) as video:
            return await take(video.subscribe(EncodedFrameQueue(1000)), 10)

    frames = run(main())
    assert frames[0].keyframe and frames[0].data.startswith(b"\x00\x00\x00\x01")
    assert all((f.width, f.height, f.codec) == (64, 48, "h264") for f in frames)
    assert [f.index for f in frames] == list(range(10))
    assert all(b.timestamp > a.timestamp for a, b in zip(frames, frames[1:]))
    images = decode(frames)
    assert len(images) == 10 and images[0].shape == (48, 64, 3)
    top_left = images[-1][:24, :32].reshape(-1, 3).mean(axis=0)  # the fake's red quadrant, in BGR
    assert top_left[2] > 200 and top_left[0] < 60 and top_left[1] < 60


def test_every_keyframe_carries_sps_and_pps_and_comes_every_keyframe_interval(picamera):
    async def main():
        with PiCamera2(width=64, height=48, fps=60) as camera, PiCamera2H264(camera, keyframe_interval=5) as video:
            return await take(video.subscribe(EncodedFrameQueue(1000)), 11)

    frames = run(main())
    assert [f.index for f in frames if f.keyframe] == [0, 5, 10]
    for f in frames:
        nal_types = {nal[0] & 0x1F for nal in f.data.split(b"\x00\x00\x01")[1:] if nal}
        assert ({7, 8, 5} <= nal_types) == f.keyframe  # SPS, PPS, IDR slice


def test_a_keyframe_request_without_the_v4l2_control_restarts_the_encoder_and_time_goes_on(picamera, no_leaks):
    async def main():
        with PiCamera2(width=64, height=48, fps=60) as camera, PiCamera2H264(camera, keyframe_interval=600) as video:
            frames = video.subscribe(EncodedFrameQueue(1000))  # no gaps, no requests of its own
            before = await take(frames, 3)
            video.request_keyframe()
            after = []
            while not after or not after[-1].keyframe:
                after += await take(frames, 1)
            return before + after, video.restarts

    frames, restarts = run(main())
    assert restarts == 1 and picamera.encoder_starts == 2
    assert all(b.timestamp > a.timestamp for a, b in zip(frames, frames[1:]))
    assert len(decode(frames)) == len(frames)  # the stream goes on across the restart


def test_a_keyframe_request_uses_the_v4l2_force_key_frame_control_when_there_is_one(picamera, monkeypatch):
    controls = []

    def ioctl(device, request, arg):
        control_id, value = struct.unpack("Ii", bytes(arg))
        controls.append((request, control_id))
        encoder.force_key_frame()  # what the Pi's codec driver does with the control
        return 0

    monkeypatch.setattr(picamera_h264.fcntl, "ioctl", ioctl)

    async def main():
        nonlocal encoder
        with PiCamera2(width=64, height=48, fps=60) as camera, PiCamera2H264(camera, keyframe_interval=600) as video:
            frames = video.subscribe(EncodedFrameQueue(1000))
            await take(frames, 2)
            encoder = next(iter(picamera.instances[-1].encoders))
            video.request_keyframe()
            after = []
            while not after or not after[-1].keyframe:
                after += await take(frames, 1)
            return video.restarts

    encoder = None
    assert run(main()) == 0 and picamera.encoder_starts == 1
    assert controls == [(0xC008561C, 0x009909E5)]  # VIDIOC_S_CTRL, V4L2_CID_MPEG_VIDEO_FORCE_KEY_FRAME


def test_an_encoder_that_ignores_the_control_is_restarted_instead(picamera, monkeypatch):
    controlled = threading.Event()

    def ioctl(device, request, arg):  # the driver takes the control, and no keyframe comes of it
        controlled.set()
        return 0

    monkeypatch.setattr(picamera_h264.fcntl, "ioctl", ioctl)
    monkeypatch.setattr(picamera_h264, "_KEYFRAME_REQUEST_EXPIRY", 0.0)  # every request finds the last expired

    async def main():
        with PiCamera2(width=64, height=48, fps=60) as camera, PiCamera2H264(camera, keyframe_interval=600) as video:
            frames = video.subscribe(EncodedFrameQueue(1000))  # no gap of its own asks for keyframes
            await take(frames, 2)
            video.request_keyframe()
            assert await asyncio.to_thread(controlled.wait, WAIT)
            video.request_keyframe()  # the first one is still unanswered: restart
            after = []
            while not after or not after[-1].keyframe:
                after += await take(frames, 1)
            return video.restarts

    assert run(main()) == 1


def test_requests_made_while_a_keyframe_is_pending_are_merged(picamera):
    async def main():
        with PiCamera2(width=64, height=48, fps=60) as camera, PiCamera2H264(camera, keyframe_interval=600) as video:
            frames = video.subscribe(EncodedFrameQueue(1000))
            await take(frames, 2)
            for _ in range(20):
                video.request_keyframe()
            after = []
            while not after or not after[-1].keyframe:
                after += await take(frames, 1)
            return video.restarts

    assert run(main()) == 1


def test_a_reader_that_falls_behind_loses_whole_gops_and_asks_for_a_keyframe(picamera):
    async def main():
        with PiCamera2(width=64, height=48, fps=60) as camera, PiCamera2H264(camera, keyframe_interval=600) as video:
            slow = video.subscribe(EncodedFrameQueue(2, on_gap=video.request_keyframe))
            first = await asyncio.wait_for(slow.get(), WAIT)
            other = video.subscribe()
            await take(other, 6)  # meanwhile `slow` overflowed
            assert slow.waiting_for_keyframe or slow.dropped > 0
            frames = [first]
            while len(frames) < 2 or not frames[-1].keyframe:
                frames.append(await asyncio.wait_for(slow.get(), WAIT))
            return frames, slow, video.restarts

    frames, slow, restarts = run(main())
    assert slow.gaps >= 1 and restarts >= 1  # the gap asked for the keyframe that ended it
    assert frames[-1].keyframe and frames[-1].index > frames[0].index + 1


def test_the_camera_keeps_giving_bgr_frames_while_it_encodes(picamera):
    async def main():
        with PiCamera2(width=64, height=48, fps=60) as camera, PiCamera2H264(camera) as video:
            encoded = await take(video.subscribe(), 3)
            image = await asyncio.wait_for(camera.get(), WAIT)
            return encoded, image

    encoded, image = run(main())
    assert len(encoded) == 3 and image.shape == (48, 64, 3)


def test_closing_stops_the_encoder_and_leaves_the_camera_running(picamera, no_leaks):
    async def main():
        with PiCamera2(width=64, height=48, fps=60) as camera:
            with PiCamera2H264(camera) as video:
                await take(video.subscribe(), 2)
            assert not picamera.instances[-1].encoders and video.closed
            frame = await asyncio.wait_for(camera.get(), WAIT)
            return frame

    assert run(main()).shape == (48, 64, 3)


def test_closing_the_camera_stops_the_encoder_first_and_closes_the_producer(picamera, no_leaks):
    async def main():
        camera = PiCamera2(width=64, height=48, fps=60)
        video = PiCamera2H264(camera)
        await take(video.subscribe(), 2)
        camera.close()
        await asyncio.wait_for(video.onClose(), WAIT)
        video.close()

    run(main())
    assert picamera.encoders_running_at_close == 0 and picamera.instances[-1].closed_count == 1


def test_an_encoder_cannot_start_on_a_closed_camera(picamera):
    async def main():
        camera = PiCamera2(width=64, height=48)
        camera.close()
        with pytest.raises(DeviceClosedError, match="closed"):
            PiCamera2H264(camera)
        with pytest.raises(DeviceClosedError, match="closed"):
            camera.start_encoder(fake.H264Encoder(), fake.Output())

    run(main())


@pytest.mark.parametrize("kwargs", [{"bitrate": 0}, {"bitrate": 1.5e6}, {"keyframe_interval": 0}])
def test_bad_settings_are_refused_before_the_encoder_starts(picamera, kwargs):
    async def main():
        with PiCamera2(width=64, height=48) as camera:
            with pytest.raises(ValueError, match="PiCamera2H264"):
                PiCamera2H264(camera, **kwargs)
            assert not picamera.instances[-1].encoders

    run(main())


def test_an_encoder_that_does_not_start_fires_on_error_with_what_to_check(picamera, no_leaks):
    async def main():
        with PiCamera2(width=64, height=48) as camera:
            video = PiCamera2H264(camera, profile="bogus")
            error = await asyncio.wait_for(video.onError(), WAIT)
            video.close()
            frame = await asyncio.wait_for(camera.get(), WAIT)  # the camera itself goes on
            return error, frame

    error, frame = run(main())
    assert isinstance(error, DeviceOpenError) and "H264Encoder did not start" in str(error)
    assert "bogus" in str(error) and frame.shape == (48, 64, 3)


def test_the_default_subscription_is_a_bounded_queue_that_asks_this_camera_for_keyframes(picamera):
    async def main():
        with PiCamera2(width=64, height=48) as camera, PiCamera2H264(camera) as video:
            frames = video.subscribe()
            assert isinstance(frames, EncodedFrameQueue) and frames.maxsize == 8
            assert frames.on_gap == video.request_keyframe
            first = await asyncio.wait_for(video.get(), WAIT)  # get() reads a default subscription too
            return first

    assert run(main()).keyframe
