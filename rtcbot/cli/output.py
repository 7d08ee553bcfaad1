"""How ``rtcbot`` prints: one status line per device, and log records as one line unless ``-v``.

::

    progress = Progress(sys.stdout)
    progress.start("sim-camera", 3)              # piped: "  ..    sim-camera  checking for 3 s"
    progress.update("sim-camera", "1.0 s ...")   # on a terminal: the line is rewritten in place
    progress.done("sim-camera", True, "30 fps")  # "  ok    sim-camera  30 fps"
"""

from __future__ import annotations

import logging
import textwrap
from typing import Any, Optional, TextIO

__all__ = ["Progress", "error_text", "configure_logging"]


def error_text(err: BaseException) -> str:
    """``"DeviceOpenError: SerialConnection cannot open ..."``: the type says what kind of failure it is."""
    return f"{type(err).__name__}: {err}"


class Progress:
    """Prints a device's status line: rewritten in place on a TTY, plain start and result lines otherwise."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()

    def start(self, label: str, seconds: float) -> None:
        if not self.tty:
            print(f"  ..    {label}  checking for {seconds:g} s", file=self.out, flush=True)

    def update(self, label: str, text: str) -> None:
        if self.tty:
            self.out.write(f"\r\x1b[K  ..    {label}  {text}")
            self.out.flush()

    def done(self, label: str, ok: bool, text: str) -> None:
        if self.tty:
            self.out.write("\r\x1b[K")
        if ok:
            print(f"  ok    {label}  {text}", file=self.out, flush=True)
            return
        # A failure's message (the library's error, with what to check) goes below, wrapped to be read.
        wrapped = textwrap.fill(
            text,
            width=100,
            initial_indent=" " * 8,
            subsequent_indent=" " * 10,
            break_long_words=False,
            break_on_hyphens=False,
        )
        print(f"  FAIL  {label}\n{wrapped}", file=self.out, flush=True)


class _OneLineFormatter(logging.Formatter):
    """A log record's message without its traceback: the command reports failures itself, ``-v`` shows all."""

    def format(self, record: logging.LogRecord) -> str:
        first_line = record.getMessage().split("\n", 1)[0]  # a worker's traceback travels in the message
        return f"{record.levelname} {record.name}: {first_line}".rstrip(":")

    def formatException(self, ei: Any) -> str:  # noqa: N802 (logging's name)
        return ""


def carries_traceback(record: logging.LogRecord) -> bool:
    """Whether a log record reports an exception with its traceback (attached, or in the message text)."""
    return record.exc_info is not None or "Traceback (most recent call last)" in str(record.msg) + "".join(
        str(a) for a in (record.args if isinstance(record.args, tuple) else ())
    )


_handler: Optional[logging.Handler] = None  # the one configure_logging installed (replaced on a new call)


def configure_logging(verbose: bool) -> None:
    """Debug logging with tracebacks for ``-v``; otherwise warnings and errors, one line each."""
    global _handler
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s") if verbose else _OneLineFormatter())
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.WARNING)
    _handler = handler
