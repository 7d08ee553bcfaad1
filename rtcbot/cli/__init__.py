"""The ``rtcbot`` command: is my camera / microphone / Arduino seen, and does it work?

::

    rtcbot devices [--json]                        list cameras, audio devices and serial ports
    rtcbot check [--sim] [--seconds N] [names...]  open each device for N seconds and report how it did
    rtcbot snapshot FILE [--device D] [--sim]      save one camera frame as PNG/JPEG
    rtcbot record FILE --seconds N [--sim]         record video (.avi/.mp4) or sound (.wav)
    rtcbot sim-serial [--link PATH]                serve a simulated Arduino on a pty
    rtcbot serve [--sim]                           the robot in a browser (the ``web`` extra)

Also ``python -m rtcbot``. In Python: ``from rtcbot.cli import main; main(["check", "--sim"])``.

One module per command (:mod:`.devices`, :mod:`.check`, :mod:`.capture`, :mod:`.sim_serial`,
:mod:`.serve`); each device check is a :class:`.probes.Probe`. Every expected failure is one line on
stderr naming the fix, with a non-zero exit code; ``-v`` adds tracebacks and debug logging.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Callable, List, Optional, Sequence, Tuple

from .. import __version__
from ..errors import RtcbotError
from . import capture, check, devices, serve, sim_serial
from .options import UsageError
from .output import configure_logging, error_text

logger = logging.getLogger("rtcbot.cli")

__all__ = ["main"]

#: name, help, example, add_arguments(parser), run(args, out) -> exit code
_COMMANDS: List[Tuple[str, str, str, Callable[[argparse.ArgumentParser], None], Callable[..., int]]] = [
    (
        "devices",
        "list cameras, audio devices and serial ports",
        "rtcbot devices --json",
        devices.add_arguments,
        devices.run,
    ),
    (
        "check",
        "open each device for a few seconds and report how it did",
        "rtcbot check --sim --seconds 2",
        check.add_arguments,
        check.run,
    ),
    (
        "snapshot",
        "save one camera frame (.png, .jpg)",
        "rtcbot snapshot front.png --device /dev/video0",
        capture.add_snapshot_arguments,
        capture.run_snapshot,
    ),
    (
        "record",
        "record video (.avi, .mp4) or sound (.wav)",
        "rtcbot record clip.avi --seconds 5 --sim",
        capture.add_record_arguments,
        capture.run_record,
    ),
    (
        "sim-serial",
        "serve a simulated Arduino on a pty (prints its path)",
        "rtcbot sim-serial --link /tmp/arduino",
        sim_serial.add_arguments,
        sim_serial.run,
    ),
]


def _parser() -> argparse.ArgumentParser:
    examples = "\n".join(f"  {example}" for _, _, example, _, _ in _COMMANDS)
    p = argparse.ArgumentParser(
        prog="rtcbot",
        description="Find and test robot hardware: cameras, audio, serial.",
        epilog=f"examples:\n{examples}\n  {serve.EXAMPLE[len('example: ') :]}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"rtcbot {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log debug messages and show tracebacks")
    # -v also after the command (`rtcbot record x.wav -v`); SUPPRESS keeps a -v given before it
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, help_text, example, add_arguments, run in _COMMANDS:
        s = sub.add_parser(name, help=help_text, description=help_text, epilog=f"example: {example}", parents=[common])
        add_arguments(s)
        s.set_defaults(run=run)
    # serve's arguments belong to rtcbot.web.serve, imported only when it runs (see rtcbot.cli.serve)
    sub.add_parser(
        "serve",
        help="the robot in a browser: cameras, audio and a drive pad (needs rtcbot[web])",
        add_help=False,
        parents=[common],
    )
    return p


def _parse(argv: List[str]) -> tuple[argparse.Namespace, List[str]]:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "serve":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args, extra


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the ``rtcbot`` command with ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    args, extra = _parse(list(sys.argv[1:] if argv is None else argv))
    configure_logging(args.verbose)
    if not args.verbose:
        # OpenCV logs its own warnings to stderr (e.g. when a camera fails to open); the CLI reports the
        # failure itself, with rtcbot's advice, so keep OpenCV's noise out unless asked for.
        os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    try:
        if args.command == "serve":
            return serve.run(extra, sys.stdout)
        return int(args.run(args, sys.stdout))
    except UsageError as e:
        _report(args, str(e))
        return e.exit_code
    except (RtcbotError, TimeoutError, OSError) as e:
        _report(args, error_text(e))
        return 1
    except KeyboardInterrupt:
        return 130


def _report(args: argparse.Namespace, message: str) -> None:
    """One line on stderr; with -v the traceback first."""
    if args.verbose:
        logger.debug("rtcbot %s failed", args.command, exc_info=True)
    print(f"rtcbot {args.command}: {message}", file=sys.stderr)
