"""DevicePool: the session's devices, each opened on first use (simulated, or the configured real one with
``--hw``), kept open for every later test, reopened after a test injected a fault, closed at the end.

The fixtures are thin views of it; ``rtcbot_devices`` gives the pool itself, for a test that must open a
device its own way (it releases the shared one first)::

    def test_camera_can_be_opened_twice(rtcbot_devices):
        source = rtcbot_devices.release("camera")       # the chosen /dev/... path, now free
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
from typing import Any, Callable, Dict, List, Optional, Set, Tuple, Union

from .config import DeviceConfig
from .selection import Selected
from .session_loop import SessionLoop

__all__ = ["DevicePool"]

logger = logging.getLogger("rtcbot.testing.pool")

_OPEN_TIMEOUT = 30.0  # seconds a device may take to be ready (a real Arduino boots, a camera starts)
_DEFAULT_BOARD = "rtcbot.devices.arduino_sim:SimulatedArduino"


def _load(spec: str) -> Any:
    module, _, name = spec.partition(":")
    if not name:
        raise ValueError(f"[tool.rtcbot.hw.serial_board] sim = {spec!r}: expected 'module:Class'")
    return getattr(importlib.import_module(module), name)


class DevicePool:
    """The session's devices, by kind (``camera``, ``microphone``, ``speaker``, ``serial_board``).

    :param loop: the session loop every device is created, used and closed on.
    :param configs: what ``[tool.rtcbot.hw]`` says for each kind.
    :param hw: open the real devices (True) or the simulated ones.
    :param select: finds the real device of a kind (raises DeviceNotFound); see :mod:`.selection`.
    :param workdir: a directory for the simulated board's ``/dev/rtcbot``-like link.
    """

    def __init__(
        self,
        loop: SessionLoop,
        configs: Dict[str, DeviceConfig],
        hw: bool,
        select: Callable[[str], Selected],
        workdir: str,
    ) -> None:
        self.loop = loop
        self.configs = configs
        self.hw = hw
        self.selected = select
        self._workdir = workdir
        self._devices: Dict[str, Any] = {}
        self._room: Any = None
        self._board: Any = None  # the simulated board (a PtyDevice)
        self._board_port: Optional[str] = None
        self._connection: Any = None
        self._faulted: Set[str] = set()

    # -- choosing ----------------------------------------------------------------------------------------
    def settings(self, kind: str) -> Dict[str, Any]:
        return dict(self.configs[kind].settings)

    # -- opening -----------------------------------------------------------------------------------------
    def device(self, kind: str) -> Any:
        """The open camera, microphone or speaker of this kind (opened now if it is not)."""
        device = self._devices.get(kind)
        if device is not None and not device.closed:
            return device
        device = self.loop.call(self._open, kind)
        self._devices[kind] = device
        try:
            self.loop.run(device.onReady(), _OPEN_TIMEOUT)
        except BaseException:
            self._close_device(kind)
            raise
        if device.error is not None:
            error = device.error
            self._close_device(kind)
            raise error
        return device

    def _open(self, kind: str) -> Any:  # on the loop thread
        settings = self.settings(kind)
        if kind == "camera":
            return self._open_camera(settings)
        if kind in ("microphone", "speaker"):
            return self._open_audio(kind, settings)
        raise KeyError(f"no device kind {kind!r}")

    def _open_camera(self, settings: Dict[str, Any]) -> Any:
        size = {k: settings[k] for k in ("width", "height", "fps") if k in settings}
        if not self.hw:
            from .faults import FaultyCamera

            return FaultyCamera(**size)
        target = self.selected("camera").target
        if isinstance(target, str) and target.startswith("csi:"):
            from ..devices.picamera import PiCamera2

            return PiCamera2(cameranumber=int(target[4:]), **size)
        from ..devices.camera import CVCamera

        return CVCamera(cameranumber=target, **size)

    def _open_audio(self, kind: str, settings: Dict[str, Any]) -> Any:
        options: Dict[str, Any] = {k: settings[k] for k in ("channels", "blocksize") if k in settings}
        samplerate = int(settings.get("samplerate", 48000))
        if not self.hw:
            from .faults import FaultyMicrophone
            from .sim_room import RoomSpeaker, SimRoom

            if self._room is None or self._room.samplerate != samplerate:
                self._room = SimRoom(samplerate=samplerate, latency=float(settings.get("sim_latency", 0.03)))
            if kind == "microphone":
                return FaultyMicrophone(self._room, **options)
            return RoomSpeaker(self._room, **options)
        device = self.selected(kind).target
        if kind == "microphone":
            from ..devices.audio import Microphone

            return Microphone(samplerate=samplerate, device=device, **options)
        from ..devices.audio import Speaker

        if "max_latency" in settings:
            options["max_latency"] = settings["max_latency"]
        return Speaker(samplerate=samplerate, device=device, **options)

    # -- the serial board --------------------------------------------------------------------------------
    def serial_options(self) -> Dict[str, Any]:
        """The SerialConnection keyword arguments for the board: ``options`` from the config, else the
        example Arduino's protocol."""
        options = self.settings("serial_board").get("options")
        if options is None:
            from ..devices.arduino_sim import SERIAL_OPTIONS

            return dict(SERIAL_OPTIONS)
        return dict(options)

    def board_port(self) -> str:
        """The board's port: the real one's stable path, or the simulated board's link (started now)."""
        if self.hw:
            return str(self.selected("serial_board").target)
        if self._board is None:
            settings = self.settings("serial_board")
            board_class = _load(settings.get("sim", _DEFAULT_BOARD))
            link = os.path.join(self._workdir, "serial_board")
            self._board = board_class(link=link, **settings.get("sim_options", {}))
            self._board_port = link
        assert self._board_port is not None
        return self._board_port

    def sim_board(self) -> Any:
        """The simulated board (a PtyDevice), or None with ``--hw``."""
        if self.hw:
            return None
        self.board_port()
        return self._board

    def board_description(self) -> str:
        if self.hw:
            return self.selected("serial_board").description
        return type(self.sim_board()).__name__

    def connection(self) -> Any:
        """The session's SerialConnection to the board (opened now if it is not)."""
        if self._connection is not None and not self._connection.closed:
            return self._connection
        port = self.board_port()
        options = self.serial_options()

        def open_connection() -> Any:
            from ..devices.serial import SerialConnection

            return SerialConnection(port, **options)

        self._connection = self.loop.call(open_connection)
        try:
            self.loop.run(self._connection.onReady(), _OPEN_TIMEOUT)
        except BaseException:
            self._close_connection()
            raise
        return self._connection

    # -- faults and release ------------------------------------------------------------------------------
    def faulted(self, kind: str) -> None:
        """A test injected a fault into this kind: it is closed after the test and reopened when needed."""
        self._faulted.add(kind)

    def end_test(self) -> None:
        """Close what a test faulted, so the next test gets a fresh device."""
        faulted, self._faulted = self._faulted, set()
        for kind in faulted:
            self.release(kind)

    def release(self, kind: str) -> Union[str, int, None]:
        """Close the shared device of this kind (the next fixture use reopens it) and return what it was
        opened from with ``--hw`` (a path or PortAudio index; None when simulated)."""
        if kind == "serial_board":
            self._close_board()
        else:
            self._close_device(kind)
        return self.selected(kind).target if self.hw else None

    def _close_device(self, kind: str) -> None:
        device = self._devices.pop(kind, None)
        if device is not None:
            self.loop.call(device.close)

    def _close_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            self.loop.call(connection.close)

    def _close_board(self) -> None:
        self._close_connection()
        board, self._board = self._board, None
        if board is not None:
            board.close()

    def close(self) -> None:
        """Close every device (never raises: a failure is logged)."""
        closers: List[Tuple[str, Callable[[], None]]] = [
            (kind, functools.partial(self._close_device, kind)) for kind in list(self._devices)
        ]
        closers.append(("serial board", self._close_board))
        for what, close in closers:
            try:
                close()
            except Exception as e:  # closing must go on with the other devices
                logger.warning("rtcbot.testing: closing the %s failed: %s", what, e)
