"""PiCamera2 and discovery on a real Raspberry Pi: the behaviours the picamera2 fake models, checked against
the real picamera2/libcamera. Skipped unless asked for (``--hw`` or ``RTCBOT_HW=1``), and each test skips when
its hardware is absent::

    RTCBOT_HW=1 pytest hw_tests/test_picamera_hw.py            # one CSI camera: stall-and-recover
    RTCBOT_HW=1 pytest hw_tests/test_picamera_hw.py -k two     # Pi 5 / CM4 with two CSI cameras
    RTCBOT_HW=1 pytest hw_tests/test_picamera_hw.py -k webcam  # a USB webcam plugged in
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Dict, List

import pytest

pytestmark = pytest.mark.hw

WAIT = 15.0


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 90))


def camera_info() -> List[Dict[str, Any]]:
    picamera2 = pytest.importorskip("picamera2")
    return picamera2.Picamera2.global_camera_info()


def csi_positions() -> List[int]:
    return [n for n, info in enumerate(camera_info()) if "/usb" not in info["Id"]]


def test_two_csi_cameras_open_in_the_order_discovery_numbers_them():
    from rtcbot.devices.picamera import PiCamera2
    from rtcbot.discovery import list_csi_cameras

    positions = csi_positions()
    if len(positions) < 2:
        pytest.skip("needs two CSI cameras (Pi 5 or CM4)")
    listed = list_csi_cameras([])
    assert [c.index for c in listed] == positions
    infos = camera_info()
    for camera in listed:  # csi:N names the camera at position N of picamera2's list
        assert camera.id == f"csi:{camera.index}" and camera.name == infos[camera.index]["Model"]

    async def main():
        with PiCamera2(width=640, height=480, cameranumber=positions[0]) as a, PiCamera2(
            width=640, height=480, cameranumber=positions[1]
        ) as b:
            frames = await asyncio.gather(asyncio.wait_for(a.get(), WAIT), asyncio.wait_for(b.get(), WAIT))
            return a.describe(), b.describe(), frames

    first, second, frames = run(main())
    assert infos[positions[0]]["Model"] in first and infos[positions[1]]["Model"] in second
    assert all(f.shape == (480, 640, 3) for f in frames)


def test_frames_keep_coming_when_every_wait_times_out():
    """A frame timeout shorter than the frame period makes every frame a stall (as a covered lens at a long
    exposure does): each timed-out capture must not keep a buffer, or the camera freezes after ~6 frames."""
    from rtcbot.devices.picamera import PiCamera2

    positions = csi_positions()
    if not positions:
        pytest.skip("no CSI camera")

    class Impatient(PiCamera2):
        frame_timeout = 0.15  # the camera runs at 2 fps: two or three timeouts before every frame

    async def main():
        with Impatient(width=640, height=480, fps=2, cameranumber=positions[0], max_read_failures=20) as camera:
            frames = camera.subscribe(asyncio.Queue())
            got = [await asyncio.wait_for(frames.get(), WAIT) for _ in range(12)]  # twice the buffers
            return got, camera.error

    got, error = run(main())
    assert error is None and [f.index for f in got] == list(range(12))


def test_opening_the_same_camera_twice_is_refused_and_the_first_goes_on():
    from rtcbot import DeviceOpenError
    from rtcbot.devices.picamera import PiCamera2

    positions = csi_positions()
    if not positions:
        pytest.skip("no CSI camera")

    async def main():
        with PiCamera2(width=640, height=480, cameranumber=positions[0]) as first:
            before = (await asyncio.wait_for(first.get(), WAIT)).index
            with pytest.raises(DeviceOpenError, match="already open in this process"):
                PiCamera2(cameranumber=positions[0])
            frames = first.subscribe(asyncio.Queue())
            later = [await asyncio.wait_for(frames.get(), WAIT) for _ in range(3)]
            return before, later

    before, later = run(main())
    assert later[-1].index > before


def test_a_usb_webcam_through_libcamera_gives_bgr_frames(caplog):
    from rtcbot.devices.picamera import PiCamera2

    usb = [n for n, info in enumerate(camera_info()) if "/usb" in info["Id"]]
    if not usb:
        pytest.skip("no USB webcam seen by libcamera")
    caplog.set_level(logging.INFO, logger="rtcbot")

    async def main():
        with PiCamera2(width=640, height=480, cameranumber=usb[0]) as camera:
            return camera.describe(), camera.width, camera.height, await asyncio.wait_for(camera.get(), WAIT)

    name, width, height, frame = run(main())
    assert name.startswith("USB camera") and frame.shape == (height, width, 3) and frame.dtype.name == "uint8"
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "USB webcam" in messages  # said when it opened, with the format it really delivers
