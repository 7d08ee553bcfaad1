"""Find the cameras, audio devices, serial ports and input devices this machine has, for ``rtcbot devices``
and ``check``.

Each section works on its own: a missing library (picamera2, sounddevice, pyserial) leaves its section
empty with a note saying what to install, and never stops the others::

    from rtcbot.discovery import discover

    found = discover()
    for port in found.serial:
        print(port.device, port.vid_pid, port.by_id)
    print(found.notes)
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import glob
import importlib.util
import logging
import os
import struct
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

logger = logging.getLogger("rtcbot.discovery")

__all__ = [
    "AudioDevice",
    "Camera",
    "InputDevice",
    "Inventory",
    "SerialPort",
    "discover",
    "list_audio",
    "list_cameras",
    "list_csi_cameras",
    "list_input_devices",
    "list_onboard_uarts",
    "list_serial_ports",
    "list_v4l2_cameras",
]

# VIDIOC_QUERYCAP = _IOR('V', 0, struct v4l2_capability), the struct being 104 bytes.
_VIDIOC_QUERYCAP = (2 << 30) | (104 << 16) | (ord("V") << 8) | 0
_V4L2_CAP_VIDEO_CAPTURE = 0x00000001
_V4L2_CAP_VIDEO_CAPTURE_MPLANE = 0x00001000
_V4L2_CAP_VIDEO_M2M_MPLANE = 0x00004000
_V4L2_CAP_VIDEO_M2M = 0x00008000
_V4L2_CAP_DEVICE_CAPS = 0x80000000
# Capture nodes of the Raspberry Pi CSI receivers: they give raw sensor data and are used through libcamera.
_CSI_RECEIVER_DRIVERS = ("unicam", "rp1-cfe")
# The Pi's ISPs: their capture (Pi 4, bcm2835-isp) and multi-planar output/capture (Pi 5, pispbe) nodes are
# stages of libcamera's pipeline, not cameras. Codecs are memory-to-memory and left out by their caps.
_ISP_DRIVERS = ("bcm2835-isp", "pispbe")


@dataclass
class Camera:
    """A camera: a V4L2 node (``kind="v4l2"``, id ``/dev/videoN``) or a CSI camera (``kind="csi"``, id
    ``csi:N``, opened with PiCamera2)."""

    id: str
    kind: str
    name: str
    index: int
    capture: Optional[bool] = None  # None: could not ask the driver (see note)
    driver: str = ""
    stable_path: str = ""
    note: str = ""


@dataclass
class AudioDevice:
    """A PortAudio device as sounddevice lists it (id ``audio:N``, N being sounddevice's index)."""

    id: str
    index: int
    name: str
    hostapi: str
    inputs: int
    outputs: int
    samplerate: float
    default_input: bool = False
    default_output: bool = False
    hardware: bool = True  # False for ALSA's virtual devices (default, pulse, dmix, ...)


@dataclass
class SerialPort:
    """A serial port as pyserial lists it, with its stable ``/dev/serial/by-id`` path when udev made one."""

    id: str
    device: str
    description: str
    vid_pid: str = ""  # "2341:0043" for USB devices
    serial_number: str = ""
    manufacturer: str = ""
    by_id: str = ""
    links: List[str] = field(default_factory=list)  # other symlinks to it, e.g. /dev/rtcbot/arduino, /dev/serial0
    onboard: bool = False  # one of the board's own UARTs (a Pi's ttyAMA0 / ttyS0), not a USB adapter


@dataclass
class InputDevice:
    """A Linux input device (id ``/dev/input/eventN``): a gamepad, keyboard or mouse for
    :class:`rtcbot.inputs.Gamepad` and friends (``kind`` is ``gamepad``, ``keyboard``, ``mouse`` or ``other``)."""

    id: str
    name: str
    kind: str
    by_id: str = ""  # /dev/input/by-id/... when udev made one (USB devices)
    phys: str = ""  # where it is attached, e.g. usb-0000:01:00.0-1.3/input0
    note: str = ""


@dataclass
class Inventory:
    """Everything :func:`discover` found, plus notes on what could not be looked at."""

    cameras: List[Camera] = field(default_factory=list)
    audio: List[AudioDevice] = field(default_factory=list)
    serial: List[SerialPort] = field(default_factory=list)
    inputs: List[InputDevice] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)

    @property
    def usable_cameras(self) -> List[Camera]:
        """Cameras that can give frames: not codec/ISP nodes, not the raw CSI receiver nodes."""
        return [c for c in self.cameras if c.capture is not False]

    @property
    def microphones(self) -> List[AudioDevice]:
        """Hardware audio inputs (ALSA's virtual devices left out)."""
        return [a for a in self.audio if a.inputs > 0 and a.hardware]

    @property
    def speakers(self) -> List[AudioDevice]:
        """Hardware audio outputs (ALSA's virtual devices left out)."""
        return [a for a in self.audio if a.outputs > 0 and a.hardware]

    @property
    def usb_serial(self) -> List[SerialPort]:
        """Serial ports with a USB id (Arduinos, USB-serial adapters), not the on-board UARTs."""
        return [p for p in self.serial if p.vid_pid]

    @property
    def has_hardware(self) -> bool:
        """Whether anything ``rtcbot check`` would check by default was found."""
        return bool(self.usable_cameras or self.microphones or self.speakers or self.usb_serial)

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


def _links_to(targets: List[str]) -> Dict[str, List[str]]:
    """Map each real device path to the symlinks (among ``targets``) that point at it."""
    links: Dict[str, List[str]] = {}
    for link in sorted(targets):
        links.setdefault(os.path.realpath(link), []).append(link)
    return links


def _read_text(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def _query_v4l2(path: str) -> Tuple[Optional[bool], str, str]:
    """Ask a V4L2 node what it is: (is a capture device or None if unknown, driver name, note)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
    except OSError as e:
        if e.errno in (errno.EACCES, errno.EPERM):
            return None, "", "permission denied: add your user to the 'video' group (then log in again)"
        return None, "", f"cannot open: {e.strerror}"
    try:
        buf = fcntl.ioctl(fd, _VIDIOC_QUERYCAP, bytes(104))
    except OSError as e:
        return None, "", f"not a V4L2 device ({e.strerror})"
    finally:
        os.close(fd)
    driver = buf[:16].split(b"\0", 1)[0].decode(errors="replace")
    capabilities, device_caps = struct.unpack_from("<II", buf, 84)
    caps = device_caps if capabilities & _V4L2_CAP_DEVICE_CAPS else capabilities
    capture = bool(caps & (_V4L2_CAP_VIDEO_CAPTURE | _V4L2_CAP_VIDEO_CAPTURE_MPLANE))
    if caps & (_V4L2_CAP_VIDEO_M2M | _V4L2_CAP_VIDEO_M2M_MPLANE):
        return False, driver, "codec/ISP node, not a camera"
    capture_ok, note = _classify_pi_node(driver)
    if capture_ok is False:
        return False, driver, note
    return capture, driver, "" if capture else "no video capture (metadata or output node)"


def _classify_pi_node(driver_or_name: str) -> Tuple[Optional[bool], str]:
    """(False, why) for the Pi's CSI receiver and ISP nodes, named by driver or by sysfs name (``unicam-image``,
    ``rp1-cfe-csi2_ch0``, ``bcm2835-isp-capture0``, ``pispbe-output0``); (None, "") for anything else."""
    for prefix in _CSI_RECEIVER_DRIVERS:
        if driver_or_name.startswith(prefix):
            return False, "CSI receiver (raw sensor data): open the camera with PiCamera2"
    for prefix in _ISP_DRIVERS:
        if driver_or_name.startswith(prefix):
            return False, "Raspberry Pi ISP node (used by libcamera), not a camera"
    return None, ""


def list_v4l2_cameras(sys_root: str = "/sys/class/video4linux", dev_root: str = "/dev") -> List[Camera]:
    """V4L2 video nodes with the name the driver gives them and whether they capture video.

    Codec and ISP nodes (many on a Raspberry Pi) come back with ``capture=False``; a USB webcam usually has
    two nodes, the first captures video::

        for cam in list_v4l2_cameras():
            if cam.capture:
                print(cam.id, cam.name)     # CVCamera(cameranumber=cam.index)
    """
    cameras = []
    stable = _links_to(glob.glob(os.path.join(dev_root, "v4l", "by-id", "*")))
    rtcbot_links = _links_to(glob.glob(os.path.join(dev_root, "rtcbot", "*")))
    nodes = glob.glob(os.path.join(sys_root, "video*"))
    for node in sorted(nodes, key=lambda p: int(os.path.basename(p)[5:] or -1)):
        base = os.path.basename(node)
        if not base[5:].isdigit():
            continue
        path = os.path.join(dev_root, base)
        name = _read_text(os.path.join(node, "name")) or base
        capture, driver, note = _query_v4l2(path)
        by_name, why = _classify_pi_node(name)
        if by_name is False and capture is not False:  # e.g. the node could not be opened to ask its driver
            capture, note = False, why
        real = os.path.realpath(path)
        links = rtcbot_links.get(real, []) + stable.get(real, [])
        cameras.append(
            Camera(
                id=path,
                kind="v4l2",
                name=name,
                index=int(base[5:]),
                capture=capture,
                driver=driver,
                stable_path=links[0] if links else "",
                note=note,
            )
        )
    return cameras


def _is_raspberry_pi() -> bool:
    return "raspberry pi" in _read_text("/proc/device-tree/model").lower()


def list_csi_cameras(notes: Optional[List[str]] = None) -> List[Camera]:
    """CSI cameras libcamera sees, through picamera2 when it is installed (USB cameras left out: they are
    listed as V4L2 nodes). ``csi:N`` is the position in ``Picamera2.global_camera_info()``, the number
    ``PiCamera2(cameranumber=N)`` and ``Picamera2(N)`` take (not libcamera's ``Num``, which can differ)."""
    if importlib.util.find_spec("picamera2") is None:
        if notes is not None and _is_raspberry_pi():
            notes.append(
                "CSI cameras not listed: picamera2 is not installed (sudo apt install python3-picamera2)"
            )
        return []
    try:
        from picamera2 import Picamera2

        infos = Picamera2.global_camera_info()
    except ValueError as e:  # apt's simplejpeg under pip's numpy 2: "numpy.dtype size changed"
        if notes is not None:
            from rtcbot.devices.picamera import numpy_mismatch_advice

            notes.append(f"CSI cameras not listed: {numpy_mismatch_advice(e)}")
        return []
    except (ImportError, RuntimeError, OSError) as e:
        if notes is not None:
            notes.append(f"CSI cameras not listed: picamera2 failed to start ({e})")
        return []
    cameras = []
    for position, info in enumerate(infos):
        if "/usb" in str(info.get("Id", "")).lower():
            continue
        cameras.append(
            Camera(
                id=f"csi:{position}",
                kind="csi",
                name=str(info.get("Model", "CSI camera")),
                index=position,
                capture=True,
                driver="libcamera",
                note="open with PiCamera2",
            )
        )
    return cameras


def list_cameras(notes: Optional[List[str]] = None) -> List[Camera]:
    """All cameras: V4L2 nodes and CSI cameras."""
    return list_v4l2_cameras() + list_csi_cameras(notes)


def _is_hardware_audio(name: str, hostapi: str) -> bool:
    """On Linux, ALSA lists real cards as 'Card name: PCM (hw:1,0)'; default, pulse, dmix and the like are
    software devices. Other host APIs (CoreAudio, WASAPI) only list real devices."""
    return hostapi != "ALSA" or "(hw:" in name


def list_audio(notes: Optional[List[str]] = None) -> List[AudioDevice]:
    """Audio inputs and outputs as sounddevice (PortAudio) sees them."""
    try:
        import sounddevice as sd
    except (ImportError, OSError) as e:
        if notes is not None:
            notes.append(
                f"audio devices not listed: sounddevice is unavailable ({e}); "
                "pip install 'rtcbot[audio]' and apt install libportaudio2"
            )
        return []
    try:
        devices = sd.query_devices()
        hostapis = sd.query_hostapis()
        default_in, default_out = sd.default.device
    except sd.PortAudioError as e:
        if notes is not None:
            notes.append(f"audio devices not listed: PortAudio failed ({e})")
        return []
    found = []
    for d in devices:
        hostapi = str(hostapis[d["hostapi"]]["name"])
        found.append(
            AudioDevice(
                id=f"audio:{d['index']}",
                index=int(d["index"]),
                name=str(d["name"]),
                hostapi=hostapi,
                inputs=int(d["max_input_channels"]),
                outputs=int(d["max_output_channels"]),
                samplerate=float(d["default_samplerate"]),
                default_input=d["index"] == default_in,
                default_output=d["index"] == default_out,
                hardware=_is_hardware_audio(str(d["name"]), hostapi),
            )
        )
    return found


def list_serial_ports(notes: Optional[List[str]] = None, dev_root: str = "/dev") -> List[SerialPort]:
    """Serial ports from pyserial's ``list_ports``, with USB VID:PID and the stable by-id path::

    for p in list_serial_ports():
        print(p.device, p.vid_pid, p.by_id)     # /dev/ttyACM0 2341:0043 /dev/serial/by-id/usb-Arduino...
    """
    try:
        from serial.tools import list_ports
    except ImportError as e:
        if notes is not None:
            notes.append(
                f"serial ports not listed: pyserial is not installed ({e}); pip install 'rtcbot[serial]'"
            )
        return []
    by_id = _links_to(glob.glob(os.path.join(dev_root, "serial", "by-id", "*")))
    rtcbot_links = _links_to(glob.glob(os.path.join(dev_root, "rtcbot", "*")))
    aliases = _links_to(glob.glob(os.path.join(dev_root, "serial[0-9]")))
    ports = []
    for p in sorted(list_ports.comports(), key=lambda p: p.device):
        real = os.path.realpath(p.device)
        onboard = os.path.basename(real).startswith(("ttyAMA", "ttyS")) and p.vid is None
        ports.append(
            SerialPort(
                id=p.device,
                device=p.device,
                description=p.description if p.description and p.description != "n/a" else "",
                vid_pid=f"{p.vid:04x}:{p.pid:04x}" if p.vid is not None and p.pid is not None else "",
                serial_number=p.serial_number or "",
                manufacturer=p.manufacturer or "",
                by_id=(by_id.get(real) or [""])[0],
                links=rtcbot_links.get(real, []) + aliases.get(real, []),
                onboard=onboard,
            )
        )
    listed = {os.path.realpath(p.device) for p in ports}
    ports += [u for u in list_onboard_uarts(dev_root=dev_root) if os.path.realpath(u.device) not in listed]
    return sorted(ports, key=lambda p: p.device)


def _tty_device_kind(sys_root: str, name: str) -> str:
    """The bus a tty's hardware sits on ("amba", "platform", "usb-serial"...), or "" for none."""
    device = os.path.join(sys_root, name, "device")
    if not os.path.exists(device):
        return ""
    return os.path.basename(os.path.realpath(os.path.join(device, "subsystem")))


def list_onboard_uarts(dev_root: str = "/dev", sys_root: str = "/sys/class/tty") -> List[SerialPort]:
    """A Raspberry Pi's own UARTs (``ttyAMA*``: PL011; ``ttyS0``: the mini-UART) with the ``serial0`` /
    ``serial1`` aliases pointing at them. pyserial's list hides ``platform`` tty devices, and the Pi's
    mini-UART is one, so it is looked for here; a PC's placeholder ``ttyS`` ports (the ``serial8250``
    platform device, no hardware behind them) are left out::

        for p in list_onboard_uarts():
            print(p.device, p.links)     # /dev/ttyS0 ['/dev/serial0']
    """
    aliases = _links_to(glob.glob(os.path.join(dev_root, "serial[0-9]")))
    found = []
    for path in sorted(glob.glob(os.path.join(dev_root, "ttyAMA*")) + glob.glob(os.path.join(dev_root, "ttyS*"))):
        name = os.path.basename(path)
        if not name[len("ttyAMA" if name.startswith("ttyAMA") else "ttyS"):].isdigit():
            continue
        subsystem = _tty_device_kind(sys_root, name)
        real = os.path.realpath(path)
        alias = aliases.get(real, [])
        device_node = os.path.basename(os.path.realpath(os.path.join(sys_root, name, "device")))
        placeholder = subsystem == "platform" and device_node.startswith("serial8250")
        if not subsystem or (placeholder and not alias):
            continue
        if subsystem not in ("amba", "platform"):
            continue
        found.append(
            SerialPort(
                id=path,
                device=path,
                description="on-board UART (PL011)" if name.startswith("ttyAMA") else "on-board UART (mini-UART)",
                links=alias,
                onboard=True,
            )
        )
    return found


def _word_bits() -> int:
    """The kernel's long, which sizes sysfs capability words (a 32-bit Pi OS may run a 64-bit kernel)."""
    return 64 if "64" in os.uname().machine else 32


def list_input_devices(
    notes: Optional[List[str]] = None, dev_root: str = "/dev", sys_root: str = "/sys/class/input"
) -> List[InputDevice]:
    """Input devices (``/dev/input/event*``) with their names and kinds, read from sysfs (no evdev needed)::

        for d in list_input_devices():
            print(d.id, d.kind, d.name)     # /dev/input/event3 gamepad Xbox Wireless Controller
    """
    from rtcbot.devices.input_events import classify_input, parse_sysfs_bitmap

    by_id = _links_to(glob.glob(os.path.join(dev_root, "input", "by-id", "*")))
    bits = _word_bits()
    found = []
    nodes = glob.glob(os.path.join(sys_root, "event*"))
    for node in sorted(nodes, key=lambda p: int(os.path.basename(p)[5:] or -1)):
        base = os.path.basename(node)
        if not base[5:].isdigit():
            continue
        device = os.path.join(node, "device")
        caps = os.path.join(device, "capabilities")
        kind = classify_input(
            keys=parse_sysfs_bitmap(_read_text(os.path.join(caps, "key")), bits),
            relative=parse_sysfs_bitmap(_read_text(os.path.join(caps, "rel")), bits),
            absolute=parse_sysfs_bitmap(_read_text(os.path.join(caps, "abs")), bits),
        )
        path = os.path.join(dev_root, "input", base)
        note = ""
        if os.path.exists(path) and not os.access(path, os.R_OK):
            note = "permission denied: add your user to the 'input' group (then log in again)"
        found.append(
            InputDevice(
                id=path,
                name=_read_text(os.path.join(device, "name")) or base,
                kind=kind,
                by_id=(by_id.get(os.path.realpath(path)) or [""])[0],
                phys=_read_text(os.path.join(device, "phys")),
                note=note,
            )
        )
    return found




def discover() -> Inventory:
    """Look at everything: cameras, audio devices, serial ports, input devices. Never raises for a missing
    library."""
    inventory = Inventory()
    inventory.cameras = list_cameras(inventory.notes)
    inventory.audio = list_audio(inventory.notes)
    inventory.serial = list_serial_ports(inventory.notes)
    inventory.inputs = list_input_devices(inventory.notes)
    note = web_support_note()
    if note is not None:
        inventory.notes.append(note)
    return inventory


def web_support_note() -> Optional[str]:
    """A note when the browser path (``rtcbot serve``, ``RTCConnection``) cannot work: a library of the
    ``web`` extra is not installed. None when it is all there. Looks without importing anything."""
    import importlib.util

    missing = [name for name in ("aiortc", "aiohttp", "av") if importlib.util.find_spec(name) is None]
    if not missing:
        return None
    return (
        f"browser streaming (rtcbot serve, RTCConnection) is not available: {', '.join(missing)} not installed; "
        "pip install 'rtcbot[web]'"
    )
