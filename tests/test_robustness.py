"""Robustness: Ctrl+C, worker death and vanishing devices, as a robot script sees them.

Ctrl+C is tested on a real script (tests/scripts/all_devices.py) in its own process group, as a terminal
delivers it; the faults are tested in-process with every kind of device running at once, checking that the
failing one reports it (onError / ready) and the others keep delivering.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Dict, Iterator, List, Optional, Set

import numpy as np
import psutil
import pytest

from rtcbot.base import (
    ProcessSubscriptionConsumer,
    ProcessSubscriptionProducer,
    ProcessSubscriptionProducerConsumer,
)
from rtcbot.base.worker import close_live_workers
from rtcbot.devices import camera as camera_module
from rtcbot.devices.arduino_sim import SERIAL_OPTIONS, SimulatedArduino
from rtcbot.devices.audio import Microphone, Speaker
from rtcbot.devices.camera import CVCamera
from rtcbot.devices.serial import SerialConnection
from rtcbot.devices.sim import SimCamera, SimMicrophone
from rtcbot.errors import DeviceLostError, WorkerDiedError
from tests.fakes import sounddevice as fake_sd
from tests.helpers import run, sigint_as_in_a_terminal
from tests.pulse import missing_reason, pulseaudio_server

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "tests", "scripts", "all_devices.py")
WAIT = 15.0  # seconds a device may take to start on a busy machine (spawned workers import numpy...)
RATE = 48000


# ------------------------------------------------------------------------------------------ helpers


def shared_memory_maps(pid: int) -> Set[str]:
    """The shared memory process ``pid`` has mapped: /dev/shm files and memfd regions (by path)."""
    found = set()
    try:
        with open(f"/proc/{pid}/maps") as maps:
            for line in maps:
                fields = line.split(maxsplit=5)
                if len(fields) == 6 and (fields[5].startswith("/dev/shm/") or "memfd:" in fields[5]):
                    found.add(fields[5].strip())
    except (FileNotFoundError, ProcessLookupError):
        pass
    return found


def _raw_maps(pid: int) -> List[str]:
    with open(f"/proc/{pid}/maps") as maps:
        return maps.readlines()


def memfd_regions() -> int:
    """Mapped regions of rtcbot's transport shared memory in this process."""
    return sum(1 for line in _raw_maps(os.getpid()) if "memfd:rtcbot-transport" in line)


def gone(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE  # reparented to an init that does not reap
    except psutil.NoSuchProcess:
        return True


def wait_until(condition: Any, timeout: float, what: str) -> None:
    """Poll ``condition()`` until it is true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {timeout} s")
        pause.wait(0.02)  # a bounded poll of a condition nothing signals (another process's state)


async def eventually(condition: Any, timeout: float, what: str) -> None:
    """On the event loop: poll ``condition()`` until it is true; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {timeout} s")
        await asyncio.sleep(0.02)  # a bounded poll of state nothing signals (the process's memory maps)



def worker_pid(device: Any) -> int:
    """The pid of ``device``'s worker process (found among this process's children by its class name)."""
    import multiprocessing

    name = type(device).__name__
    found = [child.pid for child in multiprocessing.active_children() if name in (child.name or "")]
    assert len(found) == 1, f"expected one worker process for {name}, found {found}"
    return found[0]


class Script:
    """A robot script run in its own process group (a terminal's Ctrl+C reaches the whole group); its
    stdout lines are read by a thread so a test can wait for one with a timeout."""

    def __init__(self, *args: str, env: Optional[Dict[str, str]] = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, SCRIPT, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=env,
            start_new_session=True,
            preexec_fn=sigint_as_in_a_terminal,
        )
        self._lines: queue.Queue = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.stderr = ""

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.strip())
        self._lines.put(None)

    def wait_line(self, prefix: str, timeout: float = WAIT) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.diagnose()
                pytest.fail(f"the script printed no {prefix!r} line within {timeout} s; stderr:\n{self.stderr}")
            if line is None:
                self.finish(5)
                pytest.fail(f"the script ended before printing {prefix!r}; stderr:\n{self.stderr}")
            if line.startswith(prefix):
                return line

    def processes(self) -> List[psutil.Process]:
        """The script and every process under it."""
        me = psutil.Process(self.proc.pid)
        return [me, *me.children(recursive=True)]

    def ctrl_c(self) -> None:
        os.killpg(self.proc.pid, signal.SIGINT)

    def finish(self, timeout: float) -> Optional[int]:
        """Wait for the exit (None if it did not exit in time) and collect stderr."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        finally:
            if self.proc.poll() is None:
                self.diagnose()
        assert self.proc.stderr is not None
        self.stderr = self.proc.stderr.read()
        return self.proc.returncode

    def diagnose(self) -> None:
        """Ask a stuck script where it is (tasks, then threads), then kill its whole group."""
        if self.proc.poll() is not None:
            return
        for sig in (signal.SIGUSR2, signal.SIGUSR1):
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(1.0)  # gives the dumps a moment to be written
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(5)
        assert self.proc.stderr is not None
        self.stderr = self.proc.stderr.read()

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture(scope="module")
def speaker_args() -> Iterator[List[str]]:
    """The script's Speaker plays on a private PulseAudio null sink when PulseAudio is installed, else on
    the fake sounddevice."""
    if missing_reason() is not None:
        yield ["--fake-audio"]
        return
    with pulseaudio_server():
        yield []


@pytest.fixture
def script_runner() -> Iterator[Any]:
    scripts: List[Script] = []

    def start(*args: str) -> Script:
        scripts.append(Script(*args))
        return scripts[-1]

    yield start
    for s in scripts:
        s.close()


# alsa-lib writes this to stderr itself when PulseAudio's ALSA plugin recovers from an underrun (a loaded
# machine starves the player now and then); the Speaker counts underflows on its own. Not a script error.
_ALSA_UNDERRUN = re.compile(r"^ALSA lib [\w./-]+:\d+:\(snd_pcm_recover\) underrun occurred\n?", re.MULTILINE)


def without_alsa_underruns(stderr: str) -> str:
    """``stderr`` without alsa-lib's underrun lines (anything else, a traceback above all, stays)."""
    return _ALSA_UNDERRUN.sub("", stderr)


def check_interrupted_cleanly(script: Script, limit: float) -> None:
    """Ctrl+C the running script; it must exit 0 within ``limit`` seconds, print nothing on stderr, and
    leave no process and no shared memory behind."""
    processes = script.processes()
    shm_files = {m for p in processes for m in shared_memory_maps(p.pid) if m.startswith("/dev/shm/")}
    started = time.monotonic()
    script.ctrl_c()
    code = script.finish(limit)
    took = time.monotonic() - started
    assert code is not None, f"the script did not exit within {limit} s of Ctrl+C; stderr:\n{script.stderr}"
    assert code == 0, f"exit code {code}; stderr:\n{script.stderr}"
    assert without_alsa_underruns(script.stderr) == "", f"stderr after Ctrl+C:\n{script.stderr}"
    assert took < limit
    wait_until(lambda: all(gone(p) for p in processes), 5.0, "every process of the script should be gone")
    left = sorted(path for path in shm_files if os.path.exists(path.replace(" (deleted)", "")))
    assert not left, f"shared memory left in /dev/shm: {left}"


# ------------------------------------------------------------------------------------------ Ctrl+C


def test_ctrl_c_stops_a_script_running_every_device_within_two_seconds_leaving_nothing(speaker_args, script_runner):
    script = script_runner(*speaker_args)
    script.wait_line("ready")
    script.wait_line("tick")  # every device delivers
    check_interrupted_cleanly(script, limit=2.0)


def test_ctrl_c_in_a_script_that_never_closes_its_devices_still_exits_cleanly(script_runner):
    script = script_runner("--fake-audio", "--no-with")
    script.wait_line("ready")
    check_interrupted_cleanly(script, limit=2.0)


def test_ctrl_c_reaches_the_script_even_when_the_test_run_ignores_sigint(script_runner):
    # As when pytest was started with `&`: the script must still get a terminal's Ctrl+C.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        script = script_runner("--fake-audio")
    finally:
        signal.signal(signal.SIGINT, previous)
    script.wait_line("ready")
    check_interrupted_cleanly(script, limit=2.0)


@pytest.mark.parametrize("step", ["starting", "opening speaker", "opening camera", "opening serial"])
def test_ctrl_c_while_the_devices_are_starting_exits_without_a_traceback(step, script_runner):
    script = script_runner("--fake-audio")
    script.wait_line(step)
    script.ctrl_c()
    code = script.finish(10.0)
    assert code == 0, f"exit code {code}; stderr:\n{script.stderr}"
    assert "Traceback" not in script.stderr, script.stderr


def test_only_alsa_underrun_lines_count_as_audio_noise():
    noise = "ALSA lib pcm.c:8570:(snd_pcm_recover) underrun occurred\n"
    assert without_alsa_underruns(noise * 2) == ""
    traceback = "Traceback (most recent call last):\nAssertionError\n"
    assert without_alsa_underruns(noise + traceback) == traceback


def test_live_workers_are_closed_at_exit_newest_first():
    async def main():
        camera = SimCamera(fps=30)
        mic = SimMicrophone()
        await asyncio.wait_for(camera.onReady(), WAIT)
        order: List[str] = []
        camera.onClose(lambda *_: order.append("camera"))
        mic.onClose(lambda *_: order.append("mic"))
        close_live_workers()  # what atexit runs
        return camera, mic, order

    camera, mic, order = run(main())
    assert camera.closed and mic.closed and camera.error is None
    assert order == ["mic", "camera"]


# ------------------------------------------------------------------------------------------ a robot


@pytest.fixture
def fake_audio(monkeypatch) -> Any:
    """The fake sounddevice for Speaker/Microphone (also in Speaker's child); returns its fault setter."""
    monkeypatch.setitem(sys.modules, "sounddevice", fake_sd)
    monkeypatch.delenv(fake_sd.ENV, raising=False)

    def faults(**config: Any) -> None:
        monkeypatch.setenv(fake_sd.ENV, json.dumps(config))

    return faults


class FakeSpeaker(Speaker):
    """A Speaker whose child process plays on the fake sounddevice."""

    _sounddevice_module = fake_sd.__name__


class FakeMicrophone(Microphone):
    _sounddevice_module = fake_sd.__name__


class Robot:
    """Every kind of device running at once: a camera, a microphone, a Speaker playing it, a serial link.

    The Speaker is a real one on the PulseAudio null sink (the ``pulse`` fixture) unless a test that forces
    a fault passes a FakeSpeaker."""

    def __init__(self, link: Optional[str] = None, camera: Any = None, mic: Any = None, speaker: Any = None) -> None:
        self.stack = contextlib.ExitStack()
        self.arduino = self.stack.enter_context(SimulatedArduino(period=0.01, watchdog=None, link=link))
        self.speaker = self.stack.enter_context(
            speaker if speaker is not None else Speaker(blocksize=480, device="pulse")
        )
        self.camera = self.stack.enter_context(camera if camera is not None else SimCamera(fps=30))
        self.mic = self.stack.enter_context(mic if mic is not None else SimMicrophone())
        self.conn = self.stack.enter_context(SerialConnection(self.arduino.port, **SERIAL_OPTIONS))
        self.speaker.putSubscription(self.mic)

    @property
    def devices(self) -> Dict[str, Any]:
        return {"camera": self.camera, "mic": self.mic, "speaker": self.speaker, "serial": self.conn}

    async def started(self) -> None:
        for device in self.devices.values():
            await asyncio.wait_for(device.onReady(), WAIT)

    async def delivers(self, *names: str) -> None:
        """Each named device still works: fresh items from producers, the speaker still takes audio."""
        for name in names:
            device = self.devices[name]
            assert device.error is None and not device.closed, f"{name} stopped: {device.error!r}"
            if name == "speaker":
                device.put_nowait(np.zeros(480, np.float32))
                continue
            if name == "serial":
                device.put_nowait({"left": 1, "right": 1})
            subscription = device.subscribe()
            try:
                await asyncio.wait_for(subscription.get(), WAIT)
                await asyncio.wait_for(subscription.get(), WAIT)  # a second one: it is still running
            finally:
                device.unsubscribe(subscription)

    def close(self) -> float:
        """Close everything; returns how long it took."""
        started = time.monotonic()
        self.stack.close()
        return time.monotonic() - started


# ------------------------------------------------------------------------------------------ worker death


class Relay(ProcessSubscriptionProducerConsumer):
    """A two-way process device (what SerialConnection was before it moved into the event loop): it gives
    back each item it is given, from its worker process."""

    def _producerConsumer(self) -> None:
        self._setReady(True)
        while True:
            self._put_nowait(self._get())


def test_sigkill_of_a_two_way_process_worker_fires_on_error_within_a_second_and_the_rest_keeps_running(pulse):
    async def main():
        robot = Robot()
        try:
            relay = robot.stack.enter_context(Relay())
            await robot.started()
            await asyncio.wait_for(relay.onReady(), WAIT)
            relay.put_nowait("ping")
            assert await asyncio.wait_for(relay.get(), WAIT) == "ping"
            os.kill(worker_pid(relay), signal.SIGKILL)
            err = await asyncio.wait_for(relay.onError(), 1.0)
            await robot.delivers("camera", "mic", "speaker", "serial")
            started = time.monotonic()
            relay.close()
            return err, time.monotonic() - started
        finally:
            robot.close()

    err, took = run(main())
    assert isinstance(err, WorkerDiedError)
    assert "Relay" in str(err) and "SIGKILL" in str(err)
    assert took < 0.5


def test_sigkill_of_the_speaker_worker_fires_on_error_and_unmaps_its_shared_memory(pulse):
    async def main():
        robot = Robot()
        try:
            await robot.started()
            pid = worker_pid(robot.speaker)
            robot.speaker.put_nowait(np.zeros(RATE, np.float32))  # a large block: through shared memory
            await eventually(lambda: memfd_regions() > 0, 5.0, "the transport's shared memory should be mapped")
            named = {m for m in shared_memory_maps(os.getpid()) | shared_memory_maps(pid) if "/dev/shm/" in m}
            os.kill(pid, signal.SIGKILL)
            err = await asyncio.wait_for(robot.speaker.onError(), 1.0)
            await robot.delivers("camera", "mic", "serial")
            return err, named
        finally:
            robot.close()

    before = memfd_regions()
    err, named = run(main())
    assert isinstance(err, WorkerDiedError) and "Speaker" in str(err) and "SIGKILL" in str(err)
    assert not named, f"named shared memory in /dev/shm: {named}"
    assert memfd_regions() == before == 0


def test_a_worker_thread_that_raises_fires_on_error_with_that_exception_and_the_rest_keeps_running(pulse):
    frames = [0]

    def flaky(frame: Any) -> Any:
        frames[0] += 1
        if frames[0] == 5:
            raise ValueError("preprocessframe could not find the horizon")
        return frame

    async def main():
        robot = Robot(camera=SimCamera(fps=30, preprocessframe=flaky))
        try:
            await robot.started()
            err = await asyncio.wait_for(robot.camera.onError(), WAIT)
            await asyncio.wait_for(robot.camera.onClose(), 1.0)
            await robot.delivers("mic", "speaker", "serial")
            return err, robot.close()
        finally:
            robot.close()

    err, took = run(main())
    assert isinstance(err, ValueError) and "horizon" in str(err)
    assert took < 3.0  # four devices, two of them processes, closed on a possibly loaded machine


class BigArrays(ProcessSubscriptionProducer):
    """A worker process sending 1 MB arrays as fast as the parent takes them (through shared memory)."""

    def _producer(self) -> None:
        self._setReady(True)
        block = np.ones(1 << 20, np.uint8)
        while not self._shouldClose:
            self._put_nowait(block)


@pytest.mark.parametrize("end", ["close", "sigkill"])
def test_transport_shared_memory_is_unmapped_after_close_and_after_the_worker_is_killed(end, no_leaks):
    async def main():
        producer = BigArrays()
        try:
            await asyncio.wait_for(producer.onReady(), WAIT)
            await asyncio.wait_for(producer.get(), WAIT)
            pid = worker_pid(producer)
            mapped = memfd_regions()
            child_mapped = sum(1 for line in _raw_maps(pid) if "memfd:rtcbot-transport" in line)
            dev_shm = {m for m in shared_memory_maps(os.getpid()) | shared_memory_maps(pid) if "/dev/shm/" in m}
            if end == "sigkill":
                os.kill(pid, signal.SIGKILL)
                err = await asyncio.wait_for(producer.onError(), 1.0)
                assert isinstance(err, WorkerDiedError)
        finally:
            producer.close()
        return mapped, child_mapped, dev_shm

    mapped, child_mapped, dev_shm = run(main())
    assert mapped > 0 and child_mapped > 0  # it did go through memfd
    assert not dev_shm  # nothing named in /dev/shm
    assert memfd_regions() == 0


def test_closing_a_process_producer_held_back_by_a_slow_parent_is_prompt_and_quiet(caplog, no_leaks):
    async def main():
        producer = BigArrays()
        await asyncio.wait_for(producer.onReady(), WAIT)
        await asyncio.wait_for(producer.get(), WAIT)  # its slots are full or filling: the worker waits on us
        started = time.monotonic()
        producer.close()
        return producer, time.monotonic() - started

    producer, took = run(main())
    assert took < 1.5 and producer.error is None  # no joinTimeout wait then terminate (that would warn)
    assert not [r for r in caplog.records if r.levelno >= 30], [r.getMessage() for r in caplog.records]


class Stuck(ProcessSubscriptionConsumer):
    """A consumer whose worker takes one item and then never another (a vision step that hangs)."""

    def _consumer(self) -> None:
        self._setReady(True)
        self._get()
        self._wait_closed()


def test_a_process_consumer_that_stops_taking_frames_does_not_queue_them_in_its_worker(no_leaks):
    async def main():
        with Stuck() as stuck, SimCamera(640, 480, fps=100) as camera:
            await asyncio.wait_for(stuck.onReady(), WAIT)
            worker = psutil.Process(worker_pid(stuck))
            stuck.putSubscription(camera)
            await eventually(lambda: camera.frame_count > 5, WAIT, "the camera should deliver")
            before = worker.memory_info().rss
            start = camera.frame_count
            await eventually(lambda: camera.frame_count > start + 100, WAIT, "100 more frames (90 MB)")
            return (worker.memory_info().rss - before) / 2**20

    growth_mb = run(main())  # (what the parent holds back is the base layer's flow control, tested there)
    assert growth_mb < 5, f"the stuck worker grew by {growth_mb:.1f} MB"


# ------------------------------------------------------------------------------------------ vanishing devices


class VanishingCapture:
    """A camera (through CVCamera's ``_video_capture`` seam) that delivers ``good`` frames, then every read
    fails, as when the USB cable is pulled."""

    def __init__(self, good: int) -> None:
        self.good = good
        self.reads = 0
        self.released = threading.Event()

    def isOpened(self) -> bool:
        return True

    def set(self, prop: int, value: float) -> bool:
        return True

    def get(self, prop: int) -> float:
        import cv2

        return {cv2.CAP_PROP_FRAME_WIDTH: 64, cv2.CAP_PROP_FRAME_HEIGHT: 48, cv2.CAP_PROP_FPS: 100}.get(prop, 0)

    def grab(self) -> bool:
        self.reads += 1
        return self.reads <= self.good

    def retrieve(self, image: Any = None) -> Any:
        return True, np.zeros((48, 64, 3), np.uint8)

    def release(self) -> None:
        self.released.set()


def test_a_camera_that_stops_delivering_is_seen_as_on_error_and_not_ready(pulse, monkeypatch):
    capture = VanishingCapture(good=20)
    monkeypatch.setattr(camera_module, "_video_capture", lambda cv2, source, api: capture)

    async def main():
        camera = CVCamera(cameranumber="/dev/video-usb", width=64, height=48, fps=100, max_read_failures=3)
        robot = Robot(camera=camera)
        try:
            await robot.started()
            err = await asyncio.wait_for(camera.onError(), WAIT)
            ready_after = camera.ready
            await robot.delivers("mic", "speaker", "serial")
            return err, ready_after
        finally:
            robot.close()

    err, ready_after = run(main())
    assert isinstance(err, DeviceLostError) and "/dev/video-usb" in str(err) and "unplugged" in str(err)
    assert not ready_after
    assert capture.released.is_set()


def test_an_unplugged_serial_port_is_seen_as_not_ready_and_back_when_replugged(pulse, tmp_path):
    async def main():
        robot = Robot(link=str(tmp_path / "arduino"))
        try:
            await robot.started()
            robot.arduino.unplug()
            await asyncio.wait_for(robot.conn.wait_port(present=False), WAIT)
            ready_while_gone = robot.conn.ready
            await robot.delivers("camera", "mic", "speaker")
            robot.arduino.replug()
            await asyncio.wait_for(robot.conn.onReady(), WAIT)
            await robot.delivers("serial")
            return ready_while_gone, robot.conn.reconnects, robot.conn.error
        finally:
            robot.close()

    ready_while_gone, reconnects, error = run(main())
    assert not ready_while_gone and reconnects == 1 and error is None


def test_a_lost_microphone_is_seen_as_on_error_and_the_rest_keeps_running(fake_audio):
    fake_audio(lose_after=20)

    async def main():
        mic = FakeMicrophone(blocksize=480)
        robot = Robot(mic=mic, speaker=FakeSpeaker(blocksize=480))  # the fake module serves both here
        try:
            err = await asyncio.wait_for(mic.onError(), WAIT)
            await robot.delivers("camera", "serial")
            return err, mic.ready, mic.closed
        finally:
            robot.close()

    err, ready, closed = run(main())
    assert isinstance(err, DeviceLostError) and "unplugged" in str(err)
    assert not ready and closed


def test_a_lost_speaker_is_seen_as_on_error_and_the_rest_keeps_running(fake_audio):
    fake_audio(lose_after=20)

    async def main():
        robot = Robot(speaker=FakeSpeaker(blocksize=480))
        try:
            err = await asyncio.wait_for(robot.speaker.onError(), WAIT)
            await asyncio.wait_for(robot.speaker.onClose(), WAIT)
            await robot.delivers("camera", "serial")
            return err, robot.speaker.ready
        finally:
            robot.close()

    err, ready = run(main())
    assert isinstance(err, DeviceLostError) and "unplugged" in str(err)
    assert not ready
