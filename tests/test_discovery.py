"""Discovery against fake /dev and /sys trees and the picamera2 fake: what a Raspberry Pi shows, without one."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Dict, Optional

import pytest

from rtcbot import discovery
from rtcbot.devices.input_events import classify_input, parse_sysfs_bitmap
from tests.fakes import picamera2 as fake

NUMPY_MISMATCH = "numpy.dtype size changed, may indicate binary incompatibility. Expected 96 from C header, got 88"


@pytest.fixture
def picamera(monkeypatch):
    fake.system.reset(cameras=1)
    monkeypatch.setitem(sys.modules, "picamera2", fake)
    monkeypatch.setitem(sys.modules, "libcamera", fake.libcamera)
    monkeypatch.setattr(discovery.importlib.util, "find_spec", lambda name: object())
    yield fake.system
    fake.system.reset()


# ------------------------------------------------------------------------------------------- CSI cameras


def test_csi_cameras_are_numbered_by_their_position_in_picamera2s_list(picamera):
    # libcamera numbers the imx477 0 and the imx708 1; picamera2 lists the imx708 first, USB cameras last.
    picamera.reset(cameras=[fake.csi_camera("imx477", bus=0x80000), fake.usb_camera(),
                            fake.csi_camera("imx708", bus=0x88000)])  # fmt: skip
    cameras = discovery.list_csi_cameras([])
    assert [(c.id, c.name, c.index) for c in cameras] == [("csi:0", "imx708", 0), ("csi:1", "imx477", 1)]
    for camera in cameras:  # the number opens that very camera
        assert fake.Picamera2.global_camera_info()[camera.index]["Model"] == camera.name


def test_a_single_csi_camera_is_listed_for_pi_camera2(picamera):
    (camera,) = discovery.list_csi_cameras([])
    assert (camera.id, camera.kind, camera.name, camera.capture) == ("csi:0", "csi", "imx708", True)
    assert "PiCamera2" in camera.note


def test_usb_cameras_seen_by_libcamera_are_left_to_the_v4l2_list(picamera):
    picamera.reset(cameras=[fake.usb_camera()])
    assert discovery.list_csi_cameras([]) == []


def test_picamera2_failing_to_start_becomes_a_note(picamera, monkeypatch):
    def broken():
        raise RuntimeError("libcamera: no camera manager")

    monkeypatch.setattr(fake.Picamera2, "global_camera_info", staticmethod(broken))
    notes: list = []
    assert discovery.list_csi_cameras(notes) == []
    assert "picamera2 failed to start" in notes[0]


def test_a_numpy_mismatch_importing_picamera2_is_a_note_saying_what_to_do(monkeypatch, tmp_path):
    package = tmp_path / "picamera2"
    package.mkdir()
    (package / "__init__.py").write_text(f"raise ValueError({NUMPY_MISMATCH!r})\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "picamera2", raising=False)
    notes: list = []
    assert discovery.list_csi_cameras(notes) == []
    assert "numpy.dtype size changed" in notes[0] and "pip uninstall numpy" in notes[0]


# ------------------------------------------------------------------------------------------- V4L2 nodes


def make_video_nodes(tmp_path: Path, names: Dict[str, str]) -> tuple:
    sys_root, dev_root = tmp_path / "sys", tmp_path / "dev"
    sys_root.mkdir()
    dev_root.mkdir()
    for node, name in names.items():
        (sys_root / node).mkdir()
        (sys_root / node / "name").write_text(name + "\n")
        (dev_root / node).write_text("")
    return str(sys_root), str(dev_root)


@pytest.mark.parametrize(
    "name, driver",
    [
        ("unicam-image", "unicam"),  # Pi 4 CSI receiver: raw Bayer
        ("rp1-cfe-csi2_ch0", "rp1-cfe"),  # Pi 5 CSI receiver
        ("bcm2835-isp-capture0", "bcm2835-isp"),  # Pi 4 ISP capture node (single-planar capture caps)
        ("pispbe-output0", "pispbe"),  # Pi 5 ISP back end (multi-planar capture caps)
    ],
)
def test_the_pis_receiver_and_isp_nodes_are_not_cameras(tmp_path, monkeypatch, name, driver):
    sys_root, dev_root = make_video_nodes(tmp_path, {"video0": name, "video1": "HD Webcam C270"})
    drivers = {"video0": driver, "video1": "uvcvideo"}
    monkeypatch.setattr(discovery, "_query_v4l2", lambda p: _as_driver_says(drivers[os.path.basename(p)]))
    cameras = discovery.list_v4l2_cameras(sys_root=sys_root, dev_root=dev_root)
    assert [(c.name, c.capture) for c in cameras] == [(name, False), ("HD Webcam C270", True)]
    assert cameras[0].note
    assert [c.name for c in discovery.Inventory(cameras=cameras).usable_cameras] == ["HD Webcam C270"]


def _as_driver_says(driver: str) -> tuple:
    """What _query_v4l2 answers for a node with capture caps and this driver (the ioctl needs a real node)."""
    capture_ok, note = discovery._classify_pi_node(driver)
    return (True, driver, "") if capture_ok is None else (False, driver, note)


def test_an_unreadable_isp_node_is_told_by_its_name(tmp_path, monkeypatch):
    sys_root, dev_root = make_video_nodes(tmp_path, {"video20": "bcm2835-isp-capture0"})
    monkeypatch.setattr(discovery, "_query_v4l2", lambda p: (None, "", "permission denied"))
    (camera,) = discovery.list_v4l2_cameras(sys_root=sys_root, dev_root=dev_root)
    assert camera.capture is False and "ISP" in camera.note


# ------------------------------------------------------------------------------------------- on-board UARTs


def make_tty(tmp_path: Path, name: str, device: Optional[str], subsystem: str) -> None:
    """/dev/<name> and /sys/class/tty/<name>/device -> /sys/devices/<device> on bus <subsystem>."""
    (tmp_path / "dev").mkdir(exist_ok=True)
    (tmp_path / "dev" / name).write_text("")
    tty = tmp_path / "sys" / "class" / "tty" / name
    tty.mkdir(parents=True)
    if device is None:
        return
    bus = tmp_path / "sys" / "bus" / subsystem
    bus.mkdir(parents=True, exist_ok=True)
    target = tmp_path / "sys" / "devices" / device
    target.mkdir(parents=True, exist_ok=True)
    (target / "subsystem").symlink_to(bus)
    (tty / "device").symlink_to(target)


@pytest.fixture
def pi_ttys(tmp_path):
    """A Pi 4 with the mini-UART as serial0 and the PL011 as serial1 (Bluetooth off), and a placeholder port."""
    make_tty(tmp_path, "ttyS0", "platform/soc/fe215040.serial", "platform")
    make_tty(tmp_path, "ttyAMA0", "platform/soc/fe201000.serial", "amba")
    make_tty(tmp_path, "ttyS1", "platform/serial8250", "platform")
    make_tty(tmp_path, "ttyS2", None, "")
    (tmp_path / "dev" / "serial0").symlink_to("ttyS0")
    (tmp_path / "dev" / "serial1").symlink_to("ttyAMA0")
    return str(tmp_path / "dev"), str(tmp_path / "sys" / "class" / "tty")


def test_the_pis_uarts_are_listed_with_their_serial_aliases(pi_ttys):
    dev_root, sys_root = pi_ttys
    ports = discovery.list_onboard_uarts(dev_root=dev_root, sys_root=sys_root)
    assert [(os.path.basename(p.device), [os.path.basename(x) for x in p.links]) for p in ports] == [
        ("ttyAMA0", ["serial1"]),
        ("ttyS0", ["serial0"]),
    ]
    assert all(p.onboard and not p.vid_pid and "on-board UART" in p.description for p in ports)


def test_the_mini_uart_pyserial_hides_is_added_to_the_serial_list(pi_ttys, monkeypatch):
    from serial.tools import list_ports
    from serial.tools.list_ports_common import ListPortInfo

    dev_root, sys_root = pi_ttys
    amba = ListPortInfo(os.path.join(dev_root, "ttyAMA0"))  # pyserial keeps amba ports, drops platform ones
    monkeypatch.setattr(list_ports, "comports", lambda: [amba])
    original = discovery.list_onboard_uarts
    monkeypatch.setattr(discovery, "list_onboard_uarts", lambda dev_root: original(dev_root, sys_root))
    ports = discovery.list_serial_ports([], dev_root=dev_root)
    assert [os.path.basename(p.device) for p in ports] == ["ttyAMA0", "ttyS0"]
    assert [os.path.basename(x) for x in ports[0].links] == ["serial1"] and ports[0].onboard
    assert discovery.Inventory(serial=ports).usb_serial == []


# ------------------------------------------------------------------------------------------- input devices


def bitmap(codes, word_bits=64) -> str:
    words = [0] * (max(codes) // word_bits + 1 if codes else 1)
    for code in codes:
        words[code // word_bits] |= 1 << (code % word_bits)
    return " ".join(f"{w:x}" for w in reversed(words))


GAMEPAD_KEYS = {0x130, 0x131, 0x133, 0x134, 0x136, 0x137, 0x13A, 0x13B, 0x13C, 0x13D, 0x13E}
KEYBOARD_KEYS = set(range(1, 89))
MOUSE_KEYS = {0x110, 0x111, 0x112}


def test_sysfs_bitmaps_parse_to_event_codes():
    assert parse_sysfs_bitmap(bitmap(GAMEPAD_KEYS), 64) == GAMEPAD_KEYS
    assert parse_sysfs_bitmap(bitmap(KEYBOARD_KEYS, 32), 32) == KEYBOARD_KEYS
    assert parse_sysfs_bitmap("0", 64) == set() and parse_sysfs_bitmap("", 64) == set()


@pytest.mark.parametrize(
    "keys, rel, abs_, kind",
    [
        (GAMEPAD_KEYS, set(), {0, 1, 3, 4, 16, 17}, "gamepad"),
        ({0x120, 0x121}, set(), {0, 1}, "gamepad"),  # an old joystick
        (KEYBOARD_KEYS, set(), set(), "keyboard"),
        (MOUSE_KEYS, {0, 1, 8}, set(), "mouse"),
        ({116}, set(), set(), "other"),  # the power button
    ],
)
def test_input_devices_are_classified_by_their_capabilities(keys, rel, abs_, kind):
    assert classify_input(keys, rel, abs_) == kind


def test_input_devices_are_listed_with_name_and_kind(tmp_path, monkeypatch):
    monkeypatch.setattr(discovery, "_word_bits", lambda: 64)
    sys_root, dev_root = tmp_path / "sys", tmp_path / "dev"
    devices = {
        "event0": ("Power Button", {116}, set()),
        "event3": ("Xbox Wireless Controller", GAMEPAD_KEYS, set()),
        "event5": ("Logitech USB Receiver Mouse", MOUSE_KEYS, {0, 1, 8}),
        "event12": ("AT Translated Set 2 keyboard", KEYBOARD_KEYS, set()),
    }
    (dev_root / "input" / "by-id").mkdir(parents=True)
    for node, (name, keys, rel) in devices.items():
        caps = sys_root / node / "device" / "capabilities"
        caps.mkdir(parents=True)
        (sys_root / node / "device" / "name").write_text(name + "\n")
        (caps / "key").write_text(bitmap(keys) + "\n")
        (caps / "rel").write_text(bitmap(rel) + "\n")
        (caps / "abs").write_text("0\n")
        (dev_root / "input" / node).write_text("")
    (dev_root / "input" / "by-id" / "usb-Microsoft_Controller-event-joystick").symlink_to("../event3")
    found = discovery.list_input_devices([], dev_root=str(dev_root), sys_root=str(sys_root))
    assert [(os.path.basename(d.id), d.kind, d.name) for d in found] == [
        ("event0", "other", "Power Button"),
        ("event3", "gamepad", "Xbox Wireless Controller"),
        ("event5", "mouse", "Logitech USB Receiver Mouse"),
        ("event12", "keyboard", "AT Translated Set 2 keyboard"),
    ]
    assert found[1].by_id.endswith("usb-Microsoft_Controller-event-joystick")
    assert "inputs" in discovery.Inventory(inputs=found).to_dict()
