"""Cameras on real hardware: a V4L2 camera (RTCBOT_CAMERA, default /dev/video0) and a CSI camera through
picamera2 (RTCBOT_CSI_CAMERA, default 0). Skipped unless asked for::

    RTCBOT_HW=1 pytest hw_tests/test_camera_hw.py
    RTCBOT_HW=1 RTCBOT_CAMERA=/dev/video2 pytest hw_tests/test_camera_hw.py -k cv
"""
from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import List

import numpy as np
import pytest

pytestmark = pytest.mark.hw

WAIT = 10.0
CAMERA = os.environ.get("RTCBOT_CAMERA", "/dev/video0")
CSI_CAMERA = int(os.environ.get("RTCBOT_CSI_CAMERA", "0"))


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def camera_threads(prefix: str) -> List[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(prefix)]


def cv_camera(**kwargs):
    pytest.importorskip("cv2")
    if CAMERA.startswith("/dev/") and not os.path.exists(CAMERA):
        pytest.skip(f"{CAMERA} does not exist (set RTCBOT_CAMERA)")
    from rtcbot.devices.camera import CVCamera

    return CVCamera(cameranumber=CAMERA, **kwargs)


def pi_camera(**kwargs):
    pytest.importorskip("picamera2")
    from rtcbot.devices.picamera import PiCamera2

    return PiCamera2(cameranumber=CSI_CAMERA, **kwargs)


@pytest.fixture(params=["cv", "pi"])
def make_camera(request):
    return cv_camera if request.param == "cv" else pi_camera


def test_frames_are_bgr_of_the_reported_size(make_camera):
    async def main():
        with make_camera(width=640, height=480) as camera:
            frame = await asyncio.wait_for(camera.get(), WAIT)
            return frame, camera.width, camera.height

    frame, width, height = run(main())
    assert frame.shape == (height, width, 3) and frame.dtype == np.uint8
    assert frame.std() > 0, "an all-flat image: is the lens covered?"


def test_timestamps_increase_and_are_recent(make_camera):
    async def main():
        with make_camera() as camera:
            frames = camera.subscribe(asyncio.Queue())
            got = [await asyncio.wait_for(frames.get(), WAIT) for _ in range(10)]
            return got, time.monotonic()

    got, now = run(main())
    stamps = [f.timestamp for f in got]
    assert stamps == sorted(stamps) and now - stamps[-1] < 1.0
    assert [f.index for f in got] == sorted(f.index for f in got)


def test_the_frame_rate_is_near_the_reported_one(make_camera):
    async def main():
        with make_camera(fps=30) as camera:
            frames = camera.subscribe(asyncio.Queue())
            got = [await asyncio.wait_for(frames.get(), WAIT) for _ in range(31)]
            return (got[-1].timestamp - got[0].timestamp), camera.fps

    span, fps = run(main())
    assert 30 / span == pytest.approx(fps, rel=0.25)


def test_a_slow_reader_gets_a_fresh_frame(make_camera):
    async def main():
        ages = []
        with make_camera(fps=30) as camera:
            for _ in range(10):
                frame = await asyncio.wait_for(camera.get(), WAIT)
                ages.append(camera.frame_count - 1 - frame.index)
                await asyncio.sleep(0.1)
        return ages

    assert max(run(main())) <= 1


def test_closing_leaves_no_thread_and_frees_the_camera(make_camera):
    async def main():
        camera = make_camera()
        await asyncio.wait_for(camera.onReady(), WAIT)
        camera.close()
        again = make_camera()  # the device must be free again
        await asyncio.wait_for(again.onReady(), WAIT)
        again.close()

    run(main())
    assert not camera_threads("rtcbot-CVCamera") and not camera_threads("rtcbot-PiCamera2")


def test_cv_camera_opened_twice_or_busy_says_what_to_check():
    """A V4L2 camera held by another capture: either it is shared (some drivers) or the error says why."""
    from rtcbot import DeviceOpenError

    async def main():
        with cv_camera() as first:
            await asyncio.wait_for(first.onReady(), WAIT)
            try:
                second = cv_camera()
            except DeviceOpenError as e:
                assert "other process" in str(e)
            else:
                second.close()

    run(main())


def test_pi_camera_flips_rotate_the_image():
    async def main():
        with pi_camera(width=320, height=240) as plain:
            a = await asyncio.wait_for(plain.get(), WAIT)
        with pi_camera(width=320, height=240, hflip=True, vflip=True) as flipped:
            b = await asyncio.wait_for(flipped.get(), WAIT)
        return a, b

    a, b = run(main())
    # The same (static) scene rotated 180 degrees: closer to the rotated original than to the original.
    rotated = a[::-1, ::-1].astype(float)
    assert np.abs(b - rotated).mean() < np.abs(b - a.astype(float)).mean()
