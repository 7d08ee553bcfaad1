"""CVCamera on real OpenCV, reading small MJPG files generated per test (no camera needed)."""
from __future__ import annotations

import asyncio
import pickle
import threading
import time
from pathlib import Path
from typing import Any, Awaitable, List

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from rtcbot import DeviceLostError, DeviceOpenError  # noqa: E402
from rtcbot.devices import camera as camera_module  # noqa: E402
from rtcbot.devices.camera import CVCamera, Frame  # noqa: E402

WIDTH, HEIGHT = 64, 48
WAIT = 10.0  # seconds any single await may take before the test fails


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


# --------------------------------------------------------------------------------------------- video files


def index_image(i: int, width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """A frame whose two grey halves spell ``i`` (high and low base-16 digits): grey survives JPEG."""
    image = np.zeros((height, width, 3), np.uint8)
    image[:, : width // 2] = (i // 16) * 16 + 8
    image[:, width // 2 :] = (i % 16) * 16 + 8
    return image


def decode_index(frame: np.ndarray) -> int:
    h, w = frame.shape[:2]
    left = frame[h // 6 : -h // 6, w // 16 : w // 2 - w // 16].mean()
    right = frame[h // 6 : -h // 6, w // 2 + w // 16 : -w // 16].mean()
    return int(round((left - 8) / 16)) * 16 + int(round((right - 8) / 16))


def write_video(path: Path, images: List[np.ndarray], fps: float) -> Path:
    h, w = images[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, (w, h))
    assert writer.isOpened(), "this OpenCV build cannot write MJPG AVI files"
    for image in images:
        writer.write(image)
    writer.release()
    return path


@pytest.fixture
def video(tmp_path: Path):
    """``video(frames, fps)`` writes an AVI whose frame i shows the index i."""

    def make(frames: int = 20, fps: float = 30, width: int = WIDTH, height: int = HEIGHT) -> str:
        path = tmp_path / f"index-{frames}-{fps}-{width}x{height}.avi"
        return str(write_video(path, [index_image(i, width, height) for i in range(frames)], fps))

    return make


async def collect_until_closed(camera: CVCamera) -> List[Frame]:
    """Every frame of a camera that closes by itself (end of file), in delivery order."""
    frames: asyncio.Queue = camera.subscribe(asyncio.Queue())
    await asyncio.wait_for(camera.onClose(), WAIT)
    out = []
    while not frames.empty():
        out.append(frames.get_nowait())
    return out


def camera_threads() -> List[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("rtcbot-CVCamera")]


# --------------------------------------------------------------------------------------------- frames


def test_frames_are_bgr_uint8_arrays_of_the_files_size(video):
    async def main():
        with CVCamera(cameranumber=video(5), pace=False) as camera:
            frame = await asyncio.wait_for(camera.get(), WAIT)
            assert (camera.width, camera.height) == (WIDTH, HEIGHT)
        return frame

    frame = run(main())
    assert isinstance(frame, np.ndarray) and isinstance(frame, Frame)
    assert frame.shape == (HEIGHT, WIDTH, 3) and frame.dtype == np.uint8


def test_frames_arrive_in_file_order_with_consecutive_indices(video):
    async def main():
        camera = CVCamera(cameranumber=video(20), pace=False)
        return await collect_until_closed(camera)

    frames = run(main())
    assert [decode_index(f) for f in frames] == list(range(20))
    assert [f.index for f in frames] == list(range(20))


def test_an_unpaced_file_whose_frame_count_is_no_multiple_of_the_batch_delivers_its_last_frames(video):
    """Unpaced, frames reach the loop in groups of four: the last three of seven wait in the hand-off and
    must go out with the end of the file, before onClose, not be lost."""

    async def main():
        camera = CVCamera(cameranumber=video(7), pace=False)
        return await collect_until_closed(camera)

    assert [f.index for f in run(main())] == list(range(7))


def test_an_unpaced_file_whose_preprocessframe_waits_for_the_reader_does_not_stall(video):
    """A preprocessframe in lockstep with the reader (it waits until the reader has the previous frame)
    is quick enough for frames to be handed over in groups; the frame held for its group must still reach
    the reader (within the hand-off's 10 ms bound), or both would wait for each other forever."""
    received = threading.Semaphore(0)
    stalled: List[int] = []

    def lockstep(frame: Frame) -> Frame:
        if frame.index > 0 and not received.acquire(timeout=WAIT):
            stalled.append(frame.index)
        return frame

    async def main():
        camera = CVCamera(cameranumber=video(20), pace=False, preprocessframe=lockstep)
        camera.subscribe(lambda frame: received.release())
        await asyncio.wait_for(camera.onClose(), 2 * WAIT)
        return camera.frame_count

    assert run(main()) == 20 and stalled == []


def test_an_unpaced_frame_before_an_error_is_delivered_before_on_error(video):
    """A frame held in the hand-off (unpaced groups) reaches subscribers before the error that followed it."""
    order: List[Any] = []

    def fail_on_third(frame: Frame) -> Frame:
        if frame.index == 2:
            raise ValueError("third frame")
        return frame

    async def main():
        camera = CVCamera(cameranumber=video(10), pace=False, preprocessframe=fail_on_third)
        camera.subscribe(lambda frame: order.append(frame.index))
        err = await asyncio.wait_for(camera.onError(), WAIT)
        order.append("error")
        await asyncio.wait_for(camera.onClose(), WAIT)
        return err

    assert isinstance(run(main()), ValueError)
    assert order == [0, 1, "error"]


def test_colour_order_is_bgr(tmp_path: Path):
    red, green, blue = (np.zeros((HEIGHT, WIDTH, 3), np.uint8) for _ in range(3))
    red[..., 2] = 255
    green[..., 1] = 255
    blue[..., 0] = 255
    path = write_video(tmp_path / "rgb.avi", [red, green, blue], 30)

    async def main():
        return await collect_until_closed(CVCamera(cameranumber=str(path), pace=False))

    frames = run(main())
    assert len(frames) == 3
    for frame, channel in zip(frames, (2, 1, 0)):  # red is channel 2 in BGR
        means = frame.reshape(-1, 3).mean(axis=0)
        assert means[channel] > 200, means
        assert all(means[c] < 50 for c in range(3) if c != channel), means


def test_timestamps_are_monotonic_capture_times(video):
    async def main():
        before = time.monotonic()
        camera = CVCamera(cameranumber=video(10), pace=False)
        frames = await collect_until_closed(camera)
        return before, frames, time.monotonic()

    before, frames, after = run(main())
    stamps = [f.timestamp for f in frames]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    assert before <= stamps[0] and stamps[-1] <= after


def test_a_file_is_played_at_its_own_frame_rate(video):
    async def main():
        camera = CVCamera(cameranumber=video(16, fps=40))
        return await collect_until_closed(camera)

    frames = run(main())
    assert len(frames) == 16
    span = frames[-1].timestamp - frames[0].timestamp
    assert span >= 15 / 40 * 0.9, f"16 frames of a 40 fps file took {span:.3f} s"
    assert span < 15 / 40 * 4, f"16 frames of a 40 fps file took {span:.3f} s"


def test_reported_fps_is_the_files_frame_rate(video):
    async def main():
        with CVCamera(cameranumber=video(3, fps=25), fps=30, pace=False) as camera:
            return camera.fps

    assert run(main()) == pytest.approx(25)


# --------------------------------------------------------------------------------------------- Frame


def test_frame_metadata_survives_slicing_copies_and_pickling():
    frame = Frame(index_image(3), timestamp=12.5, index=3)
    for derived in (frame[10:20, 5:15], frame.copy(), frame + 1, pickle.loads(pickle.dumps(frame))):
        assert isinstance(derived, Frame)
        assert (derived.timestamp, derived.index) == (12.5, 3)
    assert type(frame.mean()) is not Frame and float(frame.mean()) == pytest.approx(index_image(3).mean())


def test_opencv_and_asarray_give_plain_arrays():
    frame = Frame(index_image(3), timestamp=12.5, index=3)
    gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    assert type(gray) is np.ndarray and gray.shape == (HEIGHT, WIDTH)
    plain = np.asarray(frame)
    assert type(plain) is np.ndarray and np.shares_memory(plain, frame)


# ----------------------------------------------------------------------------------------- preprocessframe


def test_preprocessframe_runs_in_the_capture_thread_and_its_output_is_delivered(video):
    threads = []

    def half(frame):
        threads.append(threading.current_thread())
        return cv2.resize(frame, (WIDTH // 2, HEIGHT // 2))  # a plain ndarray

    async def main():
        camera = CVCamera(cameranumber=video(4), pace=False, preprocessframe=half)
        return await collect_until_closed(camera)

    frames = run(main())
    assert [f.shape for f in frames] == [(HEIGHT // 2, WIDTH // 2, 3)] * 4
    assert [f.index for f in frames] == [0, 1, 2, 3] and all(f.timestamp is not None for f in frames)
    assert threads and all(t is not threading.main_thread() for t in threads)


def test_preprocessframe_returning_none_skips_the_frame(video):
    async def main():
        odd_only = lambda f: f if f.index % 2 else None  # noqa: E731
        camera = CVCamera(cameranumber=video(6), pace=False, preprocessframe=odd_only)
        return await collect_until_closed(camera)

    assert [f.index for f in run(main())] == [1, 3, 5]


def test_an_exception_in_preprocessframe_fires_on_error_with_it(video, no_leaks):
    class Boom(Exception):
        pass

    def explode(frame):
        raise Boom("preprocess failed")

    async def main():
        camera = CVCamera(cameranumber=video(30), preprocessframe=explode)
        err = await asyncio.wait_for(camera.onError(), WAIT)
        await asyncio.wait_for(camera.onClose(), WAIT)
        return err, camera

    err, camera = run(main())
    assert isinstance(err, Boom) and camera.error is err and camera.closed


# --------------------------------------------------------------------------------------------- lifetime


def test_ready_fires_once_the_first_frame_arrived(video):
    async def main():
        got: List[Frame] = []
        camera = CVCamera(cameranumber=video(30))
        camera.subscribe(got.append)
        assert not camera.ready
        await asyncio.wait_for(camera.onReady(), WAIT)
        count = camera.frame_count
        camera.close()
        return count

    assert run(main()) >= 1


def test_a_slow_reader_gets_the_newest_frame(video):
    async def main():
        ages = []
        with CVCamera(cameranumber=video(60, fps=30)) as camera:
            for _ in range(5):
                frame = await asyncio.wait_for(camera.get(), WAIT)
                ages.append(camera.frame_count - 1 - frame.index)
                await asyncio.sleep(0.1)  # the reader's own slow work, three frames long
        return ages

    ages = run(main())
    assert max(ages) <= 1, ages


def test_the_end_of_a_file_closes_the_camera_without_error(video, no_leaks):
    async def main():
        camera = CVCamera(cameranumber=video(5), pace=False)
        await asyncio.wait_for(camera, WAIT)
        return camera

    camera = run(main())
    assert camera.closed and camera.error is None and camera.frame_count == 5
    assert not camera_threads()


def test_repeat_plays_the_file_again_with_indices_going_on(video):
    async def main():
        got: List[Frame] = []
        done = asyncio.Event()

        def keep(frame):
            got.append(frame)
            if len(got) == 12:
                done.set()

        with CVCamera(cameranumber=video(5), pace=False, repeat=True) as camera:
            camera.subscribe(keep)
            await asyncio.wait_for(done.wait(), WAIT)
        return got[:12]

    frames = run(main())
    assert [decode_index(f) for f in frames] == [0, 1, 2, 3, 4] * 2 + [0, 1]
    assert [f.index for f in frames] == list(range(12))


def test_closing_while_capturing_stops_the_thread(video, no_leaks):
    async def main():
        camera = CVCamera(cameranumber=video(200), repeat=True)
        await asyncio.wait_for(camera.onReady(), WAIT)
        assert camera_threads()
        camera.close()
        camera.close()  # idempotent
        return camera

    camera = run(main())
    assert camera.closed and camera.error is None
    assert not camera_threads()


# --------------------------------------------------------------------------------------------- failures


@pytest.mark.parametrize("device", ["/dev/video57", 57])
def test_a_camera_that_cannot_be_opened_fails_at_once_saying_what_to_check(device, no_leaks):
    async def main():
        with pytest.raises(DeviceOpenError) as info:
            CVCamera(cameranumber=device)
        return str(info.value)

    message = run(main())
    assert "/dev/video57" in message
    assert "'video' group" in message and "other process" in message and "v4l2-ctl" in message
    assert not camera_threads()


def test_a_missing_video_file_fails_at_once_naming_it(tmp_path: Path):
    missing = str(tmp_path / "nope.avi")

    async def main():
        with pytest.raises(DeviceOpenError, match="does not exist") as info:
            CVCamera(cameranumber=missing)
        return str(info.value)

    assert missing in run(main())


class FailingCapture:
    """A real capture of a file that starts failing every read after ``good`` frames, like an unplugged
    camera (OpenCV gives no way to unplug a file)."""

    def __init__(self, path: str, good: int) -> None:
        self._cap = cv2.VideoCapture(path)
        self._good = good
        self.reads = 0
        self.released = False

    def grab(self) -> bool:
        self.reads += 1
        return self.reads <= self._good and self._cap.grab()

    def release(self) -> None:
        self.released = True
        self._cap.release()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cap, name)


def test_reads_failing_in_a_row_fire_device_lost_and_release_the_camera(video, monkeypatch, no_leaks):
    path = video(10)
    captures = []

    def open_failing(cv2_module, source, api):
        captures.append(FailingCapture(path, good=3))
        return captures[-1]

    monkeypatch.setattr(camera_module, "_video_capture", open_failing)

    async def main():
        camera = CVCamera(cameranumber="/dev/video-fake", fps=200, max_read_failures=3)
        err = await asyncio.wait_for(camera.onError(), WAIT)
        await asyncio.wait_for(camera.onClose(), WAIT)
        return err, camera

    err, camera = run(main())
    assert isinstance(err, DeviceLostError) and "/dev/video-fake" in str(err) and "3 times" in str(err)
    assert camera.frame_count == 3 and captures[0].reads == 6 and captures[0].released


def test_a_failed_read_between_good_ones_is_not_fatal(video, monkeypatch):
    path = video(8)

    class Hiccup(FailingCapture):
        def grab(self) -> bool:
            self.reads += 1
            return self.reads != 3 and self._cap.grab()

    monkeypatch.setattr(camera_module, "_video_capture", lambda cv2_module, source, api: Hiccup(path, 0))

    async def main():
        with CVCamera(cameranumber="/dev/video-fake", fps=200, max_read_failures=2) as camera:
            frames = camera.subscribe(asyncio.Queue())
            got = [await asyncio.wait_for(frames.get(), WAIT) for _ in range(5)]
            return got, camera.error

    got, error = run(main())
    assert [f.index for f in got] == [0, 1, 2, 3, 4] and error is None


def test_failures_that_are_not_in_a_row_never_add_up_to_a_lost_camera(video, monkeypatch):
    """Every other read fails: many failures in all, never two in a row, so the count must start again after
    each good frame (a count that never resets would call the camera lost at the second failure)."""
    path = video(20)

    class EveryOtherFails(FailingCapture):
        def grab(self) -> bool:
            self.reads += 1
            return self.reads % 2 == 1 and self._cap.grab()

    captures: List[EveryOtherFails] = []

    def open_flaky(cv2_module, source, api):
        captures.append(EveryOtherFails(path, 0))
        return captures[-1]

    monkeypatch.setattr(camera_module, "_video_capture", open_flaky)

    async def main():
        with CVCamera(cameranumber="/dev/video-fake", fps=500, max_read_failures=2) as camera:
            frames = camera.subscribe(asyncio.Queue())
            got = [await asyncio.wait_for(frames.get(), WAIT) for _ in range(8)]
            return got, camera.error

    got, error = run(main())
    assert [f.index for f in got] == list(range(8)) and error is None
    assert captures[0].reads >= 15  # seven failed reads or more among them


def test_a_device_giving_another_size_than_asked_reports_it_and_warns(video, monkeypatch, caplog):
    path = video(30)  # 64x48 at 30 fps, opened as if it were a camera that ignores the size asked
    monkeypatch.setattr(camera_module, "_video_capture", lambda cv2_module, source, api: cv2.VideoCapture(path))

    async def main():
        with CVCamera(cameranumber="/dev/video-fake", width=320, height=240, fps=30) as camera:
            return camera.width, camera.height, camera.fps

    assert run(main()) == (WIDTH, HEIGHT, pytest.approx(30))
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("gives 64x48" in m and "320x240 at 30 fps was asked" in m for m in warnings), warnings


# ------------------------------------------------------------------------------ RTCBot's module path (#13)


def test_rtcbots_camera_module_path_gives_the_camera_classes():
    import rtcbot
    import rtcbot.camera

    assert rtcbot.camera.CVCamera is CVCamera is rtcbot.CVCamera
    assert rtcbot.camera.PiCamera2 is rtcbot.PiCamera2
    assert rtcbot.camera.CVDisplay is rtcbot.CVDisplay


@pytest.mark.parametrize("picamera2_installed", [True, False])
def test_the_legacy_picamera_class_says_to_use_picamera2(monkeypatch, picamera2_installed):
    import sys

    from rtcbot import MissingDependencyError
    from rtcbot.camera import PiCamera
    from tests.fakes import picamera2 as fake

    monkeypatch.setitem(sys.modules, "picamera2", fake if picamera2_installed else None)
    monkeypatch.setitem(sys.modules, "picamera", None)  # Bullseye and later: no legacy library
    with pytest.raises(MissingDependencyError, match="Use PiCamera2 instead") as info:
        PiCamera(width=640, height=480, fps=30)
    assert "legacy 'picamera'" in str(info.value) and isinstance(info.value, ImportError)


# --------------------------------------------------------------------------------------------- reused buffers


def test_frames_a_subscriber_keeps_are_never_overwritten_by_later_frames(video):
    """The capture thread decodes into reused buffers: a frame still held (here every third one, and a view
    of another) must keep its own picture while hundreds of later frames are decoded."""
    kept: List[np.ndarray] = []

    def keep_some(frame: Frame) -> None:
        if frame.index % 3 == 0:
            kept.append(frame)
        elif frame.index % 7 == 0:
            kept.append(frame[:, : WIDTH // 2 + WIDTH // 4])  # a view: it holds the buffer as well

    async def main():
        camera = CVCamera(cameranumber=video(200), pace=False)
        camera.subscribe(keep_some)
        await asyncio.wait_for(camera.onClose(), WAIT)

    run(main())
    assert len(kept) == 67 + 19  # every third frame, and a view of every seventh that is not one of those
    for frame in kept:
        expected = index_image(frame.index)[:, : frame.shape[1]]
        assert np.abs(frame.astype(int) - expected).max() < 24, f"frame {frame.index} was overwritten"


def test_frames_dropped_by_their_reader_are_decoded_into_a_few_recycled_buffers(video, monkeypatch):
    """A reader that lets each frame go: the capture decodes into the same few pooled buffers, not a fresh
    array per frame."""
    handed_out = set()
    take = camera_module.BufferPool.take

    def spying_take(pool: Any, nbytes: int) -> np.ndarray:
        buffer = take(pool, nbytes)
        handed_out.add(buffer.__array_interface__["data"][0])
        return buffer

    monkeypatch.setattr(camera_module.BufferPool, "take", spying_take)
    decoded_into: List[int] = []

    async def main():
        camera = CVCamera(cameranumber=video(100), pace=False)
        camera.subscribe(lambda frame: decoded_into.append(frame.__array_interface__["data"][0]))
        await asyncio.wait_for(camera.onClose(), WAIT)

    run(main())
    assert len(decoded_into) == 100
    assert sum(address in handed_out for address in decoded_into) >= 99  # all but (maybe) the first
    # A few buffers, reused (ten at most are in use at once; more only when the loop lags far behind).
    assert len(handed_out) < 50
