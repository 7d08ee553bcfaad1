"""Opening a serial port for :class:`~rtcbot.devices.serial.SerialConnection`, and the errors that say what
to check when it cannot be opened::

    check_settings(url, baudrate, write_timeout, delay_write_start)   # bad values fail at the call
    check_port(url)                          # a missing or inaccessible path fails before opening
    port = open_port(url, baudrate)          # pyserial, non-blocking; DeviceOpenError saying what to check
    has_pollable_fd(port)                    # True: the event loop can watch it (devices, socket://)

Nothing here runs on the event loop except the quick checks: ``open_port`` may block (a network URL connects)
and is called from a thread by the connection.
"""

from __future__ import annotations

import errno
import math
import os
import stat
from typing import Any, Optional

from .._deps import require
from ..errors import DeviceOpenError

__all__ = ["check_port", "check_settings", "has_pollable_fd", "open_error", "open_port"]

_UNCANCELLABLE_READ_TIMEOUT = 0.2  # s: how often a reader thread on a port without cancel_read() checks for close


def _is_url(url: str) -> bool:
    return "://" in url


def _errno_of(err: Optional[BaseException]) -> Optional[int]:
    """The errno of ``err``, or of what caused it (pyserial wraps termios errors: ENOTTY for /dev/null)."""
    seen = 0
    while err is not None and seen < 5:
        code = getattr(err, "errno", None)
        if code is None and err.args and isinstance(err.args[0], int):
            code = err.args[0]
        if code is not None:
            return code
        err = err.__cause__ or err.__context__
        seen += 1
    return None


def open_error(url: str, err: BaseException) -> DeviceOpenError:
    """A DeviceOpenError for ``url`` saying what to check, from the errno of ``err`` (or of its cause)."""
    code = _errno_of(err)
    if code == errno.ENOENT:
        hint = (
            "it does not exist: is the device plugged in? `rtcbot devices` lists the serial ports (use a "
            "stable /dev/serial/by-id/... path); /dev/rtcbot/... names need the udev rules in udev/ "
            "(sudo udev/install.sh)"
        )
    elif code in (errno.EACCES, errno.EPERM):
        hint = (
            "permission denied: add your user to the 'dialout' group (sudo usermod -aG dialout $USER, then "
            "log in again), or install the udev rules in udev/ (sudo udev/install.sh)"
        )
    elif code in (errno.EBUSY, errno.EAGAIN, errno.EWOULDBLOCK):
        hint = (
            "another program holds it (a serial monitor, screen/minicom, ModemManager, another "
            f"SerialConnection): close it; `fuser -v {url}` shows which"
        )
    elif code == errno.ENOTTY:
        hint = "it is not a serial port (no terminal settings): check the path"
    else:
        hint = "check the path or URL, that the device is plugged in, and the 'dialout' group"
    error = DeviceOpenError(f"SerialConnection cannot open {url!r}: {hint} ({err})")
    error.errno = code  # callers can still test the cause; str(error) stays one clean sentence
    return error


def check_settings(url: Any, baudrate: Any, write_timeout: Any, delay_write_start: Any) -> None:
    """Reject, at construction, values the worker could never open the port with."""
    if not isinstance(url, str) or not url:
        raise TypeError(
            f"SerialConnection url must be a device path or a pyserial URL string (e.g. '/dev/ttyACM0', "
            f"'loop://'), got {url!r}; `rtcbot devices` lists the serial ports"
        )
    if isinstance(baudrate, bool) or not isinstance(baudrate, int):
        raise TypeError(
            f"SerialConnection({url!r}) baudrate must be an int (e.g. 115200, as in the board's "
            f"Serial.begin()), got {baudrate!r}"
        )
    if baudrate <= 0:
        raise ValueError(
            f"SerialConnection({url!r}) baudrate must be positive (e.g. 115200, as in the board's "
            f"Serial.begin()), got {baudrate}"
        )
    if write_timeout is not None:
        if isinstance(write_timeout, bool) or not isinstance(write_timeout, (int, float)):
            raise TypeError(f"SerialConnection({url!r}) write_timeout must be seconds or None, got {write_timeout!r}")
        if not (math.isfinite(write_timeout) and write_timeout >= 0):
            raise ValueError(
                f"SerialConnection({url!r}) write_timeout must be finite seconds >= 0 (or None to wait for "
                f"ever), got {write_timeout!r}"
            )
    if isinstance(delay_write_start, bool) or not isinstance(delay_write_start, (int, float)):
        raise TypeError(f"SerialConnection({url!r}) delayWriteStart must be seconds, got {delay_write_start!r}")
    if not (math.isfinite(delay_write_start) and delay_write_start >= 0):
        raise ValueError(
            f"SerialConnection({url!r}) delayWriteStart must be finite seconds >= 0, got {delay_write_start!r}"
        )


def check_port(url: str) -> None:
    """Fail fast in the parent, without opening the port (opening resets an Arduino: DTR)."""
    if _is_url(url):
        scheme = url.split("://", 1)[0].lower()
        try:
            __import__(f"serial.urlhandler.protocol_{scheme}")
        except ImportError as e:
            raise DeviceOpenError(
                f"SerialConnection cannot open {url!r}: pyserial knows no '{scheme}://' URL (it has loop://, "
                "spy://, socket://, rfc2217://, alt://, hwgrep://); use a device path like /dev/ttyACM0"
            ) from e
        return
    try:
        st = os.stat(url)
    except OSError as e:
        raise open_error(url, e) from e
    if not stat.S_ISCHR(st.st_mode):
        raise open_error(url, OSError(errno.ENOTTY, "not a character device"))
    if not os.access(url, os.R_OK | os.W_OK):
        raise open_error(url, OSError(errno.EACCES, "no read/write access for this user"))


def open_port(url: str, baudrate: int, write_timeout: Optional[float] = None) -> Any:
    """Open ``url`` with pyserial (a device path exclusively); raises DeviceOpenError saying what to check.

    May block (opening a device, connecting a network URL): call it off the event loop. A port with a pollable
    fd is used non-blocking by the event loop; one without (``loop://``, ``rfc2217://``, ``spy://``) is read
    and written by threads, with pyserial's blocking calls.
    """
    serial = require("serial")
    kwargs: dict = {"baudrate": baudrate, "timeout": None, "write_timeout": write_timeout}
    if not _is_url(url):
        kwargs["exclusive"] = True
    try:
        port = serial.serial_for_url(url, **kwargs)
    except (serial.SerialException, OSError, ValueError) as e:
        raise open_error(url, e) from e
    if not has_pollable_fd(port) and not callable(getattr(port, "cancel_read", None)):
        port.timeout = _UNCANCELLABLE_READ_TIMEOUT  # its reader thread cannot be woken: it looks for close
    return port


def has_pollable_fd(port: Any) -> bool:
    """True when the event loop can do ``port``'s I/O itself: it has a file descriptor and its read/write are
    pyserial's plain ones for that descriptor (a device path, ``socket://``). A wrapper that adds to them
    (``spy://`` logs every read and write) and URLs without a descriptor (``loop://``, ``rfc2217://``) are
    left to threads."""
    serial = require("serial")
    plain = []
    posix = getattr(serial, "serialposix", None)
    if posix is not None:
        plain.append(posix.Serial)
    try:
        from serial.urlhandler import protocol_socket

        plain.append(protocol_socket.Serial)
    except ImportError:  # pragma: no cover - part of pyserial
        pass
    for cls in plain:
        if isinstance(port, cls) and type(port).read is cls.read and type(port).write is cls.write:
            try:
                return isinstance(port.fileno(), int)
            except (AttributeError, OSError, ValueError, serial.SerialException):
                return False
    return False
