"""Cameras on real hardware, through the rtcbot plugin's ``rtcbot_camera``: a V4L2 camera (the first one, or
``[tool.rtcbot.hw.camera]`` / ``--hw-device camera=/dev/video2``) or a CSI camera (``--hw-device
camera=csi:0``, opened with PiCamera2). Skipped unless asked for::

    pytest hw_tests/test_camera_hw.py --hw
    pytest hw_tests/test_camera_hw.py --hw --hw-device camera=csi:0
    pytest hw_tests/test_camera_hw.py --hw --hw-ask -s -k red     # the one check that needs a person

What can and cannot be checked unattended about colour: that the three channels differ (a colour image,
not grey copied thrice) and that rtcbot delivers them in the order OpenCV's own capture of the same camera
does (BGR), which catches a swap anywhere in rtcbot. That the driver's "red" is red needs something known
in front of the lens: ``--hw-ask`` prompts for a red object and checks it lands in channel 2.
"""
from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, List

import numpy as np
import pytest

pytestmark = [pytest.mark.hw, pytest.mark.hw_camera]

WAIT = 10.0


@pytest.fixture
def camera_source(rtcbot_devices) -> Any:
    """What the session's camera was opened from (a /dev path or ``csi:N``), closed so a test can open it."""
    return rtcbot_devices.release("camera")


@pytest.fixture
def size(rtcbot_devices) -> dict:
    settings = rtcbot_devices.settings("camera")
    return {"width": settings.get("width", 640), "height": settings.get("height", 480)}


def open_camera(source: Any, **kwargs: Any) -> Any:
    if isinstance(source, str) and source.startswith("csi:"):
        from rtcbot.devices.picamera import PiCamera2

        return PiCamera2(cameranumber=int(source[4:]), **kwargs)
    from rtcbot.devices.camera import CVCamera

    return CVCamera(cameranumber=source, **kwargs)


def v4l2_only(source: Any) -> None:
    if isinstance(source, str) and source.startswith("csi:"):
        pytest.skip("a CSI camera has no OpenCV capture to compare with (use --hw-ask for its colours)")


def opencv_reference(source: Any, width: int, height: int, fps: float = 30) -> tuple:
    """One frame and the reported frame rate from OpenCV's own V4L2 capture of the camera (BGR by definition)."""
    cv2 = pytest.importorskip("cv2")
    cap = cv2.VideoCapture(source, cv2.CAP_V4L2)
    try:
        assert cap.isOpened(), f"OpenCV cannot open {source}"
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        cap.set(cv2.CAP_PROP_FPS, fps)
        for _ in range(10):  # let auto exposure settle, as it has on a camera that runs
            ok, frame = cap.read()
        assert ok, f"OpenCV opened {source} but read no frame"
        return frame, float(cap.get(cv2.CAP_PROP_FPS))
    finally:
        cap.release()


def channel_means(frame: np.ndarray) -> np.ndarray:
    return np.asarray(frame, dtype=np.float64).reshape(-1, 3).mean(axis=0)


def camera_threads() -> List[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(("rtcbot-CVCamera", "rtcbot-PiCamera2"))]


# ---------------------------------------------------------------------------------------------- frames
def test_frames_are_colour_images_of_the_reported_size(rtcbot_run, rtcbot_camera):
    frame = rtcbot_run(asyncio.wait_for(rtcbot_camera.get(), WAIT))
    assert frame.shape == (rtcbot_camera.height, rtcbot_camera.width, 3) and frame.dtype == np.uint8
    assert frame.std() > 0, "an all-flat image: is the lens covered?"
    b, g, r = (np.asarray(frame[..., i]) for i in range(3))
    assert not (np.array_equal(b, g) and np.array_equal(g, r)), "three identical channels: a grey or IR camera?"


def test_channels_come_in_the_order_opencv_captures_them(rtcbot_run, camera_source, size):
    v4l2_only(camera_source)
    reference, _ = opencv_reference(camera_source, **size)
    ref = channel_means(reference)
    if abs(ref[0] - ref[2]) < 4:
        pytest.skip(f"the scene is too neutral to tell blue from red (channel means {ref.round(1)}): "
                    "point the camera at something coloured")

    async def main():
        with open_camera(camera_source, **size) as camera:
            frames = camera.subscribe(asyncio.Queue())
            return [await asyncio.wait_for(frames.get(), WAIT) for _ in range(10)][-1]

    got = channel_means(rtcbot_run(main()))
    same, swapped = np.abs(got - ref).sum(), np.abs(got - ref[::-1]).sum()
    assert same < swapped, f"rtcbot's channels {got.round(1)} look like OpenCV's {ref.round(1)} reversed (RGB?)"


def test_a_red_object_lands_in_channel_2(request, rtcbot_run, rtcbot_camera, capsys):
    if not request.config.getoption("--hw-ask"):
        pytest.skip("needs a person to hold up a red object: run with --hw-ask -s")
    with capsys.disabled():
        input("\nHold something RED filling the middle of the camera's view, then press Enter... ")
    frame = rtcbot_run(asyncio.wait_for(rtcbot_camera.get(), WAIT))
    h, w = frame.shape[:2]
    b, g, r = channel_means(frame[h // 3 : 2 * h // 3, w // 3 : 2 * w // 3])
    assert r > b + 20 and r > g + 20, f"the middle is B={b:.0f} G={g:.0f} R={r:.0f}: red is not channel 2 (BGR)"


def test_timestamps_increase_and_are_recent(rtcbot_run, rtcbot_camera, rtcbot_subscribe):
    frames = rtcbot_subscribe(rtcbot_camera)

    async def main():
        got = [await asyncio.wait_for(frames.get(), WAIT) for _ in range(10)]
        return got, time.monotonic()

    got, now = rtcbot_run(main())
    stamps = [f.timestamp for f in got]
    assert stamps == sorted(stamps) and now - stamps[-1] < 1.0
    assert [f.index for f in got] == sorted(f.index for f in got)


def test_the_frame_rate_is_the_one_the_driver_reports(rtcbot_run, camera_source, size, record_property):
    from rtcbot.testing import camera_rate
    from rtcbot.testing.figures import record

    driver_fps = None
    if not str(camera_source).startswith("csi:"):
        _, driver_fps = opencv_reference(camera_source, fps=30, **size)

    async def main():
        with open_camera(camera_source, fps=30, **size) as camera:
            return camera.fps, await camera_rate(camera, seconds=3, asked_fps=30)

    reported, result = rtcbot_run(main())
    record(record_property, "camera_rate", result.figures())
    if driver_fps is not None and driver_fps > 0:
        assert reported == pytest.approx(driver_fps), "the camera's fps is not what the driver reports"
    assert result.ok, f"{result} (a webcam in dim light lowers its rate: light the scene)"


def test_a_slow_reader_gets_a_fresh_frame(rtcbot_run, rtcbot_camera):
    async def main():
        ages = []
        for _ in range(10):
            frame = await asyncio.wait_for(rtcbot_camera.get(), WAIT)
            ages.append(rtcbot_camera.frame_count - 1 - frame.index)
            await asyncio.sleep(0.1)  # the slow reader (what is tested, not a synchronisation)
        return ages

    assert max(rtcbot_run(main())) <= 1


# ---------------------------------------------------------------------------------------------- lifetime
def test_closing_leaves_no_thread_and_frees_the_camera(rtcbot_run, camera_source):
    async def main():
        camera = open_camera(camera_source)
        await asyncio.wait_for(camera.onReady(), WAIT)
        camera.close()
        again = open_camera(camera_source)  # the device must be free again
        await asyncio.wait_for(again.onReady(), WAIT)
        again.close()

    rtcbot_run(main())
    assert not camera_threads()


def test_a_second_open_shares_the_camera_or_says_why_it_cannot_but_never_hangs(rtcbot_run, camera_source,
                                                                                record_property):
    """V4L2 lets only one process stream a camera; whichever way a driver goes, the second CVCamera must
    deliver frames or report an error that names the other process as the thing to check, within a few
    seconds: silently waiting for ever, or an error that gives no advice, is the failure. Which way this
    driver went is recorded (rtcbot.camera_second_open)."""
    v4l2_only(camera_source)
    from rtcbot import DeviceOpenError

    async def main():
        with open_camera(camera_source) as first:
            await asyncio.wait_for(first.onReady(), WAIT)
            try:
                second = open_camera(camera_source)
            except DeviceOpenError as e:
                assert "other process" in str(e)
                return "refused at open"
            with second:
                # onReady ends at the first frame, or when the camera fails: a timeout here is the hang.
                await asyncio.wait_for(second.onReady(), WAIT)
                if second.error is None:
                    return "shared"
                assert "process" in str(second.error), f"the error does not say what to check: {second.error}"
                return "refused when streaming"

    record_property("rtcbot.camera_second_open", rtcbot_run(main()))


def test_pi_camera_flips_rotate_the_image(rtcbot_run, camera_source):
    if not str(camera_source).startswith("csi:"):
        pytest.skip("flips are a PiCamera2 option: needs a CSI camera (--hw-device camera=csi:0)")

    async def main():
        with open_camera(camera_source, width=320, height=240) as plain:
            a = await asyncio.wait_for(plain.get(), WAIT)
        with open_camera(camera_source, width=320, height=240, hflip=True, vflip=True) as flipped:
            b = await asyncio.wait_for(flipped.get(), WAIT)
        return a, b

    a, b = rtcbot_run(main())
    # The same (static) scene rotated 180 degrees: closer to the rotated original than to the original.
    rotated = a[::-1, ::-1].astype(float)
    assert np.abs(b - rotated).mean() < np.abs(b - a.astype(float)).mean()
