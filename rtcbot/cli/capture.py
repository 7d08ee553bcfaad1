"""``rtcbot snapshot`` and ``rtcbot record``: a camera frame to an image, video or sound to a file.

::

    rtcbot snapshot front.png --device /dev/video0 --skip 10   # after 10 frames, once exposure settled
    rtcbot record clip.avi --seconds 5 --sim
    rtcbot record hello.wav --seconds 3 --device USB

The output path is checked (extension, folder) before a device opens.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import wave
from typing import Any, AsyncIterator, List, Optional, TextIO

import numpy as np

from .. import discovery
from .._deps import require
from ..discovery import AudioDevice, Camera
from ..subscriptions import BoundedQueue
from .check import open_camera, open_microphone, open_sim_microphone
from .options import UsageError, check_output_folder, check_output_path, non_negative_int, positive_float
from .probes import OPEN_TIMEOUT, as_float_audio

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_CODECS = {".avi": "MJPG", ".mp4": "mp4v", ".mkv": "MJPG"}


def add_snapshot_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="the image to write: .png, .jpg, ...")
    parser.add_argument("--device", help="camera id from `rtcbot devices` (/dev/video0, csi:0), a video file, or 'sim'")
    parser.add_argument("--sim", action="store_true", help="use the simulated camera")
    parser.add_argument(
        "--skip", type=non_negative_int, default=10, help="frames to skip while exposure settles (default 10)"
    )


def add_record_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="the file to write: .avi, .mp4, .mkv (video) or .wav (sound)")
    parser.add_argument("--seconds", type=positive_float, required=True, help="how long to record")
    parser.add_argument("--device", help="camera or audio id from `rtcbot devices`, or 'sim'")
    parser.add_argument("--sim", action="store_true", help="use the simulated camera or microphone")


# ---------------------------------------------------------------------------------------------------------
# Which device


def pick_camera(args: argparse.Namespace) -> Optional[Camera]:
    """The camera --device names (None means the simulated one); the first camera found by default."""
    if args.sim or args.device == "sim":
        return None
    cameras = discovery.discover().cameras
    if args.device is None:
        usable = [c for c in cameras if c.capture is not False]
        if not usable:
            raise UsageError("no camera found (see `rtcbot devices`); use --sim for the simulated camera")
        return usable[0]
    for c in cameras:
        if args.device in (c.id, c.stable_path, str(c.index)):
            return c
    if os.path.isfile(args.device):  # a video file: CVCamera plays it like a camera
        return Camera(id=args.device, kind="file", name=args.device, index=-1)
    if args.device.startswith("/dev/video") and args.device[10:].isdigit():
        return Camera(id=args.device, kind="v4l2", name=args.device, index=int(args.device[10:]))
    raise UsageError(f"no camera {args.device!r} (see `rtcbot devices`)")


def pick_microphone(args: argparse.Namespace) -> Optional[AudioDevice]:
    """The microphone --device names (None means the simulated one); the default input otherwise."""
    if args.sim or args.device == "sim":
        return None
    inputs = [a for a in discovery.discover().audio if a.inputs > 0]
    if args.device is None:
        default = [a for a in inputs if a.default_input] or [a for a in inputs if a.hardware]
        if not default:
            raise UsageError("no microphone found (see `rtcbot devices`); use --sim for the simulated one")
        return default[0]
    for a in inputs:
        if args.device in (a.id, str(a.index)) or args.device.lower() in a.name.lower():
            return a
    raise UsageError(f"no microphone {args.device!r} (see `rtcbot devices`)")


# ---------------------------------------------------------------------------------------------------------
# Reading


async def _next(sub: Any, device: Any, what: str) -> Any:
    """The next item of ``sub``; the device's own error, or TimeoutError, if none comes in time."""
    try:
        return await asyncio.wait_for(sub.get(), timeout=OPEN_TIMEOUT)
    except asyncio.TimeoutError:
        if device.error is not None:
            raise device.error from None
        raise TimeoutError(f"the {what} gave nothing in {OPEN_TIMEOUT:g} s") from None


async def frames_for(camera: Any, seconds: float) -> AsyncIterator[Any]:
    """Frames from ``camera`` until ``seconds`` have passed since the first one."""
    sub = camera.subscribe(BoundedQueue(64))
    start = None
    while start is None or time.monotonic() - start < seconds:
        frame = await _next(sub, camera, "camera")
        start = time.monotonic() if start is None else start
        yield frame


async def nth_frame(camera: Any, skip: int) -> Any:
    """The frame after the first ``skip`` frames (real cameras adjust exposure over their first frames)."""
    sub = camera.subscribe(BoundedQueue(64))
    for _ in range(skip):
        await _next(sub, camera, "camera")
    return await _next(sub, camera, "camera")


# ---------------------------------------------------------------------------------------------------------
# snapshot


async def _snapshot(args: argparse.Namespace, out: TextIO) -> int:
    cv2 = require("cv2")
    camera = open_camera(pick_camera(args))
    try:
        frame = await nth_frame(camera, args.skip)
    finally:
        camera.close()
    image = np.asarray(frame)
    if not cv2.imwrite(args.file, image):
        raise UsageError(f"OpenCV could not write {args.file!r}: check the disk has space")
    h, w = image.shape[:2]
    index = getattr(frame, "index", None)
    which = f" (frame {index}, after skipping {args.skip})" if index is not None else ""
    print(f"saved {w}x{h} frame{which} to {args.file}", file=out)
    return 0


def run_snapshot(args: argparse.Namespace, out: TextIO) -> int:
    check_output_path(args.file, IMAGE_EXTENSIONS, "a frame")
    cv2 = require("cv2")
    if not cv2.haveImageWriter(args.file):
        raise UsageError(f"this OpenCV cannot write {args.file!r}: use a .png or .jpg name")
    return asyncio.run(_snapshot(args, out))


# ---------------------------------------------------------------------------------------------------------
# record


async def _record_video(args: argparse.Namespace, fourcc: str, out: TextIO) -> int:
    cv2 = require("cv2")
    camera = open_camera(pick_camera(args))
    writer = None
    buffered: List[np.ndarray] = []
    count, t0 = 0, None
    try:
        async for frame in frames_for(camera, args.seconds):
            frame = np.asarray(frame)
            now = time.monotonic()
            t0 = now if t0 is None else t0
            count += 1
            if writer is not None:
                writer.write(frame)
                continue
            # Measure the real frame rate over the first second so the file plays at the right speed.
            buffered.append(frame)
            if now - t0 < 1.0 and now - t0 < args.seconds:
                continue
            fps = max(1.0, (len(buffered) - 1) / (now - t0)) if now > t0 else 30.0
            h, w = frame.shape[:2]
            writer = cv2.VideoWriter(args.file, cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
            if not writer.isOpened():
                raise UsageError(f"OpenCV cannot write {args.file!r} with codec {fourcc}: try a .avi name")
            for f in buffered:
                writer.write(f)
            buffered = []
    finally:
        camera.close()
        if writer is not None:
            writer.release()
    if writer is None:
        raise UsageError("too few frames to write a video: record longer")
    print(f"saved {count} frames to {args.file}", file=out)
    return 0


async def _record_wav(args: argparse.Namespace, out: TextIO) -> int:
    device = pick_microphone(args)
    mic = open_sim_microphone() if device is None else open_microphone(device.index)
    try:
        samplerate, channels = int(mic.samplerate), int(mic.channels)
        wanted = int(args.seconds * samplerate)
        written = 0
        sub = mic.subscribe(BoundedQueue(256))
        with open(args.file, "wb") as f, wave.open(f, "wb") as w:
            w.setnchannels(channels)
            w.setsampwidth(2)
            w.setframerate(samplerate)
            while written < wanted:
                block = await _next(sub, mic, "microphone")
                samples = as_float_audio(np.asarray(block)).reshape(-1, channels)[: wanted - written]
                w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
                written += len(samples)
    finally:
        mic.close()
    print(f"saved {written / samplerate:g} s of sound ({samplerate} Hz, {channels} ch) to {args.file}", file=out)
    return 0


def run_record(args: argparse.Namespace, out: TextIO) -> int:
    extension = check_output_path(args.file, (*VIDEO_CODECS, ".wav"), "a recording")
    check_output_folder(args.file)
    if extension == ".wav":
        return asyncio.run(_record_wav(args, out))
    return asyncio.run(_record_video(args, VIDEO_CODECS[extension], out))
