"""Find the cameras, audio devices and serial ports this machine has, for ``rtcbot devices`` and ``check``.

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
    "Inventory",
    "SerialPort",
    "discover",
    "list_audio",
    "list_cameras",
    "list_csi_cameras",
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
    links: List[str] = field(default_factory=list)  # other symlinks to it, e.g. /dev/rtcbot/arduino


@dataclass
class Inventory:
    """Everything :func:`discover` found, plus notes on what could not be looked at."""

    cameras: List[Camera] = field(default_factory=list)
    audio: List[AudioDevice] = field(default_factory=list)
    serial: List[SerialPort] = field(default_factory=list)
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
    if driver in _CSI_RECEIVER_DRIVERS:
        return False, driver, "CSI receiver (raw sensor data): open the camera with PiCamera2"
    return capture, driver, "" if capture else "no video capture (metadata or output node)"


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
        capture, driver, note = _query_v4l2(path)
        real = os.path.realpath(path)
        links = rtcbot_links.get(real, []) + stable.get(real, [])
        cameras.append(
            Camera(
                id=path,
                kind="v4l2",
                name=_read_text(os.path.join(node, "name")) or base,
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
    listed as V4L2 nodes)."""
    if importlib.util.find_spec("picamera2") is None:
        if notes is not None and _is_raspberry_pi():
            notes.append(
                "CSI cameras not listed: picamera2 is not installed (sudo apt install python3-picamera2)"
            )
        return []
    try:
        from picamera2 import Picamera2

        infos = Picamera2.global_camera_info()
    except (ImportError, RuntimeError, OSError) as e:
        if notes is not None:
            notes.append(f"CSI cameras not listed: picamera2 failed to start ({e})")
        return []
    cameras = []
    for num, info in enumerate(infos):
        if "usb" in str(info.get("Id", "")).lower():
            continue
        index = int(info.get("Num", num))
        cameras.append(
            Camera(
                id=f"csi:{index}",
                kind="csi",
                name=str(info.get("Model", "CSI camera")),
                index=index,
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
    ports = []
    for p in sorted(list_ports.comports(), key=lambda p: p.device):
        real = os.path.realpath(p.device)
        ports.append(
            SerialPort(
                id=p.device,
                device=p.device,
                description=p.description if p.description and p.description != "n/a" else "",
                vid_pid=f"{p.vid:04x}:{p.pid:04x}" if p.vid is not None and p.pid is not None else "",
                serial_number=p.serial_number or "",
                manufacturer=p.manufacturer or "",
                by_id=(by_id.get(real) or [""])[0],
                links=rtcbot_links.get(real, []),
            )
        )
    return ports


def discover() -> Inventory:
    """Look at everything: cameras, audio devices, serial ports. Never raises for a missing library."""
    inventory = Inventory()
    inventory.cameras = list_cameras(inventory.notes)
    inventory.audio = list_audio(inventory.notes)
    inventory.serial = list_serial_ports(inventory.notes)
    return inventory
