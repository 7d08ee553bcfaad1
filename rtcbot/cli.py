"""The ``rtcbot`` command: is my camera / microphone / Arduino seen, and does it work?

::

    rtcbot devices [--json]                        list cameras, audio devices and serial ports
    rtcbot check [--sim] [--seconds N] [names...]  open each device for N seconds and report how it did
    rtcbot snapshot FILE [--device D] [--sim]      save one camera frame as PNG/JPEG
    rtcbot record FILE --seconds N [--sim]         record video (.avi/.mp4) or sound (.wav)
    rtcbot sim-serial                              serve a simulated Arduino on a pty

Also ``python -m rtcbot``. In Python: ``from rtcbot.cli import main; main(["check", "--sim"])``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import importlib.util
import json
import logging
import math
import os
import re
import sys
import textwrap
import time
import wave
from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Sequence, TextIO

import numpy as np

from . import __version__
from .discovery import AudioDevice, Camera, Inventory, SerialPort, discover
from .errors import RtcbotError
from .subscriptions import BoundedQueue

logger = logging.getLogger("rtcbot.cli")

__all__ = ["main"]

SIM_CAMERA, SIM_MIC, SIM_SERIAL = "sim-camera", "sim-mic", "sim-serial"
_OPEN_TIMEOUT = 5.0  # seconds a device gets to deliver its first item before the check calls it failed


# ---------------------------------------------------------------------------------------------------------
# Opening devices through rtcbot's own classes. Each opener runs inside the event loop.


def _open_camera(camera: Optional[Camera]) -> Any:
    """The rtcbot producer for a discovered camera, or the simulated camera for None."""
    if camera is None:
        from .devices.sim import SimCamera

        return SimCamera()
    if camera.kind == "csi":
        from .devices.picamera import PiCamera2

        return PiCamera2(cameranumber=camera.index)
    from .devices.camera import CVCamera

    return CVCamera(cameranumber=camera.id)


def _open_microphone(index: Optional[int]) -> Any:
    """A Microphone on the PortAudio device ``index`` (None: the default input)."""
    from .devices.audio import Microphone

    return Microphone(device=index)


def _open_sim_microphone() -> Any:
    from .devices.sim import SimMicrophone

    return SimMicrophone()


def _open_speaker(index: Optional[int]) -> Any:
    """A Speaker on the PortAudio device ``index`` (None: the default output)."""
    from .devices.audio import Speaker

    return Speaker(device=index)


def _open_serial(port: str, **options: Any) -> Any:
    """A SerialConnection on ``port``; without options it reads raw bytes (whatever the device speaks)."""
    from .devices.serial import SerialConnection

    return SerialConnection(port, **(options or {"readFormat": None}))


# ---------------------------------------------------------------------------------------------------------
# Output: one line per device, updated in place on a terminal.


class _Progress:
    """Prints a device's status line: rewritten in place on a TTY, plain start and result lines otherwise."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()

    def start(self, label: str, seconds: float) -> None:
        if not self.tty:
            print(f"  ..    {label}  checking for {seconds:g} s", file=self.out, flush=True)

    def update(self, label: str, text: str) -> None:
        if self.tty:
            self.out.write(f"\r\x1b[K  ..    {label}  {text}")
            self.out.flush()

    def done(self, label: str, ok: bool, text: str) -> None:
        if self.tty:
            self.out.write("\r\x1b[K")
        if ok:
            print(f"  ok    {label}  {text}", file=self.out, flush=True)
            return
        # A failure's message (the library's error, with what to check) goes below, wrapped to be read.
        wrapped = textwrap.fill(
            text,
            width=100,
            initial_indent=" " * 8,
            subsequent_indent=" " * 10,
            break_long_words=False,
            break_on_hyphens=False,
        )
        print(f"  FAIL  {label}\n{wrapped}", file=self.out, flush=True)


@dataclass
class _Result:
    label: str
    ok: bool
    summary: str


def _error_text(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"


def _dbfs(sum_squares: float, count: float) -> float:
    """RMS level in dB relative to full scale (a full-scale sine is -3 dBFS); -inf for silence."""
    if count == 0 or sum_squares <= 0:
        return -math.inf
    return 10 * math.log10(sum_squares / count)


def _as_float_audio(block: np.ndarray) -> np.ndarray:
    """Audio samples scaled to [-1, 1] whatever the sample type."""
    if np.issubdtype(block.dtype, np.integer):
        return block.astype(np.float64) / float(np.iinfo(block.dtype).max + 1)
    return block.astype(np.float64)


async def _wait_closed(obj: Any) -> None:
    await obj


async def _run_for(obj: Any, seconds: float, tick: Callable[[float], None], started: Callable[[], bool]) -> None:
    """Let ``obj`` run for ``seconds`` after it started (``started()``), calling ``tick(elapsed)`` a few
    times a second; returns early if the object closes (an error). Raises TimeoutError if it never starts."""
    closed = asyncio.ensure_future(_wait_closed(obj))
    try:
        t0 = time.monotonic()
        while not started():
            await asyncio.wait({closed}, timeout=0.1)
            if closed.done():
                return
            if time.monotonic() - t0 > _OPEN_TIMEOUT:
                raise TimeoutError(f"nothing received in {_OPEN_TIMEOUT:g} s")
            tick(0.0)
        t_start = time.monotonic()
        while True:
            elapsed = time.monotonic() - t_start
            if elapsed >= seconds:
                break
            await asyncio.wait({closed}, timeout=min(0.25, seconds - elapsed))
            if closed.done():
                return
            tick(time.monotonic() - t_start)
    finally:
        closed.cancel()
        await asyncio.gather(closed, return_exceptions=True)


async def _check_camera(label: str, make: Callable[[], Any], seconds: float, progress: _Progress) -> _Result:
    times: List[float] = []
    shape: List[Any] = [None]
    asked = ""

    def on_frame(frame: Any) -> None:
        # capture time when the camera stamps its frames (Frame.timestamp), arrival time otherwise
        times.append(getattr(frame, "timestamp", None) or time.monotonic())
        shape[0] = getattr(frame, "shape", None)

    def fps() -> float:
        return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0

    def size() -> str:
        s = shape[0]
        return f"{s[1]}x{s[0]}" if s is not None and len(s) >= 2 else "?"

    def tick(elapsed: float) -> None:
        progress.update(label, f"{elapsed:4.1f} s  {len(times):4d} frames  {fps():5.1f} fps  {size()}")

    try:
        camera = make()
    except RtcbotError as e:
        return _Result(label, False, _error_text(e))
    if getattr(camera, "fps", None):
        asked = f" (asked {camera.fps:g})"
    try:
        camera.subscribe(on_frame)
        await _run_for(camera, seconds, tick, lambda: bool(times))
    except TimeoutError as e:
        return _Result(label, False, f"no frames: {e}")
    finally:
        camera.close()
    if camera.error is not None:
        return _Result(label, False, _error_text(camera.error))
    if not times:
        return _Result(label, False, "closed before delivering a frame")
    return _Result(label, True, f"{fps():5.1f} fps{asked}  {size()}  {len(times)} frames")


async def _check_microphone(label: str, make: Callable[[], Any], seconds: float, progress: _Progress) -> _Result:
    level = {"sum": 0.0, "count": 0, "blocks": 0, "zeros": True}
    fmt: List[str] = [""]

    def on_block(block: Any) -> None:
        samples = _as_float_audio(np.asarray(block))
        level["sum"] += float(np.sum(samples * samples))
        level["count"] += samples.size
        level["blocks"] += 1
        level["zeros"] = level["zeros"] and not np.any(samples)

    def overflows() -> Any:
        return getattr(mic, "overflows", None)

    def text(elapsed: Optional[float] = None) -> str:
        parts = [] if elapsed is None else [f"{elapsed:4.1f} s"]
        parts.append(f"level {_dbfs(level['sum'], level['count']):5.1f} dBFS{fmt[0]}")
        parts.append(f"{level['blocks']} blocks")
        if overflows() is not None:
            parts.append(f"{overflows()} overflows")
        return "  ".join(parts)

    try:
        mic = make()
    except RtcbotError as e:
        return _Result(label, False, _error_text(e))
    rate, channels = getattr(mic, "samplerate", None), getattr(mic, "channels", None)
    if rate and channels:
        fmt[0] = f"  {rate:g} Hz {channels} ch"
    try:
        mic.subscribe(on_block)
        await _run_for(mic, seconds, lambda t: progress.update(label, text(t)), lambda: level["blocks"] > 0)
    except TimeoutError as e:
        return _Result(label, False, f"no sound blocks: {e}")
    finally:
        mic.close()
    if mic.error is not None:
        return _Result(label, False, _error_text(mic.error))
    if level["blocks"] == 0:
        return _Result(label, False, "closed before delivering sound")
    warning = "  (all samples zero: muted, or the wrong input?)" if level["zeros"] else ""
    return _Result(label, True, text() + warning)


async def _check_speaker(label: str, make: Callable[[], Any], seconds: float, progress: _Progress) -> _Result:
    try:
        speaker = make()
    except RtcbotError as e:
        return _Result(label, False, _error_text(e))
    rate = int(getattr(speaker, "samplerate", 48000) or 48000)
    channels = int(getattr(speaker, "channels", 1) or 1)
    block = np.zeros((rate // 10, channels), dtype=np.float32)  # silence, 100 ms at a time
    sent = [0]

    def tick(elapsed: float) -> None:
        while sent[0] * 0.1 < elapsed + 0.2:  # keep ~200 ms queued ahead
            speaker.put_nowait(block)
            sent[0] += 1
        progress.update(label, f"{elapsed:4.1f} s  playing silence")

    try:
        await _run_for(speaker, seconds, tick, lambda: bool(speaker.ready))
    except TimeoutError as e:
        return _Result(label, False, f"did not start: {e}")
    finally:
        speaker.close()
    if speaker.error is not None:
        return _Result(label, False, _error_text(speaker.error))
    underflows = getattr(speaker, "underflows", None)
    extra = f"  {underflows} underflows" if underflows is not None else ""
    return _Result(label, True, f"opened, played {seconds:g} s of silence ({rate} Hz, {channels} ch){extra}")


async def _check_serial(label: str, make: Callable[[], Any], seconds: float, progress: _Progress) -> _Result:
    counts = {"items": 0, "bytes": 0}

    def on_item(item: Any) -> None:
        counts["items"] += 1
        if isinstance(item, (bytes, bytearray)):
            counts["bytes"] += len(item)

    def received() -> str:
        # raw ports deliver chunks of bytes: count bytes; a port with a protocol delivers messages
        if counts["bytes"]:
            return f"{counts['bytes']} bytes received ({counts['bytes'] / seconds:.0f} B/s)"
        if counts["items"]:
            return f"{counts['items']} messages received ({counts['items'] / seconds:.1f}/s)"
        return "nothing received"

    def tick(elapsed: float) -> None:
        progress.update(label, f"{elapsed:4.1f} s  open, {received()}")

    try:
        port = make()
    except RtcbotError as e:
        return _Result(label, False, _error_text(e))
    try:
        port.subscribe(on_item)
        await _run_for(port, seconds, tick, lambda: bool(port.ready))
    except TimeoutError as e:
        return _Result(label, False, f"did not open: {e}")
    finally:
        port.close()
    if port.error is not None:
        return _Result(label, False, _error_text(port.error))
    hint = "" if counts["items"] else " (it sent nothing: is a sketch running, at the right baud rate?)"
    dropped = f", {port.read_dropped} corrupt messages dropped" if getattr(port, "read_dropped", 0) else ""
    return _Result(label, True, f"open, {received()}{dropped}{hint}")


# ---------------------------------------------------------------------------------------------------------
# What to check.


@dataclass
class _Target:
    label: str
    check: Callable[..., Any]
    make: Callable[[], Any]
    cleanup: Optional[Callable[[], None]] = None


def _sim_targets(wanted: Sequence[str] = (SIM_CAMERA, SIM_MIC, SIM_SERIAL)) -> List[_Target]:
    targets = []
    if SIM_CAMERA in wanted:
        targets.append(
            _Target(f"{SIM_CAMERA:<14} SimCamera 320x240", _check_camera, functools.partial(_open_camera, None))
        )
    if SIM_MIC in wanted:
        targets.append(_Target(f"{SIM_MIC:<14} SimMicrophone 440 Hz", _check_microphone, _open_sim_microphone))
    if SIM_SERIAL in wanted:
        targets.append(_sim_serial_target())
    return targets


def _sim_serial_target() -> _Target:
    holder: List[Any] = []

    def make() -> Any:
        from .devices.arduino_sim import SERIAL_OPTIONS, SimulatedArduino

        arduino = SimulatedArduino()
        holder.append(arduino)
        return _open_serial(arduino.port, **SERIAL_OPTIONS)

    def cleanup() -> None:
        for arduino in holder:
            arduino.close()

    return _Target(f"{SIM_SERIAL:<14} SimulatedArduino on a pty", _check_serial, make, cleanup)


def _camera_label(c: Camera) -> str:
    return f"{c.id:<14} {c.name}"


def _audio_label(a: AudioDevice, direction: str) -> str:
    return f"{a.id + ' ' + direction:<14} {a.name}"


def _serial_label(p: SerialPort) -> str:
    return f"{p.device:<14} {p.description or 'serial port'}"


def _matches(name: str, ids: Sequence[str], title: str) -> bool:
    name_l = name.lower()
    return name in ids or (len(name) > 2 and name_l in title.lower())


_SOUND_SERVERS = ("pulse", "pipewire", "jack")


def _audio_targets(inv: Inventory) -> List[_Target]:
    """The audio devices ``check`` tries by default. Where a sound server (PulseAudio, PipeWire) runs, it
    owns the cards, so the default input and output are checked through it; otherwise each card directly."""
    server = next((a.name for a in inv.audio if a.name.split(" ")[0].lower() in _SOUND_SERVERS), None)
    targets = []
    for kind, devices, check, opener in (
        ("in", inv.microphones, _check_microphone, _open_microphone),
        ("out", inv.speakers, _check_speaker, _open_speaker),
    ):
        if devices and server is not None:
            label = f"{'default ' + kind:<14} via {server}"
            targets.append(_Target(label, check, functools.partial(opener, None)))
        else:
            for a in devices:
                targets.append(_Target(_audio_label(a, kind), check, functools.partial(opener, a.index)))
    return targets


def _default_targets(inv: Inventory) -> List[_Target]:
    """Everything found: capture cameras, hardware audio, USB serial ports (on-board UARTs only by name)."""
    targets = [_Target(_camera_label(c), _check_camera, functools.partial(_open_camera, c)) for c in inv.usable_cameras]
    targets += _audio_targets(inv)
    targets += [
        _Target(_serial_label(p), _check_serial, functools.partial(_open_serial, p.device)) for p in inv.usb_serial
    ]
    return targets


def _named_targets(inv: Inventory, name: str) -> List[_Target]:
    """The devices ``name`` designates: an id, a /dev path or link, an index, or part of a device's name."""
    targets = []
    if name in (SIM_CAMERA, SIM_MIC, SIM_SERIAL):
        return _sim_targets([name])
    for c in inv.cameras:
        if _matches(name, (c.id, c.stable_path, str(c.index)), c.name):
            targets.append(_Target(_camera_label(c), _check_camera, functools.partial(_open_camera, c)))
    for a in inv.audio:
        if _matches(name, (a.id, str(a.index)), a.name):
            if a.inputs > 0:
                targets.append(
                    _Target(_audio_label(a, "in"), _check_microphone, functools.partial(_open_microphone, a.index))
                )
            if a.outputs > 0:
                targets.append(
                    _Target(_audio_label(a, "out"), _check_speaker, functools.partial(_open_speaker, a.index))
                )
    for p in inv.serial:
        if _matches(name, (p.device, p.by_id, *p.links), p.description):
            targets.append(_Target(_serial_label(p), _check_serial, functools.partial(_open_serial, p.device)))
    if not targets and re.fullmatch(r"/dev/video\d+|/dev/v4l/.+", name):
        # a camera node discovery did not list (e.g. unplugged): let CVCamera say what is wrong
        camera = Camera(id=name, kind="v4l2", name=name, index=-1)
        targets.append(_Target(f"{name:<14} camera", _check_camera, functools.partial(_open_camera, camera)))
    elif not targets and name.startswith("/dev/"):
        # a port pyserial does not list (a pty, a symlink): try it as a serial port
        targets.append(_Target(f"{name:<14} serial port", _check_serial, functools.partial(_open_serial, name)))
    return targets


async def _run_checks(targets: List[_Target], seconds: float, out: TextIO) -> List[_Result]:
    progress = _Progress(out)
    results = []
    for t in targets:
        progress.start(t.label, seconds)
        try:
            result = await t.check(t.label, t.make, seconds, progress)
        except RtcbotError as e:
            result = _Result(t.label, False, _error_text(e))
        finally:
            if t.cleanup is not None:
                t.cleanup()
        progress.done(result.label, result.ok, result.summary)
        results.append(result)
    return results


def _cmd_check(args: argparse.Namespace, out: TextIO) -> int:
    if args.sim:
        unknown = [n for n in args.names if n not in (SIM_CAMERA, SIM_MIC, SIM_SERIAL)]
        if unknown:
            print(f"rtcbot check --sim: only {SIM_CAMERA}, {SIM_MIC} and {SIM_SERIAL} can be named", file=out)
            return 2
        targets = _sim_targets(args.names or (SIM_CAMERA, SIM_MIC, SIM_SERIAL))
        print("Checking the simulated devices (--sim).", file=out)
    else:
        inv = discover()
        targets = _default_targets(inv) if not args.names else []
        unmatched = []
        for name in args.names:
            named = _named_targets(inv, name)
            targets += named
            if not named:
                unmatched.append(name)
        for note in inv.notes:  # e.g. a library missing, so a kind of device could not even be listed
            print(f"note: {note}", file=out)
        if unmatched:
            print(f"rtcbot check: no device matches {', '.join(unmatched)} (see `rtcbot devices`)", file=out)
            return 2
        if not targets:
            skipped = [p.device for p in inv.serial if not p.vid_pid]
            why = f" (on-board serial ports like {skipped[0]} are checked only when named)" if skipped else ""
            print(f"No cameras, microphones or USB serial ports found{why}.", file=out)
            print("Checking the simulated devices instead (they need no hardware).", file=out)
            wanted = [SIM_CAMERA, SIM_MIC]
            if importlib.util.find_spec("serial") is not None:
                wanted.append(SIM_SERIAL)
            else:  # not a failure of this machine: only the simulated Arduino's client library is missing
                print("  skip  sim-serial: pyserial is not installed (pip install 'rtcbot[serial]')", file=out)
            targets = _sim_targets(wanted)
    results = asyncio.run(_run_checks(targets, args.seconds, out))
    failed = [r for r in results if not r.ok]
    if failed:
        print(f"{len(failed)} of {len(results)} devices FAILED.", file=out)
        return 1
    print(f"All {len(results)} devices OK.", file=out)
    return 0


# ---------------------------------------------------------------------------------------------------------
# devices


def _print_inventory(inv: Inventory, out: TextIO) -> None:
    print("Cameras", file=out)
    if not inv.cameras:
        print("  none found", file=out)
    for c in inv.cameras:
        use = {True: "camera", False: "not a camera", None: "unknown"}[c.capture]
        extra = "  ".join(x for x in (c.stable_path, c.note) if x)
        print(f"  {c.id:<14} {c.name:<32} {use:<12} {extra}".rstrip(), file=out)
    print("Audio", file=out)
    if not inv.audio:
        print("  none found", file=out)
    for a in inv.audio:
        io = f"in {a.inputs:<2} out {a.outputs:<2}"
        flags = ", ".join(
            f
            for f, on in (
                ("default input", a.default_input),
                ("default output", a.default_output),
                ("virtual", not a.hardware),
            )
            if on
        )
        print(f"  {a.id:<10} {io}  {a.name:<40} {a.samplerate:g} Hz  {flags}".rstrip(), file=out)
    print("Serial ports", file=out)
    if not inv.serial:
        print("  none found", file=out)
    for p in inv.serial:
        path = "  ".join(x for x in (*p.links, p.by_id) if x)
        what = p.description or ("on-board UART" if not p.vid_pid else "-")
        print(f"  {p.device:<14} {p.vid_pid or '-':<10} {what:<32} {path}".rstrip(), file=out)
    for note in inv.notes:
        print(f"note: {note}", file=out)
    if not inv.has_hardware:
        print("No hardware found: `rtcbot check --sim` runs the simulated camera, microphone and Arduino.", file=out)


def _cmd_devices(args: argparse.Namespace, out: TextIO) -> int:
    inv = discover()
    if args.json:
        json.dump(inv.to_dict(), out, indent=2)
        out.write("\n")
    else:
        _print_inventory(inv, out)
    return 0


# ---------------------------------------------------------------------------------------------------------
# snapshot and record


def _pick_camera(args: argparse.Namespace) -> Optional[Camera]:
    """The camera --device names (None means the simulated one); the first camera found by default."""
    if args.sim or args.device == "sim":
        return None
    cameras = discover().cameras
    if args.device is None:
        usable = [c for c in cameras if c.capture is not False]
        if not usable:
            raise _UsageError("no camera found (see `rtcbot devices`); use --sim for the simulated camera")
        return usable[0]
    for c in cameras:
        if args.device in (c.id, c.stable_path, str(c.index)):
            return c
    if os.path.isfile(args.device):  # a video file: CVCamera plays it like a camera
        return Camera(id=args.device, kind="file", name=args.device, index=-1)
    if args.device.startswith("/dev/video") and args.device[10:].isdigit():
        return Camera(id=args.device, kind="v4l2", name=args.device, index=int(args.device[10:]))
    raise _UsageError(f"no camera {args.device!r} (see `rtcbot devices`)")


def _pick_microphone(args: argparse.Namespace) -> Optional[AudioDevice]:
    if args.sim or args.device == "sim":
        return None
    inputs = [a for a in discover().audio if a.inputs > 0]
    if args.device is None:
        default = [a for a in inputs if a.default_input] or [a for a in inputs if a.hardware]
        if not default:
            raise _UsageError("no microphone found (see `rtcbot devices`); use --sim for the simulated one")
        return default[0]
    for a in inputs:
        if args.device in (a.id, str(a.index)) or args.device.lower() in a.name.lower():
            return a
    raise _UsageError(f"no microphone {args.device!r} (see `rtcbot devices`)")


class _UsageError(Exception):
    """A command-line mistake: printed without a traceback, exit code 2."""


async def _frames(camera: Any, count: Optional[int], seconds: Optional[float]) -> Any:
    """Yield frames from ``camera`` until ``count`` frames or ``seconds`` passed (or it fails)."""
    sub = camera.subscribe(BoundedQueue(64))
    got, start = 0, None
    while (count is None or got < count) and (start is None or time.monotonic() - start < (seconds or 0)):
        try:
            frame = await asyncio.wait_for(sub.get(), timeout=_OPEN_TIMEOUT)
        except asyncio.TimeoutError:
            if camera.error is not None:
                raise camera.error from None
            raise TimeoutError(f"camera gave no frame in {_OPEN_TIMEOUT:g} s") from None
        if start is None:
            start = time.monotonic()
        got += 1
        yield frame


async def _snapshot(args: argparse.Namespace, out: TextIO) -> int:
    from ._deps import require

    cv2 = require("cv2")
    camera = _open_camera(_pick_camera(args))
    try:
        frame = None
        # Real cameras adjust exposure over their first frames: keep the last of a few.
        async for item in _frames(camera, args.skip + 1, None):
            frame = item
    finally:
        camera.close()
    if not cv2.imwrite(args.file, np.asarray(frame)):
        raise _UsageError(f"OpenCV could not write {args.file!r}: use a .png or .jpg name in a writable folder")
    h, w = np.asarray(frame).shape[:2]
    print(f"saved {w}x{h} frame to {args.file}", file=out)
    return 0


async def _record_video(args: argparse.Namespace, out: TextIO) -> int:
    from ._deps import require

    cv2 = require("cv2")
    fourcc = {".mp4": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}.get(os.path.splitext(args.file)[1].lower())
    if fourcc is None:
        raise _UsageError(f"record: unknown file type {args.file!r}: use .avi, .mp4, .mkv or .wav")
    camera = _open_camera(_pick_camera(args))
    writer = None
    buffered: List[np.ndarray] = []
    count, t0 = 0, None
    try:
        async for frame in _frames(camera, None, args.seconds):
            frame = np.asarray(frame)
            now = time.monotonic()
            t0 = now if t0 is None else t0
            count += 1
            if writer is None:
                # Measure the real frame rate over the first second so the file plays at the right speed.
                buffered.append(frame)
                if now - t0 < 1.0 and now - t0 < args.seconds:
                    continue
                fps = max(1.0, (len(buffered) - 1) / (now - t0)) if now > t0 else 30.0
                h, w = frame.shape[:2]
                writer = cv2.VideoWriter(args.file, cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
                if not writer.isOpened():
                    raise _UsageError(f"OpenCV cannot write {args.file!r} with codec {fourcc}; try .avi")
                for f in buffered:
                    writer.write(f)
                buffered = []
            else:
                writer.write(frame)
    finally:
        camera.close()
        if writer is not None:
            writer.release()
    if writer is None:
        raise _UsageError("record: too few frames to write a video; record longer")
    print(f"saved {count} frames to {args.file}", file=out)
    return 0


async def _record_wav(args: argparse.Namespace, out: TextIO) -> int:
    device = _pick_microphone(args)
    mic = _open_sim_microphone() if device is None else _open_microphone(device.index)
    samplerate, channels = int(mic.samplerate), int(mic.channels)
    wanted = int(args.seconds * samplerate)
    written = 0
    sub = mic.subscribe(BoundedQueue(256))
    try:
        with wave.open(args.file, "wb") as w:
            w.setnchannels(channels)
            w.setsampwidth(2)
            w.setframerate(samplerate)
            while written < wanted:
                try:
                    block = await asyncio.wait_for(sub.get(), timeout=_OPEN_TIMEOUT)
                except asyncio.TimeoutError:
                    if mic.error is not None:
                        raise mic.error from None
                    raise TimeoutError(f"microphone gave no sound in {_OPEN_TIMEOUT:g} s") from None
                samples = _as_float_audio(np.asarray(block)).reshape(-1, channels)[: wanted - written]
                w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
                written += len(samples)
    finally:
        mic.close()
    print(f"saved {written / samplerate:g} s of sound ({samplerate} Hz, {channels} ch) to {args.file}", file=out)
    return 0


def _cmd_snapshot(args: argparse.Namespace, out: TextIO) -> int:
    return asyncio.run(_snapshot(args, out))


def _cmd_record(args: argparse.Namespace, out: TextIO) -> int:
    if args.seconds <= 0:
        raise _UsageError("record: --seconds must be positive")
    if args.file.lower().endswith(".wav"):
        return asyncio.run(_record_wav(args, out))
    return asyncio.run(_record_video(args, out))


def _sim_serial(argv: List[str]) -> int:
    from .devices.arduino_sim import main as sim_main

    return int(sim_main(argv) or 0)


# ---------------------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rtcbot", description="Find and test robot hardware: cameras, audio, serial.")
    p.add_argument("--version", action="version", version=f"rtcbot {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    d = sub.add_parser("devices", help="list cameras, audio devices and serial ports")
    d.add_argument("--json", action="store_true", help="print JSON for scripts")
    d.set_defaults(func=_cmd_devices)

    c = sub.add_parser("check", help="open each device for a few seconds and report how it did")
    c.add_argument(
        "names",
        nargs="*",
        help="devices to check (id, /dev path or part of the name; "
        "sim-camera, sim-mic, sim-serial); default: everything found",
    )
    c.add_argument("--sim", action="store_true", help="check the simulated devices")
    c.add_argument("--seconds", type=float, default=3.0, help="how long to run each device (default 3)")
    c.set_defaults(func=_cmd_check)

    s = sub.add_parser("snapshot", help="save one camera frame (.png, .jpg)")
    s.add_argument("file")
    s.add_argument("--device", help="camera id from `rtcbot devices` (/dev/video0, csi:0), a video file, or 'sim'")
    s.add_argument("--sim", action="store_true", help="use the simulated camera")
    s.add_argument("--skip", type=int, default=10, help="frames to skip while exposure settles (default 10)")
    s.set_defaults(func=_cmd_snapshot)

    r = sub.add_parser("record", help="record video (.avi, .mp4) or sound (.wav)")
    r.add_argument("file")
    r.add_argument("--seconds", type=float, required=True, help="how long to record")
    r.add_argument("--device", help="camera or audio id from `rtcbot devices`, or 'sim'")
    r.add_argument("--sim", action="store_true", help="use the simulated camera or microphone")
    r.set_defaults(func=_cmd_record)

    # Only for the help text: main() hands `sim-serial ...` to the simulator's own argument parser.
    sub.add_parser("sim-serial", help="serve a simulated Arduino on a pty (prints its path; --help for options)")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the ``rtcbot`` command with ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["sim-serial"]:
        return _sim_serial(argv[1:])
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    if not args.verbose:
        # OpenCV logs its own warnings to stderr (e.g. when a camera fails to open); the CLI reports the
        # failure itself, with rtcbot's advice, so keep OpenCV's noise out unless asked for.
        os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    out = sys.stdout
    try:
        return int(args.func(args, out))
    except _UsageError as e:
        print(f"rtcbot {args.command}: {e}", file=sys.stderr)
        return 2
    except (RtcbotError, TimeoutError, OSError) as e:
        print(f"rtcbot {args.command}: {_error_text(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
