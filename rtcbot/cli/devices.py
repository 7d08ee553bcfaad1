"""``rtcbot devices``: what discovery found, one section per kind of device.

::

    rtcbot devices            # Cameras / Audio / Serial ports / ... tables
    rtcbot devices --json     # the same for scripts

Every list discovery returns is printed, so a new kind of device shows up here without a change: the kinds
below get a tailored row, any other kind a generic one (its id, name, then its other fields).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any, Callable, Dict, TextIO

from .. import discovery
from ..discovery import AudioDevice, Camera, Inventory, SerialPort


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")


def _camera_row(c: Camera) -> str:
    use = {True: "camera", False: "not a camera", None: "unknown"}[c.capture]
    extra = "  ".join(x for x in (c.stable_path, c.note) if x)
    return f"{c.id:<14} {c.name:<32} {use:<12} {extra}"


def _audio_row(a: AudioDevice) -> str:
    io = f"in {a.inputs:<2} out {a.outputs:<2}"
    flags = [
        flag
        for flag, on in (("default input", a.default_input), ("default output", a.default_output))
        + (("virtual", not a.hardware),)
        if on
    ]
    return f"{a.id:<10} {io}  {a.name:<40} {a.samplerate:g} Hz  {', '.join(flags)}"


def _serial_row(p: SerialPort) -> str:
    path = "  ".join(x for x in (*p.links, p.by_id) if x)
    what = p.description or ("on-board UART" if not p.vid_pid else "-")
    return f"{p.device:<14} {p.vid_pid or '-':<10} {what:<32} {path}"


_FIRST_FIELDS = ("id", "device", "path", "name", "description")


def generic_row(item: Any) -> str:
    """A row for a kind of device this command has no tailored row for: id and name first, then the rest."""
    values: Dict[str, Any] = (
        dataclasses.asdict(item) if dataclasses.is_dataclass(item) and not isinstance(item, type) else dict(vars(item))
    )
    first = [str(values.pop(key)) for key in _FIRST_FIELDS if values.get(key) not in (None, "", [])]
    rest = [f"{key}={value}" for key, value in values.items() if value not in (None, "", [], False)]
    return "  ".join([f"{first[0]:<14}" if first else "", *first[1:], *rest]).strip()


_ROWS: Dict[type, Callable[[Any], str]] = {Camera: _camera_row, AudioDevice: _audio_row, SerialPort: _serial_row}
_TITLES = {"cameras": "Cameras", "audio": "Audio", "serial": "Serial ports", "inputs": "Input devices"}


def print_inventory(inv: Inventory, out: TextIO) -> None:
    """Each list of ``inv`` as a titled section; then discovery's notes and a hint when nothing was found."""
    for f in dataclasses.fields(inv):
        if f.name == "notes":
            continue
        items = getattr(inv, f.name)
        print(_TITLES.get(f.name, f.name.replace("_", " ").capitalize()), file=out)
        if not items:
            print("  none found", file=out)
        for item in items:
            print(f"  {_ROWS.get(type(item), generic_row)(item)}".rstrip(), file=out)
    for note in inv.notes:
        print(f"note: {note}", file=out)
    if not inv.has_hardware:
        print("No hardware found: `rtcbot check --sim` runs the simulated camera, microphone and Arduino.", file=out)


def run(args: argparse.Namespace, out: TextIO) -> int:
    inv = discovery.discover()
    if args.json:
        json.dump(inv.to_dict(), out, indent=2)
        out.write("\n")
    else:
        print_inventory(inv, out)
    return 0
