"""Which real device each fixture opens, and with what settings: ``[tool.rtcbot.hw]`` in pyproject.toml.

A robot project says once which devices are its own, by a stable identity, and its tests never name a
``/dev/ttyACM0`` that changes with the plug order::

    [tool.rtcbot.hw.serial_board]
    vid_pid = "2341:0043"                  # or path = "/dev/rtcbot/arduino", serial_number = "8573...",
    options = { framed = true, readFormat = "<IhhHH", writeFormat = "<hh" }   #  by_id = "usb-Arduino..."

    [tool.rtcbot.hw.camera]
    by_id = "usb-046d_C270_HD_WEBCAM-video-index0"
    width = 640
    height = 480

    [tool.rtcbot.hw.microphone]
    name = "USB"                            # part of the PortAudio name (``rtcbot devices`` lists them)

Identity keys: ``path`` (``/dev/rtcbot/...``, ``/dev/serial/by-id/...``), ``by_id`` (the by-id name),
``vid_pid``, ``serial_number``, ``name``, ``index``, ``csi`` (a CSI camera's number). Every other key is a
setting for the device: ``width``/``height``/``fps`` for cameras; ``samplerate``/``channels``/``blocksize``
for audio (``max_latency`` for the speaker, ``sim_latency`` for the simulated room's delay, 0.03 s); for the
serial board ``options`` (SerialConnection keyword arguments; default: examples/arduino's protocol), ``sim``
(``"module:Class"``, the simulated board, a PtyDevice; default the simulated Arduino) and ``sim_options``
(its keyword arguments).

The ini option ``rtcbot_<kind>`` and ``--hw-device KIND=SELECTOR`` give the identity as one word, and win
over the table: ``/dev/video2`` (a path), ``2341:0043`` (vid:pid), ``serial:8573...``, ``by-id:usb-...``,
``name:USB``, ``index:2``, ``csi:0``.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional

from .options import DEVICE_KINDS

__all__ = ["DeviceConfig", "HwConfigError", "load_config", "parse_selector", "read_pyproject_table"]

IDENTITY_KEYS = ("path", "by_id", "vid_pid", "serial_number", "name", "index", "csi")

_VID_PID = re.compile(r"^[0-9a-fA-F]{4}:[0-9a-fA-F]{4}$")
_PREFIXES = {"serial": "serial_number", "by-id": "by_id", "name": "name", "index": "index", "csi": "csi"}


class HwConfigError(ValueError):
    """``[tool.rtcbot.hw]`` or a selector is malformed; the message names the key and what is expected."""


@dataclass
class DeviceConfig:
    """One kind of device: how to find the real one (identity) and how to open it (settings)::

    DeviceConfig("camera", identity={"by_id": "usb-046d..."}, settings={"width": 640})
    """

    kind: str
    identity: Dict[str, Any] = field(default_factory=dict)
    settings: Dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        """The identity as the user wrote it, for messages: ``camera by_id='usb-046d...'``."""
        if not self.identity:
            return self.kind.replace("_", " ")
        wanted = " ".join(f"{k}={v!r}" for k, v in self.identity.items())
        return f"{self.kind.replace('_', ' ')} {wanted}"


def parse_selector(text: str) -> Dict[str, Any]:
    """One word naming a device, as an identity dict::

    parse_selector("/dev/rtcbot/arduino")   # {"path": "/dev/rtcbot/arduino"}
    parse_selector("2341:0043")             # {"vid_pid": "2341:0043"}
    parse_selector("serial:85736323")       # {"serial_number": "85736323"}
    """
    text = text.strip()
    if not text:
        return {}
    if text.startswith("/") or text.startswith("."):
        return {"path": text}
    if _VID_PID.match(text):
        return {"vid_pid": text.lower()}
    if text.isdigit():
        return {"index": int(text)}
    prefix, sep, rest = text.partition(":")
    if sep and prefix in _PREFIXES and rest:
        key = _PREFIXES[prefix]
        return {key: int(rest) if key in ("index", "csi") and rest.isdigit() else rest}
    raise HwConfigError(
        f"device selector {text!r}: expected a path (/dev/...), vid:pid (2341:0043), serial:N, by-id:NAME, "
        "name:TEXT, index:N or csi:N"
    )


def _load_toml(path: str) -> Dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pytest itself needs tomli on Python < 3.11
        import tomli as tomllib
    with open(path, "rb") as f:
        return tomllib.load(f)


def read_pyproject_table(rootdir: str) -> Dict[str, Any]:
    """The ``[tool.rtcbot.hw]`` table of ``rootdir/pyproject.toml`` ({} when there is none)."""
    path = os.path.join(rootdir, "pyproject.toml")
    if not os.path.isfile(path):
        return {}
    try:
        data = _load_toml(path)
    except (OSError, ValueError) as e:
        raise HwConfigError(f"{path}: cannot read it ({e})") from e
    table = data.get("tool", {}).get("rtcbot", {}).get("hw", {})
    if not isinstance(table, dict):
        raise HwConfigError(f"{path}: [tool.rtcbot.hw] must be a table")
    return table


def _from_table(kind: str, table: Mapping[str, Any]) -> DeviceConfig:
    if not isinstance(table, Mapping):
        raise HwConfigError(f"[tool.rtcbot.hw.{kind}] must be a table of keys, got {table!r}")
    identity = {k: v for k, v in table.items() if k in IDENTITY_KEYS}
    settings = {k: v for k, v in table.items() if k not in IDENTITY_KEYS}
    if "vid_pid" in identity:
        identity["vid_pid"] = str(identity["vid_pid"]).lower()
    return DeviceConfig(kind, identity, settings)


def load_config(
    table: Mapping[str, Any], ini: Optional[Mapping[str, str]] = None, overrides: Optional[Mapping[str, str]] = None
) -> Dict[str, DeviceConfig]:
    """Every kind's DeviceConfig from the pyproject table, then ini selectors, then ``--hw-device``::

    configs = load_config({"camera": {"path": "/dev/video2"}}, overrides={"serial_board": "2341:0043"})
    """
    unknown = sorted(set(table) - set(DEVICE_KINDS))
    if unknown:
        raise HwConfigError(f"[tool.rtcbot.hw]: unknown device kind(s) {unknown}; known: {list(DEVICE_KINDS)}")
    configs = {kind: _from_table(kind, table.get(kind, {})) for kind in DEVICE_KINDS}
    for source in (ini or {}, overrides or {}):
        for kind, selector in source.items():
            if selector:
                configs[kind] = dataclasses.replace(configs[kind], identity=parse_selector(selector))
    return configs
