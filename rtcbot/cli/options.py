"""What every ``rtcbot`` command shares: the usage error, checked number types, output-path checks.

Numbers are checked by argparse (``--seconds 0`` is refused with the usual usage message), and output
paths are checked before any device opens, so a typo costs nothing. The examples use the same types::

    parser.add_argument("--seconds", type=positive_float)
    check_output_path(args.file, (".png", ".jpg"), "an image")   # UsageError naming the fix
"""

from __future__ import annotations

import argparse
import os
from typing import Callable, Sequence


class UsageError(Exception):
    """A command-line mistake: printed as one line without a traceback, exit code 2."""

    exit_code = 2


class MissingExtraError(UsageError):
    """The command needs a pip extra that is not installed: one line saying which, exit code 1."""

    exit_code = 1


def positive_float(text: str) -> float:
    """argparse type: a number greater than zero (``--seconds 0`` would do nothing or divide by zero)."""
    value = _number(text, float)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def positive_int(text: str) -> int:
    """argparse type: a whole number greater than zero (a width, a frame rate)."""
    value = int(_number(text, int))
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive whole number")
    return value


def int_in_range(low: int, high: int) -> Callable[[str], int]:
    """argparse type factory: a whole number from ``low`` to ``high`` (``type=int_in_range(0, 255)``)."""

    def parse(text: str) -> int:
        value = int(_number(text, int))
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} is not between {low} and {high}")
        return value

    parse.__name__ = f"whole number {low}..{high}"
    return parse


def non_negative_int(text: str) -> int:
    """argparse type: a whole number, zero or more (``--skip -5`` makes no sense)."""
    value = int(_number(text, int))
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative: give 0 or more")
    return value


def _number(text: str, kind: type) -> float | int:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a {'whole ' if kind is int else ''}number") from None
    if value != value or value in (float("inf"), float("-inf")):  # nan, inf
        raise argparse.ArgumentTypeError(f"{text} is not a finite number")
    return value


def check_output_folder(path: str) -> None:
    """UsageError unless ``path``'s folder exists and is writable (checked before a device opens)."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UsageError(f"cannot save {path!r}: the folder {folder} does not exist (create it, or pick another)")
    if not os.access(folder, os.W_OK):
        raise UsageError(f"cannot save {path!r}: the folder {folder} is not writable (pick another folder)")
    if os.path.isdir(path):
        raise UsageError(f"cannot save {path!r}: it is a folder; give a file name")


def check_output_path(path: str, extensions: Sequence[str], what: str) -> str:
    """The lower-case extension of ``path`` after checking it is one of ``extensions`` and its folder is
    writable; UsageError naming the accepted extensions otherwise."""
    extension = os.path.splitext(path)[1].lower()
    if extension not in extensions:
        names = ", ".join(extensions)
        raise UsageError(f"cannot save {what} as {path!r}: use a file name ending in {names}")
    check_output_folder(path)
    return extension
