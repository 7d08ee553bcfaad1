"""Fault injection on the simulated devices: unplug the serial board, stall or lose the camera, overflow
the microphone, so the robot's recovery code is tested off the robot.

The ``rtcbot_faults`` fixture hands out one injector per device kind, acting on the very devices the
``rtcbot_*`` fixtures give; after the test the plugin replugs, resumes or reopens what was faulted::

    def test_robot_stops_when_the_board_is_unplugged(rtcbot_run, rtcbot_serial_board, rtcbot_faults):
        async def main():
            with rtcbot_faults.serial_board.unplugged():
                await asyncio.wait_for(rtcbot_serial_board.connection.wait_port(present=False), 5)
                ...                                           # the robot noticed and stopped
            await asyncio.wait_for(rtcbot_serial_board.connection.wait_port(), 5)

        rtcbot_run(main())

On real hardware (``--hw``) there is nothing to inject into: using an injector skips the test, saying so.

The simulated devices in :mod:`rtcbot.devices` have no fault hooks of their own; the classes here add them
with the devices' public hooks (``preprocessframe``, the base layer's ``_put_nowait``/``_wait_closed``).
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Callable, Iterator, Optional

from ..devices.camera import Frame
from ..devices.sim import SimCamera
from ..errors import DeviceLostError
from .sim_room import RoomMicrophone, SimRoom

__all__ = [
    "CameraFaults",
    "Faults",
    "FaultyCamera",
    "FaultyMicrophone",
    "MicrophoneFaults",
    "NoFaults",
    "SerialBoardFaults",
]

# A SimMicrophone counts an overflow when its worker falls more than half a second behind.
_OVERFLOW_STALL = 0.8


class FaultyCamera(SimCamera):
    """A :class:`~rtcbot.SimCamera` that can stall, drop frames or vanish on request (see :class:`CameraFaults`).

    All the faults act in the capture thread, through the camera's ``preprocessframe`` hook: a stall holds
    the thread (frames stop, then resume with a gap in ``index``), a vanish raises DeviceLostError there
    (``onError`` fires and the camera closes, as a CVCamera whose device was unplugged).
    """

    def __init__(
        self,
        width: int = 320,
        height: int = 240,
        fps: float = 30,
        preprocessframe: Callable[[Frame], Any] = lambda x: x,
        **kwargs: Any,
    ) -> None:
        self._fault_lock = threading.Lock()
        self._stall_seconds: Optional[float] = None
        self._frozen = False
        self._resume = threading.Event()
        self._drop_next = 0
        self._vanish = False
        self.stalls = 0  # stalls that happened (the test can wait for one to start via stalled)
        self.stalled = threading.Event()
        self._user_preprocess = preprocessframe
        super().__init__(width, height, fps, preprocessframe=self._inject, **kwargs)

    def _inject(self, frame: Frame) -> Any:
        with self._fault_lock:
            vanish, self._vanish = self._vanish, False
            stall, self._stall_seconds = self._stall_seconds, None
            frozen = self._frozen
            drop = self._drop_next > 0
            if drop:
                self._drop_next -= 1
        if vanish:
            raise DeviceLostError(f"{self.describe()} vanished (fault injected by rtcbot.testing)")
        if stall is not None or frozen:
            self.stalls += 1
            self.stalled.set()
            if frozen:
                self._resume.wait()
            else:
                self._wait_closed(stall)
            self.stalled.clear()
            return None  # the frame captured before the stall is stale: a stalled driver never delivers it
        if drop:
            return None
        return self._user_preprocess(frame)

    def stall(self, seconds: float) -> None:
        """The next frame is held ``seconds`` and then discarded: a gap in the stream."""
        with self._fault_lock:
            self._stall_seconds = float(seconds)

    def freeze(self) -> None:
        """Frames stop until :meth:`resume` (or close)."""
        with self._fault_lock:
            self._resume.clear()
            self._frozen = True

    def resume(self) -> None:
        with self._fault_lock:
            self._frozen = False
            self._resume.set()

    def drop(self, frames: int) -> None:
        """The next ``frames`` frames are captured and lost (``index`` jumps by that much)."""
        with self._fault_lock:
            self._drop_next += int(frames)

    def vanish(self) -> None:
        """The camera is lost at its next frame: onError(DeviceLostError), then it closes."""
        with self._fault_lock:
            self._vanish = True

    def close(self) -> None:
        self.resume()  # a frozen capture thread must see the close
        super().close()


class CameraFaults:
    """Faults for a :class:`FaultyCamera` (the simulated ``rtcbot_camera``)::

    rtcbot_faults.camera.stall(1.0)     # no frame for a second, then frames again (index jumps)
    rtcbot_faults.camera.freeze()       # no frame until resume()
    rtcbot_faults.camera.drop(5)        # the next 5 frames are lost
    rtcbot_faults.camera.vanish()       # DeviceLostError: onError fires, the camera closes
    """

    def __init__(self, camera: FaultyCamera, on_fault: Callable[[], None] = lambda: None) -> None:
        self.camera = camera
        self._on_fault = on_fault

    def stall(self, seconds: float) -> None:
        """The next frame is held ``seconds`` and then discarded: a gap in the stream."""
        self._on_fault()
        self.camera.stall(seconds)

    def freeze(self) -> None:
        """Frames stop until :meth:`resume` (or the camera closes)."""
        self._on_fault()
        self.camera.freeze()

    def resume(self) -> None:
        self.camera.resume()

    def drop(self, frames: int) -> None:
        """The next ``frames`` frames are captured and lost (``index`` jumps by that much)."""
        self._on_fault()
        self.camera.drop(frames)

    def vanish(self) -> None:
        """The camera is lost at its next frame: onError(DeviceLostError), then it closes."""
        self._on_fault()
        self.camera.vanish()


class FaultyMicrophone(RoomMicrophone):
    """A :class:`~rtcbot.testing.sim_room.RoomMicrophone` whose worker can be made late (an input overflow:
    ``overflows`` grows, the audio of that time is lost) or lose its device."""

    def __init__(self, room: SimRoom, **kwargs: Any) -> None:
        self._fault_lock = threading.Lock()
        self._stall_seconds: Optional[float] = None
        self._vanish = False
        super().__init__(room, **kwargs)

    def _put_nowait(self, element: Any) -> None:
        with self._fault_lock:
            stall, self._stall_seconds = self._stall_seconds, None
            vanish, self._vanish = self._vanish, False
        if vanish:
            raise DeviceLostError(f"{self.device_name} vanished (fault injected by rtcbot.testing)")
        super()._put_nowait(element)
        if stall is not None:
            self._wait_closed(stall)  # the worker is late: the next block finds its deadline long past

    def overflow(self, seconds: float = _OVERFLOW_STALL) -> None:
        """The worker falls behind once by ``seconds``: past half a second, an input overflow."""
        with self._fault_lock:
            self._stall_seconds = float(seconds)

    def vanish(self) -> None:
        """The microphone is lost at its next block: onError(DeviceLostError), then it closes."""
        with self._fault_lock:
            self._vanish = True


class MicrophoneFaults:
    """Faults for the simulated ``rtcbot_microphone``::

    rtcbot_faults.microphone.overflow()   # audio is lost; microphone.overflows grows by one
    rtcbot_faults.microphone.vanish()     # DeviceLostError: onError fires, the microphone closes
    """

    def __init__(self, microphone: FaultyMicrophone, on_fault: Callable[[], None] = lambda: None) -> None:
        self.microphone = microphone
        self._on_fault = on_fault

    def overflow(self) -> None:
        """The worker falls behind once, long enough for an input overflow (about 0.8 s of audio lost)."""
        self._on_fault()
        self.microphone.overflow()

    def vanish(self) -> None:
        self._on_fault()
        self.microphone.vanish()


class SerialBoardFaults:
    """Faults for the simulated serial board (a :class:`~rtcbot.devices.arduino_sim.PtyDevice` behind a
    ``/dev/rtcbot``-like symlink, so the port vanishes and comes back at the same path)::

    rtcbot_faults.serial_board.unplug()
    rtcbot_faults.serial_board.replug()
    with rtcbot_faults.serial_board.unplugged():
        ...
    """

    def __init__(self, board: Any, on_fault: Callable[[], None] = lambda: None) -> None:
        self.board = board
        self._on_fault = on_fault

    def unplug(self) -> None:
        """The cable comes out: the pty closes (reads fail) and the port's path disappears."""
        self._on_fault()
        self.board.unplug()

    def replug(self) -> None:
        """The cable goes back in: the same path, a fresh board (it boots, as an Arduino resets)."""
        self.board.replug()

    @contextlib.contextmanager
    def unplugged(self) -> Iterator[None]:
        self.unplug()
        try:
            yield
        finally:
            self.replug()


class NoFaults:
    """What ``rtcbot_faults.<kind>`` is on real hardware: any use skips the test, saying why."""

    def __init__(self, kind: str) -> None:
        self._kind = kind

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        import pytest

        pytest.skip(
            f"fault injection ({name}) needs the simulated {self._kind.replace('_', ' ')}; "
            "this run uses the real one (--hw)"
        )


class Faults:
    """What the ``rtcbot_faults`` fixture gives: an injector per kind, acting on the pool's devices (opened
    if they were not), each device marked to be reopened fresh after the test."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool

    def _faulted(self, kind: str) -> Callable[[], None]:
        return lambda: self._pool.faulted(kind)

    @property
    def camera(self) -> Any:
        if self._pool.hw:
            return NoFaults("camera")
        return CameraFaults(self._pool.device("camera"), self._faulted("camera"))

    @property
    def microphone(self) -> Any:
        if self._pool.hw:
            return NoFaults("microphone")
        return MicrophoneFaults(self._pool.device("microphone"), self._faulted("microphone"))

    @property
    def serial_board(self) -> Any:
        if self._pool.hw:
            return NoFaults("serial board")
        return SerialBoardFaults(self._pool.sim_board(), self._faulted("serial_board"))
