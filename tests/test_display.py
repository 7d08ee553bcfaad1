"""CVDisplay: the clear error on a headless OpenCV (this machine's), and frame routing through the shared
GUI thread with a recording window backend in place of HighGUI."""
from __future__ import annotations

import asyncio
import threading
from typing import Dict, List, Optional

import numpy as np
import pytest

from rtcbot import InvalidItemError, MissingDependencyError
from rtcbot.devices import display as display_module
from rtcbot.devices.display import CVDisplay
from tests.helpers import run

cv2 = pytest.importorskip("cv2")
WAIT = 5.0


def gui_threads() -> List[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "rtcbot-CVDisplay-gui"]


class RecordingWindows:
    """A window backend that records what the GUI thread does, and lets a test click a close button."""

    pump_interval: Optional[float] = 0.01

    def __init__(self) -> None:
        self.threads: set = set()
        self.opened: List[str] = []
        self.closed: List[str] = []
        self.shown: Dict[str, List[np.ndarray]] = {}
        self.user_closes: set = set()
        self.changed = threading.Condition()

    def _note(self) -> None:
        self.threads.add(threading.current_thread().name)

    def check(self) -> None:  # runs in the constructing thread: it must not touch windows
        pass

    def open(self, name: str) -> None:
        self._note()
        self.opened.append(name)
        self.shown[name] = []

    def show(self, name: str, frame: np.ndarray) -> None:
        self._note()
        with self.changed:
            self.shown[name].append(frame)
            self.changed.notify_all()

    def user_closed(self, name: str) -> bool:
        return name in self.user_closes

    def close(self, name: str) -> None:
        self._note()
        self.closed.append(name)

    def pump(self) -> None:
        self._note()

    def wait_shown(self, name: str, count: int) -> List[np.ndarray]:
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.shown[name]) >= count, WAIT), self.shown
            return list(self.shown[name])


class ThreadBoundWindows(RecordingWindows):
    """Like OpenCV's Qt backend: the GUI belongs to the first thread that used it, and a call from any other
    thread never gets an answer (here: it raises, so the test need not wait for a timeout)."""

    def __init__(self) -> None:
        super().__init__()
        self.owner: Optional[threading.Thread] = None

    def _note(self) -> None:
        if self.owner is None:
            self.owner = threading.current_thread()
        if threading.current_thread() is not self.owner:
            raise RuntimeError("HighGUI used from a second thread: Qt would never answer")
        super()._note()


@pytest.fixture(autouse=True)
def fresh_gui_thread():
    """Each test starts as a fresh process would: no GUI thread yet (another test file may have left the
    process-wide one running, bound to its own fake backend)."""
    display_module._manager.shutdown()


@pytest.fixture(params=[RecordingWindows, ThreadBoundWindows], ids=["windows", "qt-like"])
def windows(request, monkeypatch, no_leaks):
    """A recording window backend in place of HighGUI (also one bound to its first thread, like Qt's). The
    GUI thread lives for the process, as with HighGUI; here it is stopped and joined after each test
    (before ``no_leaks`` looks for threads left behind)."""
    backend = request.param()
    monkeypatch.setattr(display_module, "_backend_factory", lambda: backend)
    yield backend
    display_module._manager.shutdown()


def image(value: int) -> np.ndarray:
    return np.full((4, 6, 3), value, np.uint8)


def test_a_headless_opencv_raises_a_clear_error_saying_what_to_install(no_leaks):
    if cv2.currentUIFramework():
        pytest.skip("this OpenCV has GUI support")

    async def main():
        with pytest.raises(MissingDependencyError) as info:
            CVDisplay()
        return str(info.value)

    message = run(main())
    assert "pip install opencv-python" in message and "opencv-python-headless" in message
    assert "python3-opencv" in message
    assert not gui_threads()


def test_frames_go_to_their_own_window(windows, no_leaks):
    async def main():
        with CVDisplay("left") as left, CVDisplay("right") as right:
            left.put_nowait(image(10))
            right.put_nowait(image(20))
            shown_left = await asyncio.to_thread(windows.wait_shown, "left", 1)
            shown_right = await asyncio.to_thread(windows.wait_shown, "right", 1)
        return shown_left, shown_right

    shown_left, shown_right = run(main())
    assert [int(f[0, 0, 0]) for f in shown_left] == [10]
    assert [int(f[0, 0, 0]) for f in shown_right] == [20]
    assert windows.opened == ["left", "right"] and sorted(windows.closed) == ["left", "right"]


def test_all_displays_share_one_gui_thread_that_is_joined_at_shutdown(windows, no_leaks):
    async def main():
        first, second = CVDisplay("a"), CVDisplay("b")
        first.put_nowait(image(1))
        second.put_nowait(image(2))
        await asyncio.to_thread(windows.wait_shown, "a", 1)
        await asyncio.to_thread(windows.wait_shown, "b", 1)
        assert len(gui_threads()) == 1
        first.close()
        assert len(gui_threads()) == 1, "the GUI thread must stay while a display is open"
        second.close()

    run(main())
    assert windows.threads == {"rtcbot-CVDisplay-gui"}, "HighGUI must only be called from the GUI thread"
    display_module._manager.shutdown()  # what the interpreter's exit does
    assert not gui_threads()


def test_a_display_opened_after_the_last_one_closed_uses_the_same_gui_thread(windows, no_leaks):
    async def main():
        with CVDisplay("first") as first:
            first.put_nowait(image(1))
            await asyncio.to_thread(windows.wait_shown, "first", 1)
        with CVDisplay("second") as second:  # Qt: a new GUI thread here would never get an answer
            second.put_nowait(image(2))
            return await asyncio.to_thread(windows.wait_shown, "second", 1)

    [frame] = run(main())
    assert int(frame[0, 0, 0]) == 2
    assert windows.opened == ["first", "second"] and windows.closed == ["first", "second"]
    assert windows.threads == {"rtcbot-CVDisplay-gui"} and len(gui_threads()) == 1


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.int8, np.float16, np.complex64])
def test_an_image_of_a_type_no_window_shows_raises_invalid_item_at_put(windows, no_leaks, dtype):
    async def main():
        with CVDisplay("types") as display:
            with pytest.raises(InvalidItemError) as info:
                display.put_nowait(np.zeros((4, 6, 3), dtype))
            display.put_nowait(image(9))  # the display goes on
            return str(info.value), await asyncio.to_thread(windows.wait_shown, "types", 1)

    message, shown = run(main())
    assert np.dtype(dtype).name in message and "astype(np.uint8)" in message
    assert [f.dtype for f in shown] == [np.uint8]


def test_a_bool_mask_is_shown_black_and_white(windows, no_leaks):
    mask = np.zeros((4, 6), bool)
    mask[1:3, 2:4] = True

    async def main():
        with CVDisplay("mask") as display:
            display.put_nowait(mask)
            return await asyncio.to_thread(windows.wait_shown, "mask", 1)

    [shown] = run(main())
    assert shown.dtype == np.uint8 and set(np.unique(shown)) == {0, 255}
    assert np.array_equal(shown == 255, mask)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64])
def test_images_of_the_types_highgui_shows_are_accepted(windows, no_leaks, dtype):
    async def main():
        with CVDisplay("ok") as display:
            display.put_nowait(np.zeros((4, 6, 3), dtype))
            return await asyncio.to_thread(windows.wait_shown, "ok", 1)

    [shown] = run(main())
    assert shown.dtype == dtype


def test_a_display_shows_the_frames_of_a_subscription(windows, no_leaks):
    async def main():
        frames: asyncio.Queue = asyncio.Queue()
        with CVDisplay("sub") as display:
            display.putSubscription(frames)
            for value in (5, 6, 7):
                frames.put_nowait(image(value))
                await asyncio.to_thread(windows.wait_shown, "sub", value - 4)
            return windows.shown["sub"]

    assert [int(f[0, 0, 0]) for f in run(main())] == [5, 6, 7]


def test_default_names_are_distinct(windows, no_leaks):
    async def main():
        with CVDisplay() as one, CVDisplay() as two:
            return one.name, two.name

    one, two = run(main())
    assert one != two and one.startswith("rtcbot")


def test_two_displays_cannot_share_a_window_name(windows, no_leaks):
    async def main():
        with CVDisplay("same"):
            with pytest.raises(ValueError, match="already open"):
                CVDisplay("same")

    run(main())


def test_closing_the_window_closes_the_display(windows, no_leaks):
    async def main():
        display = CVDisplay("closeme")
        windows.user_closes.add("closeme")
        await asyncio.wait_for(display.onClose(), WAIT)
        return display

    display = run(main())
    assert display.closed and display.error is None


def test_an_item_that_is_not_an_image_raises_invalid_item_at_put(windows, no_leaks):
    async def main():
        with CVDisplay("bad") as display:
            with pytest.raises(InvalidItemError) as info:
                display.put_nowait("not a frame")
            return info.value, display.error

    err, error = run(main())
    assert "'bad'" in str(err) and "str" in str(err) and error is None


def test_a_bad_item_from_a_subscription_is_skipped_and_counted(windows, no_leaks):
    async def main():
        with CVDisplay("from a queue") as display:
            q = asyncio.Queue()
            display.putSubscription(q)
            q.put_nowait("not a frame")
            q.put_nowait(np.zeros((4, 6, 3), np.uint8))
            await asyncio.to_thread(windows.wait_shown, "from a queue", 1)
            return display.skipped, display.error

    skipped, error = run(main())
    assert skipped == 1 and error is None
