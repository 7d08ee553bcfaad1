"""Finding the configured real device among what this machine has, by stable identity.

The inventory comes from :func:`rtcbot.discovery.discover` (or from a conftest's ``pytest_rtcbot_discover``
hook, which tests use to fake a machine)::

    from rtcbot.discovery import discover
    from rtcbot.testing.config import DeviceConfig

    chosen = select_device(DeviceConfig("serial_board", {"vid_pid": "2341:0043"}), discover())
    print(chosen.target)      # /dev/serial/by-id/usb-Arduino_Uno_8573...-if00: the stable path to open

A device that is not there raises :class:`DeviceNotFound`, whose message names what was wanted and what was
found: the plugin turns it into a skip reason.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, List, Union

from ..discovery import AudioDevice, Camera, Inventory, SerialPort
from ..errors import RtcbotError
from .config import DeviceConfig

__all__ = ["DeviceNotFound", "Selected", "select_device"]


class DeviceNotFound(RtcbotError, LookupError):
    """The configured device is not on this machine; the message says what was wanted and what there is."""


@dataclass(frozen=True)
class Selected:
    """The real device chosen for a kind: ``target`` is what to open (a path, a PortAudio index, ``csi:N``)."""

    kind: str
    target: Union[str, int]
    description: str


def _same_file(a: str, b: str) -> bool:
    return bool(a) and bool(b) and os.path.realpath(a) == os.path.realpath(b)


def _matches_path(path: str, candidates: List[str]) -> bool:
    return any(c and (c == path or _same_file(c, path)) for c in candidates)


def _by_id_matches(wanted: str, by_id: str) -> bool:
    return bool(by_id) and (by_id == wanted or os.path.basename(by_id) == wanted)


def _serial_matches(port: SerialPort, identity: dict) -> bool:
    checks = {
        "path": lambda v: _matches_path(v, [port.device, port.by_id, *port.links]),
        "by_id": lambda v: _by_id_matches(v, port.by_id),
        "vid_pid": lambda v: port.vid_pid.lower() == str(v).lower(),
        "serial_number": lambda v: port.serial_number == str(v),
        "name": lambda v: str(v).lower() in f"{port.description} {port.manufacturer}".lower(),
    }
    return _all_match("serial board", identity, checks)


def _camera_matches(camera: Camera, identity: dict) -> bool:
    checks = {
        "path": lambda v: _matches_path(v, [camera.id, camera.stable_path]),
        "by_id": lambda v: _by_id_matches(v, camera.stable_path),
        "name": lambda v: str(v).lower() in camera.name.lower(),
        "index": lambda v: camera.kind == "v4l2" and camera.index == int(v),
        "csi": lambda v: camera.kind == "csi" and camera.index == int(v),
    }
    return _all_match("camera", identity, checks)


def _audio_matches(device: AudioDevice, identity: dict) -> bool:
    checks = {
        "name": lambda v: str(v).lower() in device.name.lower(),
        "index": lambda v: device.index == int(v),
    }
    return _all_match("audio device", identity, checks)


def _all_match(what: str, identity: dict, checks: dict) -> bool:
    for key, value in identity.items():
        check = checks.get(key)
        if check is None:
            raise DeviceNotFound(f"a {what} cannot be chosen by {key!r}; use one of {sorted(checks)}")
        if not check(value):
            return False
    return True


def _listing(items: List[Any], describe: Callable[[Any], str]) -> str:
    return "; ".join(describe(i) for i in items) if items else "none"


def _describe_port(p: SerialPort) -> str:
    parts = [p.by_id or p.device, p.vid_pid, f"serial {p.serial_number}" if p.serial_number else "", p.description]
    return " ".join(x for x in parts if x)


def _describe_camera(c: Camera) -> str:
    return f"{c.stable_path or c.id} {c.name!r}"


def _describe_audio(a: AudioDevice) -> str:
    return f"{a.index} {a.name!r}"


def _not_found(config: DeviceConfig, found: str) -> DeviceNotFound:
    return DeviceNotFound(
        f"no {config.describe()} on this machine (found: {found}); plug it in, or correct "
        f"[tool.rtcbot.hw.{config.kind}] / --hw-device {config.kind}=... (`rtcbot devices` lists what is here)"
    )


def _select_serial(config: DeviceConfig, inventory: Inventory) -> Selected:
    path = config.identity.get("path")
    if path and set(config.identity) == {"path"} and os.path.exists(path):
        return Selected(config.kind, path, path)  # a udev name or a pty: open it as given
    ports = inventory.serial if config.identity else inventory.usb_serial
    for port in ports:
        if _serial_matches(port, config.identity):
            target = path or port.by_id or (port.links[0] if port.links else port.device)
            return Selected(config.kind, target, _describe_port(port))
    raise _not_found(config, _listing(inventory.serial, _describe_port))


def _select_camera(config: DeviceConfig, inventory: Inventory) -> Selected:
    path = config.identity.get("path")
    if path and set(config.identity) == {"path"} and os.path.exists(path):
        return Selected(config.kind, path, path)
    for camera in inventory.usable_cameras:
        if _camera_matches(camera, config.identity):
            target = f"csi:{camera.index}" if camera.kind == "csi" else (path or camera.stable_path or camera.id)
            return Selected(config.kind, target, _describe_camera(camera))
    raise _not_found(config, _listing(inventory.usable_cameras, _describe_camera))


def _select_audio(config: DeviceConfig, inventory: Inventory) -> Selected:
    direction = "inputs" if config.kind == "microphone" else "outputs"
    devices = [a for a in inventory.audio if getattr(a, direction) > 0]
    if not config.identity:
        default = [a for a in devices if (a.default_input if direction == "inputs" else a.default_output)]
        devices = default or devices
    for device in devices:
        if _audio_matches(device, config.identity):
            return Selected(config.kind, device.index, _describe_audio(device))
    raise _not_found(config, _listing(devices, _describe_audio))


_SELECTORS = {
    "serial_board": _select_serial,
    "camera": _select_camera,
    "microphone": _select_audio,
    "speaker": _select_audio,
}


def select_device(config: DeviceConfig, inventory: Inventory) -> Selected:
    """The real device ``config`` names (or, with no identity, the first one of its kind); raises
    :class:`DeviceNotFound` naming what was wanted and what was found."""
    return _SELECTORS[config.kind](config, inventory)
