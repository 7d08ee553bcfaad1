"""PiCamera2 against a fake picamera2 module (tests/fakes/picamera2.py): no Raspberry Pi needed."""
from __future__ import annotations

import asyncio
import concurrent.futures
import importlib.util
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
    # The fake stamps each frame at its scheduled sensor time: a whole number of 10 ms frames apart (a frame
    # the capture thread was too late for is dropped, as on the real camera).
    assert all(g > 0.005 and abs(g / 0.01 - round(g / 0.01)) < 1e-3 for g in gaps), gaps
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
        with pytest.raises(DeviceOpenError, match="found no camera") as info:
            PiCamera2()
        return str(info.value)

    message = run(main())
    assert "ribbon cable" in message and "rpicam-hello --list-cameras" in message
    assert "USB webcam" in message and "CVCamera" in message


def test_a_camera_held_by_another_process_says_so(picamera):
    picamera.acquired.add(0)  # what libcamera reports when another process has acquired the camera

    async def main():
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


# ------------------------------------------------------------------------ what only shows on a real Pi (#19)


async def frames_after(camera: PiCamera2, count: int) -> List[Frame]:
    queue = camera.subscribe(asyncio.Queue())
    try:
        return [await asyncio.wait_for(queue.get(), WAIT) for _ in range(count)]
    finally:
        camera.unsubscribe(queue)


def stall_and_resume(picamera, camera_timeouts: int) -> None:
    """Stops the frames until the camera has timed out ``camera_timeouts`` times, then lets them come again."""
    start = picamera.timeouts
    picamera.stall()
    assert picamera.wait_for(lambda: picamera.timeouts - start >= camera_timeouts, WAIT)
    picamera.resume()


def test_frames_come_back_after_stalls_longer_than_the_frame_timeout(picamera, monkeypatch, no_leaks):
    """Each timed-out capture used to leave a job in picamera2 that took the next frame's buffer for good:
    after as many stalls as buffers (6), no frame ever came again."""
    monkeypatch.setattr(PiCamera2, "frame_timeout", 0.05)

    async def main():
        with PiCamera2(width=32, height=24, fps=100, max_read_failures=100) as camera:
            await asyncio.wait_for(camera.onReady(), WAIT)
            for _ in range(4):
                await asyncio.to_thread(stall_and_resume, picamera, 3)
                await frames_after(camera, 3)
            frames = await frames_after(camera, 10)
            return camera, frames, picamera.instances[-1].outstanding

    camera, frames, in_use = run(main())
    assert camera.error is None and len(frames) == 10
    assert in_use <= 2  # the newest frame picamera2 keeps, and at most one being copied


def test_a_timeout_of_python_3_10_is_a_stall_not_a_lost_camera(picamera, monkeypatch):
    """Before Python 3.11, concurrent.futures.TimeoutError is not the builtin TimeoutError."""
    old_timeout = picamera.use_python310_timeouts()
    monkeypatch.setattr(concurrent.futures, "TimeoutError", old_timeout)
    monkeypatch.setattr(PiCamera2, "frame_timeout", 0.05)

    async def main():
        with PiCamera2(width=32, height=24, fps=100, max_read_failures=100) as camera:
            await asyncio.wait_for(camera.onReady(), WAIT)
            await asyncio.to_thread(stall_and_resume, picamera, 2)
            await frames_after(camera, 3)
            return camera.error

    assert run(main()) is None


def test_close_during_a_stall_does_not_wait_for_the_frame_timeout(picamera, monkeypatch, no_leaks):
    monkeypatch.setattr(PiCamera2, "frame_timeout", 30.0)

    async def main():
        camera = PiCamera2(width=32, height=24, fps=100)
        await asyncio.wait_for(camera.onReady(), WAIT)
        picamera.stall()
        await asyncio.to_thread(picamera.wait_for, lambda: picamera.instances[-1]._job_list != [], WAIT)
        started = time.monotonic()
        camera.close()
        return time.monotonic() - started, camera

    took, camera = run(main())
    assert took < camera.joinTimeout and camera.error is None and not picamera.acquired


def test_opening_an_open_camera_again_is_refused_and_the_first_keeps_its_frames(picamera):
    async def main():
        with PiCamera2(width=32, height=24, fps=100) as first:
            await asyncio.wait_for(first.onReady(), WAIT)
            with pytest.raises(DeviceOpenError, match="already open in this process") as info:
                PiCamera2(width=32, height=24)
            before = first.frame_count
            frames = await frames_after(first, 3)
            return str(info.value), before, frames

    message, before, frames = run(main())
    assert "CSI camera 0 (imx708)" in message and "subscribe" in message
    assert frames[-1].index >= before + 2
    assert len(picamera.instances) == 1  # picamera2 never saw the second open


def test_a_closed_camera_can_be_opened_again_in_the_same_process(picamera):
    async def main():
        for _ in range(2):
            with PiCamera2(width=32, height=24, fps=100) as camera:
                await asyncio.wait_for(camera.get(), WAIT)

    run(main())


def test_two_cameras_open_by_their_position_in_picamera2s_list(picamera):
    # libcamera numbers the imx477 0, but picamera2 lists cameras by descending id: the imx708 first.
    picamera.reset(cameras=[fake.csi_camera("imx477", bus=0x80000), fake.csi_camera("imx708", bus=0x88000)])

    async def main():
        with PiCamera2(width=32, height=24, cameranumber=0) as a, PiCamera2(width=32, height=24, cameranumber=1) as b:
            return a.describe(), b.describe(), [d.camera_idx for d in picamera.instances]

    first, second, libcamera_numbers = run(main())
    assert (first, second) == ("CSI camera 0 (imx708)", "CSI camera 1 (imx477)")
    assert libcamera_numbers == [1, 0]


@pytest.mark.parametrize("fmt", ["YUYV", "MJPEG"])
def test_a_usb_webcam_through_libcamera_gives_bgr_frames_and_says_so(picamera, caplog, fmt):
    if fmt == "MJPEG" and importlib.util.find_spec("PIL") is None:
        pytest.importorskip("cv2")  # the fake encodes the webcam's JPEG with PIL or OpenCV
    picamera.reset(cameras=[fake.usb_camera(fmt=fmt)])

    async def main():
        with PiCamera2(width=64, height=48) as camera:
            return camera.describe(), await asyncio.wait_for(camera.get(), WAIT)

    name, frame = run(main())
    assert name == "USB camera 0 (HD Webcam C270)"
    assert frame.shape == (48, 64, 3)
    expected = [BGR_RED, BGR_GREEN, BGR_BLUE, BGR_WHITE]
    for got, want in zip(quadrant_means(frame), expected):
        assert all(abs(g - w) <= 12 for g, w in zip(got, want)), (got, want)
    assert any(f"delivers {fmt} instead of RGB888" in r.getMessage() for r in caplog.records)


def test_a_usb_webcam_that_fails_is_not_given_csi_cable_advice(picamera):
    picamera.reset(cameras=[fake.usb_camera()])
    picamera.fail_start = RuntimeError("Failed to start camera")
    picamera.acquired.add(0)

    async def main():
        with pytest.raises(DeviceOpenError) as info:
            PiCamera2()
        return str(info.value)

    message = run(main())
    assert "USB camera 0" in message and "ribbon cable" not in message and "lsusb" in message


def test_a_flip_the_sensor_refuses_is_done_in_software_and_warned(picamera, caplog):
    picamera.reset(cameras=[fake.csi_camera("ov5647", flips=False)])
    frame = run(first_frame(width=64, height=48, hflip=True))
    assert quadrant_means(frame) == [BGR_GREEN, BGR_RED, BGR_WHITE, BGR_BLUE]
    assert any("cannot flip the image itself" in r.getMessage() for r in caplog.records)


NUMPY_MISMATCH = (
    "numpy.dtype size changed, may indicate binary incompatibility. Expected 96 from C header, got 88 from PyObject"
)


@pytest.fixture
def picamera2_with_numpy_mismatch(monkeypatch, tmp_path):
    """A picamera2 whose import fails as apt's simplejpeg does under pip's numpy 2."""
    package = tmp_path / "picamera2"
    package.mkdir()
    (package / "__init__.py").write_text(f"raise ValueError({NUMPY_MISMATCH!r})\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "picamera2", raising=False)
    monkeypatch.setitem(sys.modules, "libcamera", fake.libcamera)


def test_a_numpy_mismatch_importing_picamera2_says_what_to_do(picamera2_with_numpy_mismatch):
    async def main():
        with pytest.raises(MissingDependencyError, match="pip uninstall numpy") as info:
            PiCamera2()
        return info.value

    err = run(main())
    assert "numpy.dtype size changed" in str(err) and isinstance(err.__cause__, ValueError)


def test_yuyv_converts_to_bgr_without_opencv_too(monkeypatch):
    from rtcbot.devices.picamera import _yuyv_to_bgr

    yuyv = fake._rgb_to_yuyv(fake.quadrant_scene(64, 48, 0))
    monkeypatch.setitem(sys.modules, "cv2", None)
    for got, want in zip(quadrant_means(_yuyv_to_bgr(yuyv)), [BGR_RED, BGR_GREEN, BGR_BLUE, BGR_WHITE]):
        assert all(abs(g - w) <= 3 for g, w in zip(got, want)), (got, want)
