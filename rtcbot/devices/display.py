"""OpenCV windows: :class:`CVDisplay` shows the frames it is given.

::

    import asyncio
    from rtcbot import CVCamera, CVDisplay

    async def main():
        with CVCamera() as camera, CVDisplay("camera") as display:
            display.putSubscription(camera)
            await asyncio.sleep(30)

    asyncio.run(main())

HighGUI must be driven from one thread, and always the same one: OpenCV's Qt backend binds its GUI to the
first thread that opens a window, and a window opened from any other thread later never answers. So every
display of the process hands its frames to one shared GUI thread, started with the first display. It stays
(idle, without waking) when the last display closes, so the next display works, and is stopped and joined
when the interpreter exits.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import os
import sys
import threading
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from rtcbot._deps import require
from rtcbot._ratelimit import EverySoOften
from rtcbot.base import ThreadedSubscriptionConsumer
from rtcbot.errors import DeviceOpenError, InvalidItemError, MissingDependencyError
from rtcbot.subscriptions import MostRecentSubscription

logger = logging.getLogger(__name__)

__all__ = ["CVDisplay"]

_HEADLESS_ADVICE = (
    "CVDisplay needs an OpenCV build with GUI support, and this one has none (opencv-python-headless?). "
    "Install opencv-python instead: pip uninstall opencv-python-headless && pip install opencv-python "
    "(the two clash), or on Raspberry Pi OS / Debian: sudo apt install python3-opencv"
)


class _OpenCVWindows:
    """The window backend the GUI thread drives: OpenCV HighGUI. All methods run on the GUI thread."""

    #: Seconds between event pumps while no frame arrives (windows must be pumped to stay responsive).
    pump_interval: Optional[float] = 1 / 60

    def __init__(self) -> None:
        self._cv2 = require("cv2")

    def check(self) -> None:
        """Raises if windows cannot work at all here (no GUI in the build, no display to show them on)."""
        cv2 = self._cv2
        framework = getattr(cv2, "currentUIFramework", None)
        if framework is not None and not framework():
            raise MissingDependencyError(_HEADLESS_ADVICE)
        has_screen = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
        if sys.platform.startswith("linux") and not has_screen:
            raise DeviceOpenError(
                "CVDisplay has no screen to open a window on: DISPLAY is not set. Run from the desktop, "
                "or over ssh with `ssh -X`, or set DISPLAY=:0 to use the Pi's own screen"
            )

    def open(self, name: str) -> None:
        cv2 = self._cv2
        try:
            cv2.namedWindow(name, cv2.WINDOW_NORMAL)
        except cv2.error as e:
            if "not implemented" in str(e):
                raise MissingDependencyError(_HEADLESS_ADVICE) from e
            raise DeviceOpenError(f"CVDisplay could not open the window {name!r}: {e}") from e

    def show(self, name: str, frame: np.ndarray) -> None:
        self._cv2.imshow(name, frame)

    def user_closed(self, name: str) -> bool:
        """True once the user closed the window with its close button."""
        return self._cv2.getWindowProperty(name, self._cv2.WND_PROP_VISIBLE) < 1

    def close(self, name: str) -> None:
        self._cv2.destroyWindow(name)

    def pump(self) -> None:
        self._cv2.waitKey(1)


#: Makes the window backend when the GUI thread starts (tests swap in a recording backend).
_backend_factory: Callable[[], Any] = _OpenCVWindows


class _Reply:
    """The GUI thread's answer to one request, waited for by the requesting thread."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.error: Optional[BaseException] = None


class _GuiThread:
    """The one thread that owns HighGUI: opens, updates and closes the windows of every CVDisplay.

    Shown frames are coalesced per window (only the newest is drawn), so a slow screen never queues up.
    """

    def __init__(self, backend: Any) -> None:
        self._backend = backend
        self._cond = threading.Condition()
        self._opens: List[Tuple[str, Callable[[], None], _Reply]] = []
        self._frames: Dict[str, np.ndarray] = {}
        self._closes: List[Tuple[str, _Reply]] = []
        self._stopping = False
        self._on_user_close: Dict[str, Callable[[], None]] = {}
        self._thread = threading.Thread(target=self._run, name="rtcbot-CVDisplay-gui", daemon=True)
        self._thread.start()

    # called from display threads -------------------------------------------------------------

    def open(self, name: str, on_user_close: Callable[[], None], timeout: float) -> None:
        reply = _Reply()
        with self._cond:
            self._opens.append((name, on_user_close, reply))
            self._cond.notify()
        self._wait(reply, timeout, f"opening the window {name!r}")

    def show(self, name: str, frame: np.ndarray) -> None:
        with self._cond:
            self._frames[name] = frame
            self._cond.notify()

    def close(self, name: str, timeout: float) -> None:
        reply = _Reply()
        with self._cond:
            self._frames.pop(name, None)
            self._closes.append((name, reply))
            self._cond.notify()
        self._wait(reply, timeout, f"closing the window {name!r}")

    def stop(self, timeout: float) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join(timeout)
        if self._thread.is_alive():
            logger.warning("CVDisplay: the GUI thread did not stop within %.1f s; abandoning it", timeout)

    def _wait(self, reply: _Reply, timeout: float, what: str) -> None:
        if not reply.done.wait(timeout):
            raise DeviceOpenError(f"CVDisplay: the GUI thread did not answer within {timeout:.0f} s {what}")
        if reply.error is not None:
            raise reply.error

    # the GUI thread ----------------------------------------------------------------------------

    def _run(self) -> None:
        backend = self._backend
        while True:
            with self._cond:
                if not (self._opens or self._frames or self._closes or self._stopping):
                    self._cond.wait(backend.pump_interval if self._on_user_close else None)
                opens, self._opens = self._opens, []
                frames, self._frames = self._frames, {}
                closes, self._closes = self._closes, []
                stopping = self._stopping
            for name, on_user_close, reply in opens:
                self._answer(reply, self._open_window, name, on_user_close)
            for name, frame in frames.items():
                if name in self._on_user_close:
                    self._guarded("showing a frame in", name, backend.show, name, frame)
            for name, reply in closes:
                self._answer(reply, self._close_window, name)
            if self._on_user_close or closes:  # a destroyed window disappears at the next pump
                self._guarded("pumping events for", "the windows", backend.pump)
                for name, on_user_close in list(self._on_user_close.items()):
                    if self._guarded("checking", name, backend.user_closed, name):
                        logger.info("CVDisplay: the window %r was closed by its user", name)
                        del self._on_user_close[name]
                        on_user_close()
            if stopping:
                for name in list(self._on_user_close):
                    self._close_window(name)
                return

    def _open_window(self, name: str, on_user_close: Callable[[], None]) -> None:
        self._backend.open(name)
        self._on_user_close[name] = on_user_close

    def _close_window(self, name: str) -> None:
        self._on_user_close.pop(name, None)
        self._guarded("closing", name, self._backend.close, name)

    @staticmethod
    def _answer(reply: _Reply, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception as e:  # handed to the thread that asked, which raises it
            reply.error = e
        finally:
            reply.done.set()

    @staticmethod
    def _guarded(what: str, name: str, fn: Callable[..., Any], *args: Any) -> Any:
        # A window that misbehaves must not take the other displays' GUI thread down with it.
        try:
            return fn(*args)
        except Exception:
            logger.exception("CVDisplay: %s %r failed", what, name)
            return None


class _GuiManager:
    """Starts the GUI thread for the first display and keeps it for the process (see the module docstring);
    :meth:`shutdown` (at interpreter exit) stops and joins it."""

    timeout = 5.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._gui: Optional[_GuiThread] = None
        self._names: Dict[str, int] = {}
        self._exit_hook = False

    def acquire(self, name: str, on_user_close: Callable[[], None]) -> _GuiThread:
        with self._lock:
            if name in self._names:
                raise ValueError(f"a CVDisplay with the window name {name!r} is already open; pick another")
            if self._gui is None:
                backend = _backend_factory()
                backend.check()
                self._gui = _GuiThread(backend)
                if not self._exit_hook:
                    atexit.register(self.shutdown)
                    self._exit_hook = True
            gui = self._gui
            self._names[name] = 1
        try:
            gui.open(name, on_user_close, self.timeout)
        except BaseException:
            self._forget(name)
            raise
        return gui

    def release(self, name: str) -> None:
        with self._lock:
            gui = self._gui
        if gui is None or name not in self._names:
            return
        try:
            gui.close(name, self.timeout)
        finally:
            self._forget(name)

    def _forget(self, name: str) -> None:
        with self._lock:
            self._names.pop(name, None)

    def shutdown(self) -> None:
        """Stop and join the GUI thread (closing any window still open). Runs at interpreter exit."""
        with self._lock:
            gui, self._gui = self._gui, None
            self._names.clear()
        if gui is not None:
            gui.stop(self.timeout)

    @property
    def running(self) -> bool:
        with self._lock:
            return self._gui is not None


_manager = _GuiManager()
_numbers = itertools.count(1)


#: Pixel types HighGUI shows: 8-bit as is, 16-bit divided by 256, floats (0..1) multiplied by 255.
_SHOWN_DTYPES = (np.uint8, np.uint16, np.float32, np.float64)


def _check_frame(name: str, frame: Any) -> np.ndarray:
    """``frame`` as HighGUI can show it (a bool mask becomes black and white uint8); InvalidItemError if no
    window could show it, raised before it reaches the GUI thread."""
    if not isinstance(frame, np.ndarray):
        raise InvalidItemError(f"CVDisplay {name!r} shows numpy images, got a {type(frame).__name__}")
    if not (frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] in (1, 3, 4))) or frame.size == 0:
        raise InvalidItemError(
            f"CVDisplay {name!r} shows (height, width) or (height, width, 1|3|4) images, got shape {frame.shape}"
        )
    if frame.dtype == np.bool_:
        return frame.view(np.uint8) * np.uint8(255)
    if frame.dtype not in _SHOWN_DTYPES:
        raise InvalidItemError(
            f"CVDisplay {name!r} shows uint8, uint16, float32 or float64 images (or bool masks), got {frame.dtype}: "
            "convert it, e.g. np.clip(frame, 0, 255).astype(np.uint8)"
        )
    return frame


class CVDisplay(ThreadedSubscriptionConsumer):
    """A window showing the frames it is given (BGR, as cameras deliver them), one window per display.

    ::

        display = CVDisplay("front camera")
        display.putSubscription(camera)        # show the camera's frames
        display.put_nowait(frame)              # or show one frame

    ``name`` is the window title (default ``"rtcbot 1"``, ``"rtcbot 2"``...). Only the newest frame is drawn
    when frames come faster than the screen. Closing the window with its close button closes the display.
    Construction fails with :class:`~rtcbot.MissingDependencyError` on an OpenCV build without GUI support
    (``opencv-python-headless``) and with :class:`~rtcbot.DeviceOpenError` when there is no screen (DISPLAY
    unset). Images are uint8 (as cameras give them), uint16, or float32/float64 in 0..1; a bool mask is shown
    black and white. ``put_nowait`` of anything else raises :class:`~rtcbot.InvalidItemError` (an int64 array
    too: convert it); such an item from a subscription is logged, counted in ``skipped``, and the display
    goes on.
    """

    def __init__(self, name: Optional[str] = None, loop: Any = None) -> None:
        self._window = name if name is not None else f"rtcbot {next(_numbers)}"
        self._gui = _manager.acquire(self._window, self._close)
        try:
            super().__init__(directPutSubscriptionType=MostRecentSubscription, logger=logger, loop=loop)
        except BaseException:
            _manager.release(self._window)
            raise

    skipped = 0  # items from a subscription that were not images

    @property
    def name(self) -> str:
        """The window's title."""
        return self._window

    def put_nowait(self, data: Any) -> None:
        """Show ``data`` next; InvalidItemError (a ValueError) if it is not an image a window can show."""
        super().put_nowait(_check_frame(self._window, data))

    def _consumer(self) -> None:
        bad_items = EverySoOften(logger)
        try:
            self._setReady(True)
            while True:
                item = self._get()
                try:
                    frame = _check_frame(self._window, item)
                except InvalidItemError as e:
                    self.skipped += 1
                    bad_items.warning("%s; skipped", e)
                    continue
                self._gui.show(self._window, frame)
        finally:
            _manager.release(self._window)
