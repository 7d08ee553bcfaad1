"""One Zenoh session per process (per configuration), shared and reference-counted.

Every :class:`~rtcbot.net.ZenohPublisher` and :class:`~rtcbot.net.ZenohSubscriber` created with the same
options shares one session; the session closes when the last of them closes. The options:

- ``mode``: ``"peer"`` (default: talks directly to other peers), ``"client"`` (talks through a router) or
  ``"router"`` (routes for a fleet).
- ``connect``: endpoints to reach, e.g. ``["tcp/192.168.1.20:7447"]``, for hosts LAN discovery cannot find
  (another subnet, a VPN, multicast blocked by the Wi-Fi access point).
- ``listen``: endpoints to accept connections on, e.g. ``["tcp/0.0.0.0:7447"]``.
- ``multicast``: multicast scouting (LAN discovery) on or off; None keeps Zenoh's default (on).
- ``config_file``: a Zenoh JSON5 config file; the options above are applied on top of it. Without one,
  the file named by the ``ZENOH_CONFIG`` environment variable is used if set.

Peer mode with LAN discovery is the default, so two programs on one network find each other with no
configuration at all. ``configure()`` sets the options used by objects that do not pass their own::

    from rtcbot.net import configure
    configure(connect=["tcp/192.168.1.20:7447"])     # before creating publishers/subscribers

    lease = acquire_session(SessionOptions(listen=("tcp/127.0.0.1:7447",), multicast=False))
    lease.session.put("robot1/hello", "hi")
    lease.release()
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field, replace
from typing import Any, Dict, Iterable, Optional, Tuple

from .._deps import require
from ..errors import DeviceOpenError

__all__ = ["SessionLease", "SessionOptions", "acquire_session", "configure", "open_session_count"]

log = logging.getLogger("rtcbot.net.session")

MODES = ("peer", "client", "router")


def _endpoints(value: Optional[Iterable[str]], name: str) -> Tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    endpoints = tuple(value)
    for endpoint in endpoints:
        if not isinstance(endpoint, str) or "/" not in endpoint:
            raise ValueError(
                f"{name} endpoint {endpoint!r} is not a Zenoh endpoint; write it as "
                "'<protocol>/<address>:<port>', e.g. 'tcp/192.168.1.20:7447'"
            )
    return endpoints


@dataclass(frozen=True)
class SessionOptions:
    """How to open a Zenoh session (see the module docstring); hashable, so equal options share a session::

    SessionOptions(mode="client", connect=("tcp/router.local:7447",))
    """

    mode: str = "peer"
    connect: Tuple[str, ...] = field(default=())
    listen: Tuple[str, ...] = field(default=())
    multicast: Optional[bool] = None
    config_file: Optional[str] = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"Zenoh mode must be one of {MODES}, got {self.mode!r}")
        object.__setattr__(self, "connect", _endpoints(self.connect, "connect"))
        object.__setattr__(self, "listen", _endpoints(self.listen, "listen"))
        if self.config_file is not None and not os.path.isfile(self.config_file):
            raise ValueError(f"Zenoh config file {self.config_file!r} does not exist")

    def with_overrides(
        self,
        mode: Optional[str] = None,
        connect: Optional[Iterable[str]] = None,
        listen: Optional[Iterable[str]] = None,
        multicast: Optional[bool] = None,
        config_file: Optional[str] = None,
    ) -> SessionOptions:
        """These options with every argument that is not None replaced."""
        changes: Dict[str, Any] = {}
        if mode is not None:
            changes["mode"] = mode
        if connect is not None:
            changes["connect"] = _endpoints(connect, "connect")
        if listen is not None:
            changes["listen"] = _endpoints(listen, "listen")
        if multicast is not None:
            changes["multicast"] = multicast
        if config_file is not None:
            changes["config_file"] = config_file
        return replace(self, **changes) if changes else self

    def to_config(self) -> Any:
        """The ``zenoh.Config`` these options describe."""
        zenoh = require("zenoh")
        try:
            if self.config_file is not None:
                config = zenoh.Config.from_file(self.config_file)
            elif os.environ.get("ZENOH_CONFIG"):
                config = zenoh.Config.from_env()
            else:
                config = zenoh.Config()
                # Zenoh's same-host shared memory leaves a file in /dev/shm (RAM on a Pi) each time a process
                # is killed; robots stream between hosts, where it gives nothing. A config file may turn it on.
                config.insert_json5("transport/shared_memory/enabled", "false")
            config.insert_json5("mode", _json(self.mode))
            if self.connect:
                config.insert_json5("connect/endpoints", _json_list(self.connect))
            if self.listen:
                config.insert_json5("listen/endpoints", _json_list(self.listen))
            if self.multicast is not None:
                config.insert_json5("scouting/multicast/enabled", "true" if self.multicast else "false")
        except zenoh.ZError as e:
            raise ValueError(f"invalid Zenoh configuration {self}: {e}") from e
        return config

    def describe(self) -> str:
        parts = [f"mode={self.mode}"]
        if self.connect:
            parts.append(f"connect={list(self.connect)}")
        if self.listen:
            parts.append(f"listen={list(self.listen)}")
        if self.multicast is not None:
            parts.append(f"multicast={'on' if self.multicast else 'off'}")
        if self.config_file:
            parts.append(f"config_file={self.config_file}")
        return ", ".join(parts)


def _json(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _json_list(items: Tuple[str, ...]) -> str:
    return "[" + ",".join(_json(i) for i in items) + "]"


class _Shared:
    __slots__ = ("session", "refs")

    def __init__(self, session: Any) -> None:
        self.session = session
        self.refs = 0


_lock = threading.Lock()
_sessions: Dict[SessionOptions, _Shared] = {}
_default = SessionOptions()


class SessionLease:
    """A claim on a shared session: use ``lease.session``; ``release()`` (idempotent) gives it back, and the
    session closes when the last lease is released."""

    def __init__(self, options: SessionOptions, session: Any) -> None:
        self.options = options
        self.session = session
        self._released = False

    def release(self) -> None:
        with _lock:
            if self._released:
                return
            self._released = True
            shared = _sessions.get(self.options)
            if shared is None or shared.session is not self.session:
                return
            shared.refs -= 1
            if shared.refs > 0:
                return
            del _sessions[self.options]
        log.debug("closing Zenoh session (%s)", self.options.describe())
        self.session.close()


def configure(
    mode: Optional[str] = None,
    connect: Optional[Iterable[str]] = None,
    listen: Optional[Iterable[str]] = None,
    multicast: Optional[bool] = None,
    config_file: Optional[str] = None,
) -> SessionOptions:
    """Sets the session options used by publishers and subscribers that do not pass their own, and returns
    them. Objects created before keep their session::

        configure(mode="client", connect=["tcp/router.local:7447"])
    """
    global _default
    options = SessionOptions().with_overrides(mode, connect, listen, multicast, config_file)
    _default = options
    return options


def default_options() -> SessionOptions:
    """The options ``configure()`` set last (peer mode with LAN discovery if it was never called)."""
    return _default


def acquire_session(options: Optional[SessionOptions] = None) -> SessionLease:
    """Returns a lease on the process's session for ``options`` (default: ``default_options()``), opening
    it if needed. Raises :class:`rtcbot.DeviceOpenError` if Zenoh cannot open it (e.g. the listen port is
    in use)."""
    options = options if options is not None else _default
    with _lock:
        shared = _sessions.get(options)
        if shared is None or shared.session.is_closed():
            zenoh = require("zenoh")
            config = options.to_config()
            try:
                session = zenoh.open(config)
            except zenoh.ZError as e:
                raise DeviceOpenError(
                    f"could not open a Zenoh session ({options.describe()}): {str(e).rstrip('.')}. "
                    "Check that the listen endpoints are free addresses of this host (another program on "
                    "the port?) and that the config file is valid."
                ) from e
            log.debug("opened Zenoh session %s (%s)", session.info.zid(), options.describe())
            shared = _sessions[options] = _Shared(session)
        shared.refs += 1
        return SessionLease(options, shared.session)


def open_session_count() -> int:
    """How many shared sessions are open in this process (0 once every publisher and subscriber closed)."""
    with _lock:
        return len(_sessions)
