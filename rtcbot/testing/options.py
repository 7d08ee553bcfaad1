"""The command-line options, ini options and markers of rtcbot's pytest plugin, and what they ask for.

    pytest                     # robot tests against simulated devices; @pytest.mark.hw tests skip
    pytest --hw                # the real devices (also RTCBOT_HW=1)
    pytest --hw --hw-device camera=/dev/video2 --hw-device serial_board=2341:0043

Markers: ``hw`` (needs real hardware: skipped without ``--hw``) and one per device kind, ``hw_camera``,
``hw_microphone``, ``hw_speaker``, ``hw_serial_board`` (needs that real device: skipped without ``--hw``,
and skipped with a reason naming the device when ``--hw`` finds none).
"""

from __future__ import annotations

import os
from typing import Any, Dict, List

__all__ = ["DEVICE_KINDS", "add_options", "device_marker", "device_overrides", "hw_requested", "register_markers"]

DEVICE_KINDS = ("camera", "microphone", "speaker", "serial_board")
"""The kinds of device the plugin knows; each has a marker ``hw_<kind>`` and a fixture ``rtcbot_<kind>``."""

_ENV = "RTCBOT_HW"


def device_marker(kind: str) -> str:
    """The marker a test uses to say it needs the real device of this kind: ``hw_camera``..."""
    return f"hw_{kind}"


def add_options(parser: Any) -> None:
    """Adds ``--hw``, ``--hw-device`` and the ini options (called from ``pytest_addoption``)."""
    group = parser.getgroup("rtcbot", "rtcbot hardware-in-the-loop")
    group.addoption(
        "--hw",
        action="store_true",
        default=False,
        help=f"run against the real devices (also {_ENV}=1); without it the rtcbot_* fixtures are simulated",
    )
    group.addoption(
        "--hw-device",
        action="append",
        default=[],
        metavar="KIND=SELECTOR",
        help="choose a real device, overriding [tool.rtcbot.hw]: camera=/dev/video2, serial_board=2341:0043, "
        "serial_board=serial:85736323, microphone=name:USB (repeatable)",
    )
    for kind in DEVICE_KINDS:
        parser.addini(
            f"rtcbot_{kind}",
            f"the real {kind.replace('_', ' ')} for --hw runs (a path, vid:pid, serial:N, name:TEXT, index:N); "
            f"[tool.rtcbot.hw.{kind}] in pyproject.toml says more",
            default="",
        )


def register_markers(config: Any) -> None:
    config.addinivalue_line("markers", f"hw: needs real hardware (run with --hw or {_ENV}=1)")
    for kind in DEVICE_KINDS:
        config.addinivalue_line(
            "markers",
            f"{device_marker(kind)}: needs the real {kind.replace('_', ' ')} (run with --hw; skipped when absent)",
        )


def hw_requested(config: Any) -> bool:
    """Whether this run is on real hardware: ``--hw`` or ``RTCBOT_HW=1``."""
    return bool(config.getoption("--hw", default=False)) or os.environ.get(_ENV) == "1"


def device_overrides(config: Any) -> Dict[str, str]:
    """``--hw-device KIND=SELECTOR`` options as {kind: selector}; a bad one is a usage error naming it."""
    import pytest

    overrides: Dict[str, str] = {}
    values: List[str] = config.getoption("--hw-device", default=[]) or []
    for value in values:
        kind, sep, selector = value.partition("=")
        if not sep or kind not in DEVICE_KINDS or not selector:
            raise pytest.UsageError(
                f"--hw-device {value!r}: expected KIND=SELECTOR with KIND one of {', '.join(DEVICE_KINDS)}"
            )
        overrides[kind] = selector
    return overrides
