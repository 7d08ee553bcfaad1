"""``rtcbot sim-serial``: serve a simulated Arduino (examples/arduino's protocol) on a pseudo-terminal.

::

    rtcbot sim-serial                      # prints the port to open, e.g. /dev/pts/3
    rtcbot sim-serial --link /tmp/arduino  # also a stable name for it, removed when it stops

It runs until Ctrl+C or SIGTERM (systemd, ``kill``); either way the link is removed.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
from typing import Any, TextIO

from .options import UsageError, check_output_folder, positive_float


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--link", help="also make this path a symlink to the port (e.g. /tmp/arduino)")
    parser.add_argument("--period", type=positive_float, default=0.05, help="seconds between sensor readings")
    parser.add_argument(
        "--watchdog", type=positive_float, default=0.5, help="stop the motors after this long without a command"
    )


def _check_link(path: str) -> None:
    if os.path.lexists(path) and not os.path.islink(path):
        raise UsageError(f"--link {path!r} exists and is not a symlink: pick a path that is free")
    try:
        check_output_folder(path)
    except UsageError as e:
        raise UsageError(f"--link: {e}") from None


class _StopSignals:
    """Turns Ctrl+C (SIGINT), SIGTERM and SIGHUP into a stop request for the time of a ``with`` block: the
    simulator then stops the same way whenever the signal comes (no KeyboardInterrupt mid-print)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.stop = threading.Event()
        self._saved: Any = {}

    def __enter__(self) -> threading.Event:
        for sig in self.SIGNALS:
            self._saved[sig] = signal.signal(sig, lambda *_: self.stop.set())
        return self.stop

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)


def run(args: argparse.Namespace, out: TextIO) -> int:
    from ..devices.arduino_sim import SimulatedArduino

    if args.link:
        _check_link(args.link)
    with (
        _StopSignals() as stop,
        SimulatedArduino(period=args.period, watchdog=args.watchdog, link=args.link) as arduino,
    ):
        print(arduino.port, file=out, flush=True)
        print(
            f"Serving a simulated Arduino on {arduino.port}: send framed '<hh' motor commands, read '<IhhHH' "
            "sensor readings (see examples/arduino/README.md). Ctrl+C to stop.",
            file=out,
            flush=True,
        )
        stop.wait()
        print(f"stopped after {len(arduino.commands)} commands", file=out, flush=True)
    return 0
