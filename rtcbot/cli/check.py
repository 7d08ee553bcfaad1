"""``rtcbot check``: open each device for a few seconds through rtcbot's classes and report how it did.

::

    rtcbot check                         # everything found (the simulated devices when nothing is)
    rtcbot check --sim --seconds 1       # the simulated camera, microphone and Arduino
    rtcbot check /dev/rtcbot/arduino "USB Audio" sim-mic loop://

A name is a device id, a path (any existing file or link, e.g. one made by ``rtcbot sim-serial --link``),
a pyserial URL (``loop://``, ``socket://host:port``), an index or part of a device's name.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import importlib.util
import logging
import os
import re
from typing import Any, Iterator, List, Optional, Sequence, TextIO

from .. import discovery
from ..discovery import AudioDevice, Camera, Inventory, SerialPort
from .options import UsageError, positive_float
from .output import Progress, carries_traceback
from .probes import CameraProbe, MicrophoneProbe, Probe, Result, SerialProbe, SpeakerProbe, run_probe

SIM_CAMERA, SIM_MIC, SIM_SERIAL = "sim-camera", "sim-mic", "sim-serial"
SIM_NAMES = (SIM_CAMERA, SIM_MIC, SIM_SERIAL)
_SOUND_SERVERS = ("pulse", "pipewire", "jack")
_URL = re.compile(r"[a-z][a-z0-9+.-]*://.*", re.IGNORECASE)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "names",
        nargs="*",
        help="devices to check (id, path, pyserial URL, index or part of the name; "
        "sim-camera, sim-mic, sim-serial); default: everything found",
    )
    parser.add_argument("--sim", action="store_true", help="check the simulated devices")
    parser.add_argument("--seconds", type=positive_float, default=3.0, help="how long to run each device (default 3)")


# ---------------------------------------------------------------------------------------------------------
# Opening devices through rtcbot's own classes (called inside the event loop).


def open_camera(camera: Optional[Camera]) -> Any:
    """The rtcbot producer for a discovered camera, or the simulated camera for None."""
    if camera is None:
        from ..devices.sim import SimCamera

        return SimCamera()
    if camera.kind == "csi":
        from ..devices.picamera import PiCamera2

        return PiCamera2(cameranumber=camera.index)
    from ..devices.camera import CVCamera

    return CVCamera(cameranumber=camera.id)


def open_microphone(index: Optional[int]) -> Any:
    """A Microphone on the PortAudio device ``index`` (None: the default input)."""
    from ..devices.audio import Microphone

    return Microphone(device=index)


def open_sim_microphone() -> Any:
    from ..devices.sim import SimMicrophone

    return SimMicrophone()


def open_speaker(index: Optional[int]) -> Any:
    """A Speaker on the PortAudio device ``index`` (None: the default output)."""
    from ..devices.audio import Speaker

    return Speaker(device=index)


def open_serial(port: str, **options: Any) -> Any:
    """A SerialConnection on ``port``; without options it reads raw bytes (whatever the device speaks)."""
    from ..devices.serial import SerialConnection

    return SerialConnection(port, **(options or {"readFormat": None}))


# ---------------------------------------------------------------------------------------------------------
# What to check.


def sim_probes(wanted: Sequence[str] = SIM_NAMES) -> List[Probe]:
    probes: List[Probe] = []
    if SIM_CAMERA in wanted:
        probes.append(CameraProbe(f"{SIM_CAMERA:<14} SimCamera 320x240", functools.partial(open_camera, None)))
    if SIM_MIC in wanted:
        probes.append(MicrophoneProbe(f"{SIM_MIC:<14} SimMicrophone 440 Hz", open_sim_microphone))
    if SIM_SERIAL in wanted:
        probes.append(_sim_serial_probe())
    return probes


def _sim_serial_probe() -> Probe:
    arduinos: List[Any] = []

    def make() -> Any:
        from ..devices.arduino_sim import SERIAL_OPTIONS, SimulatedArduino

        arduino = SimulatedArduino()
        arduinos.append(arduino)
        return open_serial(arduino.port, **SERIAL_OPTIONS)

    def cleanup() -> None:
        for arduino in arduinos:
            arduino.close()

    return SerialProbe(f"{SIM_SERIAL:<14} SimulatedArduino on a pty", make, cleanup)


def _camera_probe(c: Camera) -> Probe:
    return CameraProbe(f"{c.id:<14} {c.name}", functools.partial(open_camera, c))


def _audio_probes(a: AudioDevice) -> List[Probe]:
    probes: List[Probe] = []
    if a.inputs > 0:
        probes.append(MicrophoneProbe(f"{a.id + ' in':<14} {a.name}", functools.partial(open_microphone, a.index)))
    if a.outputs > 0:
        probes.append(SpeakerProbe(f"{a.id + ' out':<14} {a.name}", functools.partial(open_speaker, a.index)))
    return probes


def _serial_probe(p: SerialPort) -> Probe:
    return SerialProbe(f"{p.device:<14} {p.description or 'serial port'}", functools.partial(open_serial, p.device))


def audio_probes(inv: Inventory) -> List[Probe]:
    """The audio devices ``check`` tries by default. Where a sound server (PulseAudio, PipeWire) runs, it
    owns the cards, so the default input and output are checked through it; otherwise each card directly."""
    server = next((a.name for a in inv.audio if a.name.split(" ")[0].lower() in _SOUND_SERVERS), None)
    probes: List[Probe] = []
    for kind, devices, probe_class, opener in (
        ("in", inv.microphones, MicrophoneProbe, open_microphone),
        ("out", inv.speakers, SpeakerProbe, open_speaker),
    ):
        if devices and server is not None:
            probes.append(probe_class(f"{'default ' + kind:<14} via {server}", functools.partial(opener, None)))
        else:
            probes += [
                probe_class(f"{a.id + ' ' + kind:<14} {a.name}", functools.partial(opener, a.index)) for a in devices
            ]
    return probes


def default_probes(inv: Inventory) -> List[Probe]:
    """Everything found: capture cameras, hardware audio, USB serial ports (on-board UARTs only by name)."""
    return [
        *(_camera_probe(c) for c in inv.usable_cameras),
        *audio_probes(inv),
        *(_serial_probe(p) for p in inv.usb_serial),
    ]


def _matches(name: str, ids: Sequence[str], title: str) -> bool:
    return name in ids or (len(name) > 2 and name.lower() in title.lower())


def named_probes(inv: Inventory, name: str) -> List[Probe]:
    """The devices ``name`` designates: an id, a path or link, a URL, an index, or part of a device's name."""
    if name in SIM_NAMES:
        return sim_probes([name])
    probes: List[Probe] = []
    probes += [_camera_probe(c) for c in inv.cameras if _matches(name, (c.id, c.stable_path, str(c.index)), c.name)]
    for a in inv.audio:
        if _matches(name, (a.id, str(a.index)), a.name):
            probes += _audio_probes(a)
    probes += [_serial_probe(p) for p in inv.serial if _matches(name, (p.device, p.by_id, *p.links), p.description)]
    if probes:
        return probes
    if re.fullmatch(r"/dev/video\d+|/dev/v4l/.+", name):
        # a camera node discovery did not list (e.g. unplugged): let CVCamera say what is wrong
        camera = Camera(id=name, kind="v4l2", name=name, index=-1)
        return [CameraProbe(f"{name:<14} camera", functools.partial(open_camera, camera))]
    if _URL.fullmatch(name) or name.startswith("/dev/") or os.path.lexists(name):
        # a port pyserial does not list (a pty, a link to one, a URL): SerialConnection says what is wrong
        return [SerialProbe(f"{name:<14} serial port", functools.partial(open_serial, name))]
    return []


# ---------------------------------------------------------------------------------------------------------


def _choose(args: argparse.Namespace, out: TextIO) -> List[Probe]:
    """The probes to run, printing what was chosen and why; UsageError for a name that matches nothing."""
    if args.sim:
        unknown = [n for n in args.names if n not in SIM_NAMES]
        if unknown:
            raise UsageError(f"with --sim only {', '.join(SIM_NAMES)} can be named, not {', '.join(unknown)}")
        print("Checking the simulated devices (--sim).", file=out)
        return sim_probes(args.names or SIM_NAMES)
    inv = discovery.discover()
    for note in inv.notes:  # e.g. a library missing, so a kind of device could not even be listed
        print(f"note: {note}", file=out)
    if args.names:
        named = {name: named_probes(inv, name) for name in args.names}
        unmatched = [name for name, probes in named.items() if not probes]
        if unmatched:
            raise UsageError(f"no device matches {', '.join(unmatched)} (see `rtcbot devices`)")
        return [probe for probes in named.values() for probe in probes]
    probes = default_probes(inv)
    if probes:
        return probes
    skipped = [p.device for p in inv.serial if not p.vid_pid]
    why = f" (on-board serial ports like {skipped[0]} are checked only when named)" if skipped else ""
    print(f"No cameras, microphones or USB serial ports found{why}.", file=out)
    print("Checking the simulated devices instead (they need no hardware).", file=out)
    wanted = [SIM_CAMERA, SIM_MIC]
    if importlib.util.find_spec("serial") is not None:
        wanted.append(SIM_SERIAL)
    else:  # not a failure of this machine: only the simulated Arduino's client library is missing
        print("  skip  sim-serial: pyserial is not installed (pip install 'rtcbot[serial]')", file=out)
    return sim_probes(wanted)


class _DropTracebacks(logging.Filter):
    """While devices are checked, a failing device's own log record with a traceback is dropped: its probe
    prints the same error on the FAIL line (``-v`` shows everything)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not carries_traceback(record)


@contextlib.contextmanager
def _quiet_device_tracebacks(verbose: bool) -> Iterator[None]:
    if verbose:
        yield
        return
    handlers = logging.getLogger().handlers
    dropper = _DropTracebacks()
    for handler in handlers:
        handler.addFilter(dropper)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(dropper)


async def _run_all(probes: List[Probe], seconds: float, out: TextIO) -> List[Result]:
    progress = Progress(out)
    results = []
    for probe in probes:
        result = await run_probe(probe, seconds, progress)
        progress.done(result.label, result.ok, result.summary)
        results.append(result)
    return results


def run(args: argparse.Namespace, out: TextIO) -> int:
    probes = _choose(args, out)
    with _quiet_device_tracebacks(getattr(args, "verbose", False)):
        results = asyncio.run(_run_all(probes, args.seconds, out))
    failed = [r for r in results if not r.ok]
    if failed:
        print(f"{len(failed)} of {len(results)} devices FAILED.", file=out)
        return 1
    print(f"All {len(results)} devices OK.", file=out)
    return 0
