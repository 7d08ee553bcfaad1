"""PiCamera2 against a fake picamera2 module (tests/fakes/picamera2.py): no Raspberry Pi needed."""
from __future__ import annotations

import asyncio
import sys
import threading
import time
from typing import List

import numpy as np
import pytest

from rtcbot import DeviceLostError, DeviceOpenError, MissingDependencyError
from rtcbot.devices.camera import Frame
from rtcbot.devices.picamera import PiCamera2
from tests.fakes import picamera2 as fake
from tests.helpers import run

WAIT = 10.0


@pytest.fixture
def picamera(monkeypatch):
    """The fake picamera2 and libcamera modules, with one healthy camera; yields the fake's hardware."""
    fake.system.reset(cameras=1)
    monkeypatch.setitem(sys.modules, "picamera2", fake)
    monkeypatch.setitem(sys.modules, "libcamera", fake.libcamera)
    yield fake.system
    fake.system.reset()


def quadrant_means(frame: np.ndarray):
    """Mean BGR of each quadrant, in the order top-left, top-right, bottom-left, bottom-right."""
    h, w = frame.shape[0] // 2, frame.shape[1] // 2
    quads = (frame[:h, :w], frame[:h, w:], frame[h:, :w], frame[h:, w:])
    return [tuple(int(v) for v in q.reshape(-1, 3).mean(axis=0)) for q in quads]


BGR_RED, BGR_GREEN, BGR_BLUE, BGR_WHITE = (0, 0, 255), (0, 255, 0), (255, 0, 0), (255, 255, 255)


async def first_frame(**kwargs) -> Frame:
    with PiCamera2(**kwargs) as camera:
        return await asyncio.wait_for(camera.get(), WAIT)


def test_frames_are_bgr_arrays_of_the_asked_size(picamera):
    frame = run(first_frame(width=64, height=48))
    assert isinstance(frame, Frame) and frame.shape == (48, 64, 3) and frame.dtype == np.uint8
    assert quadrant_means(frame) == [BGR_RED, BGR_GREEN, BGR_BLUE, BGR_WHITE]


def test_the_camera_is_asked_for_rgb888_which_is_bgr_in_memory(picamera):
    async def main():
        with PiCamera2(width=64, height=48, fps=50):
            return picamera.instances[-1].camera_config

    config = run(main())
    assert config["main"]["format"] == "RGB888" and config["main"]["size"] == (64, 48)
    assert config["controls"]["FrameDurationLimits"] == (20000, 20000)


@pytest.mark.parametrize(
    "flips, expected",
    [
        ({"hflip": True}, [BGR_GREEN, BGR_RED, BGR_WHITE, BGR_BLUE]),
        ({"vflip": True}, [BGR_BLUE, BGR_WHITE, BGR_RED, BGR_GREEN]),
        ({"hflip": True, "vflip": True}, [BGR_WHITE, BGR_BLUE, BGR_GREEN, BGR_RED]),
    ],
)
def test_flips_mirror_the_image(picamera, flips, expected):
    assert quadrant_means(run(first_frame(width=64, height=48, **flips))) == expected


def test_timestamps_come_from_the_sensor_metadata(picamera):
    async def main():
        frames = []
        with PiCamera2(width=32, height=24, fps=100) as camera:
            queue = camera.subscribe(asyncio.Queue())
            for _ in range(4):
                frames.append(await asyncio.wait_for(queue.get(), WAIT))
        return frames

    frames = run(main())
    assert [f.index for f in frames] == [0, 1, 2, 3]
    gaps = np.diff([f.timestamp for f in frames])
    # The fake stamps each frame at its scheduled sensor time: exactly one 10 ms frame apart.
    assert gaps == pytest.approx([0.01] * 3, abs=1e-6)
    assert abs(frames[-1].timestamp - time.monotonic()) < 1.0


def test_without_a_sensor_timestamp_the_arrival_time_is_used(picamera):
    picamera.sensor_timestamps = False
    before = time.monotonic()
    frame = run(first_frame(width=32, height=24))
    assert before <= frame.timestamp <= time.monotonic()


def test_ready_fires_with_the_first_frame(picamera):
    async def main():
        camera = PiCamera2(width=32, height=24, fps=20)
        assert not camera.ready
        await asyncio.wait_for(camera.onReady(), WAIT)
        count = camera.frame_count
        camera.close()
        return count

    assert run(main()) >= 1


def test_preprocessframe_output_is_delivered(picamera):
    frame = run(first_frame(width=64, height=48, preprocessframe=lambda f: np.ascontiguousarray(f[:24, :32])))
    assert frame.shape == (24, 32, 3) and frame.index == 0
    assert quadrant_means(frame) == [BGR_RED] * 4


def test_fps_reports_what_the_sensor_delivers_and_warns(picamera, caplog):
    picamera.max_fps = 60

    async def main():
        with PiCamera2(width=32, height=24, fps=90) as camera:
            await asyncio.wait_for(camera.get(), WAIT)
            return camera.fps

    assert run(main()) == pytest.approx(60, rel=0.01)
    assert any("90 fps was asked" in r.getMessage() for r in caplog.records)


def test_a_smaller_size_than_asked_is_reported_and_warned(picamera, caplog):
    picamera.max_size = (640, 480)

    async def main():
        with PiCamera2(width=1920, height=1080) as camera:
            return camera.width, camera.height

    assert run(main()) == (640, 480)
    assert any("1920x1080 was asked" in r.getMessage() for r in caplog.records)


def test_closing_stops_the_thread_and_releases_the_camera(picamera, no_leaks):
    async def main():
        camera = PiCamera2(width=32, height=24, fps=100)
        await asyncio.wait_for(camera.onReady(), WAIT)
        camera.close()
        camera.close()
        return camera

    camera = run(main())
    device = picamera.instances[-1]
    assert camera.closed and camera.error is None
    assert not device.is_open and device.closed_count == 1 and device.outstanding == 0
    assert not picamera.acquired
    assert not [t for t in threading.enumerate() if t.name.startswith("rtcbot-PiCamera2")]


def test_a_camera_that_fails_to_start_raises_device_open_error_and_is_released(picamera):
    picamera.fail_start = RuntimeError("Failed to start camera: Device or resource busy")

    async def main():
        with pytest.raises(DeviceOpenError, match="could not start CSI camera 0 .imx708.") as info:
            PiCamera2()
        return info.value

    err = run(main())
    assert "Device or resource busy" in str(err) and isinstance(err.__cause__, RuntimeError)
    assert not picamera.acquired and picamera.instances[-1].closed_count == 1


def test_a_missing_camera_number_lists_the_cameras_there_are(picamera):
    picamera.reset(cameras=2)

    async def main():
        with pytest.raises(DeviceOpenError, match=r"no camera 2: picamera2 lists 0: imx708, 1: imx708"):
            PiCamera2(cameranumber=2)

    run(main())


def test_no_camera_at_all_says_what_to_check(picamera):
    picamera.reset(cameras=0)

    async def main():
        with pytest.raises(DeviceOpenError, match="found no CSI camera") as info:
            PiCamera2()
        return str(info.value)

    message = run(main())
    assert "ribbon cable" in message and "rpicam-hello --list-cameras" in message


def test_a_camera_held_by_another_user_says_so(picamera):
    async def main():
        with PiCamera2(width=32, height=24):
            with pytest.raises(DeviceOpenError, match="no other process uses it"):
                PiCamera2(width=32, height=24)

    run(main())


def test_a_camera_that_stops_sending_frames_fires_device_lost(picamera, monkeypatch, no_leaks):
    picamera.frames_before_hang = 2
    monkeypatch.setattr(PiCamera2, "frame_timeout", 0.05)

    async def main():
        camera = PiCamera2(width=32, height=24, fps=100, max_read_failures=2)
        err = await asyncio.wait_for(camera.onError(), WAIT)
        await asyncio.wait_for(camera.onClose(), WAIT)
        return camera, err

    camera, err = run(main())
    assert isinstance(err, DeviceLostError) and "CSI camera 0" in str(err)
    assert camera.frame_count == 2 and not picamera.acquired


def test_without_picamera2_installed_the_error_says_to_use_apt(monkeypatch):
    monkeypatch.setitem(sys.modules, "picamera2", None)  # import fails, as on a PC

    async def main():
        with pytest.raises(MissingDependencyError, match="python3-picamera2"):
            PiCamera2()

    run(main())


def test_fake_capture_array_follows_the_format_byte_order(picamera):
    """The fake itself: "RGB888" is B, G, R in memory and "BGR888" is R, G, B, as in picamera2."""
    camera = fake.Picamera2(0)
    try:
        means: List[tuple] = []
        for fmt in ("RGB888", "BGR888"):
            camera.configure(camera.create_video_configuration(main={"size": (8, 8), "format": fmt}))
            camera.start()
            means.append(tuple(camera.capture_array("main", wait=WAIT)[0, 0]))
            camera.stop()
    finally:
        camera.close()
    assert means == [(0, 0, 255), (255, 0, 0)]  # top-left is red
