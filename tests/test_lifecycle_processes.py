"""Process workers from a script's point of view: nothing outlives a killed script, no ``__main__`` guard needed
for importable workers (one short message when a script-defined one lacks it), multiprocessing primitives
cross at start, and the start method can be chosen by keyword or environment variable."""
import asyncio
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from rtcbot.base import ProcessSubscriptionConsumer, ProcessSubscriptionProducer
from rtcbot.base.process_start import START_METHOD_VARIABLE, chosen_start_method
from rtcbot.errors import NotPicklableError
from tests.helpers import run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Stuck(ProcessSubscriptionConsumer):
    def _consumer(self):
        self._setReady(True)
        threading.Event().wait(120)  # a blocking call that never checks for close


class Echoes(ProcessSubscriptionProducer):
    """Reports what crossed in its multiprocessing primitives."""

    def __init__(self, **kwargs):
        ctx = multiprocessing.get_context(kwargs.get("start_method") or "forkserver")
        self.queue = ctx.Queue()
        self.event = ctx.Event()
        self.lock = ctx.Lock()
        self.value = ctx.Value("i", 41)
        self.reader, self.writer = ctx.Pipe(duplex=False)
        self.queue.put("from the parent")
        super().__init__(**kwargs)

    def _producer(self):
        with self.lock:
            self.value.value += 1
        self.event.set()
        self.writer.send("through the pipe")
        self._put_nowait(self.queue.get(timeout=10))
        self._setReady(True)
        self._wait_closed()


class HoldsAThreadLock(ProcessSubscriptionProducer):
    def __init__(self, **kwargs):
        self.gpio_lock = threading.Lock()
        super().__init__(**kwargs)


def _script(tmp_path, body):
    path = tmp_path / "robot.py"
    path.write_text(textwrap.dedent(body))
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop(START_METHOD_VARIABLE, None)
    return path, env


def _gone(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            state = [line for line in f if line.startswith("State:")][0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return True
    return "Z" in state  # a zombie has exited; only its parent's reaping is left


@pytest.mark.parametrize("method", ["forkserver", "spawn", "fork"])
def test_a_sigkilled_script_leaves_no_worker_forkserver_or_resource_tracker(method, tmp_path):
    path, env = _script(
        tmp_path,
        f"""
        import multiprocessing, multiprocessing.forkserver, multiprocessing.resource_tracker, sys, time
        from tests.test_lifecycle_processes import Stuck
        import asyncio
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        stuck = Stuck(start_method={method!r})
        loop.run_until_complete(stuck.onReady())
        pids = [stuck._process.pid]
        server = multiprocessing.forkserver._forkserver._forkserver_pid
        tracker = multiprocessing.resource_tracker._resource_tracker._pid
        pids += [p for p in (server, tracker) if p]
        print(" ".join(map(str, pids)), flush=True)
        loop.run_forever()
        """,
    )
    # Timed exits: without coverage's measurement, which makes every exit (os._exit included) write its data
    # first, seconds under load; what is timed here is rtcbot's teardown, not the instrumentation's.
    env = {k: v for k, v in env.items() if not k.startswith("COVERAGE_")}
    script = subprocess.Popen([sys.executable, str(path)], stdout=subprocess.PIPE, env=env, cwd=str(tmp_path))
    try:
        line = script.stdout.readline()
        pids = [int(p) for p in line.split()]
        assert pids, "the script did not start its worker"
        os.kill(script.pid, signal.SIGKILL)
        killed = time.monotonic()
        script.wait(5)
        deadline = time.monotonic() + 1.0 + 0.5  # 1 s promised, 0.5 s for a loaded machine to schedule it
        while time.monotonic() < deadline and not all(_gone(p) for p in pids):
            time.sleep(0.02)  # polling the process table: nothing to wait on for another process's children
        second = "forkserver" if method == "forkserver" else "resource tracker"
        roles = dict(zip(pids, ["worker", second, "resource tracker"]))
        left = [f"{roles.get(p)} {p}" for p in pids if not _gone(p)]
        assert not left, f"still running {time.monotonic() - killed:.2f} s after the script was killed: {left}"
    finally:
        script.kill()
        script.wait(5)


def test_a_script_without_main_guard_runs_importable_workers_without_running_again(tmp_path):
    path, env = _script(
        tmp_path,
        """
        import asyncio, os
        print("script body ran in", os.getpid(), flush=True)
        from tests.test_lifecycle_processes import Echoes
        loop = asyncio.get_event_loop()
        echoes = Echoes()
        print("got", loop.run_until_complete(asyncio.wait_for(echoes.get(), 20)), flush=True)
        echoes.close()
        """,
    )
    out = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("script body ran") == 1, out.stdout
    assert "got from the parent" in out.stdout
    assert "Traceback" not in out.stderr, out.stderr


def test_a_script_defined_worker_without_main_guard_stops_with_one_short_message(tmp_path):
    path, env = _script(
        tmp_path,
        """
        import asyncio
        from rtcbot.base import ProcessSubscriptionProducer

        class Blinker(ProcessSubscriptionProducer):
            def _producer(self):
                self._setReady(True)
                self._wait_closed()

        blinker = Blinker()
        asyncio.get_event_loop().run_forever()
        """,
    )
    started = time.monotonic()
    out = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, env=env, timeout=30)
    assert time.monotonic() - started < 15
    assert out.returncode != 0
    assert "Traceback" not in out.stderr, out.stderr
    assert 'if __name__ == "__main__":' in out.stderr
    assert len(out.stderr.strip().splitlines()) <= 3, out.stderr


@pytest.mark.parametrize("method", ["forkserver", "spawn", "fork"])
def test_multiprocessing_primitives_reach_the_worker(method, tmp_path):
    # In a script of its own: a multiprocessing.Value maps a process-wide shared-memory arena that would stay
    # in the test process for good, and a Pipe end starts multiprocessing's resource-sharer thread.
    path, env = _script(
        tmp_path,
        f"""
        import asyncio, multiprocessing
        from tests.test_lifecycle_processes import Echoes

        async def main():
            obj = Echoes(start_method={method!r})
            try:
                assert await asyncio.wait_for(obj.get(), 20) == "from the parent"
                assert obj.event.wait(5)
                assert obj.reader.poll(5) and obj.reader.recv() == "through the pipe"
                assert obj.value.value == 42
            finally:
                obj.close()
            assert not multiprocessing.active_children()
            print("all crossed", flush=True)

        if __name__ == "__main__":
            asyncio.run(main())
        """,
    )
    out = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "all crossed" in out.stdout


@pytest.mark.parametrize("method", ["forkserver", "fork"])
def test_what_cannot_cross_is_named(method, no_leaks):
    async def main():
        with pytest.raises(NotPicklableError, match="HoldsAThreadLock.gpio_lock"):
            HoldsAThreadLock(start_method=method)

    run(main())


def test_the_start_method_comes_from_the_keyword_then_the_environment(monkeypatch):
    monkeypatch.delenv(START_METHOD_VARIABLE, raising=False)
    assert chosen_start_method(None) == "forkserver"
    monkeypatch.setenv(START_METHOD_VARIABLE, "spawn")
    assert chosen_start_method(None) == "spawn"
    assert chosen_start_method("fork") == "fork"
    monkeypatch.setenv(START_METHOD_VARIABLE, "teleport")
    with pytest.raises(ValueError, match=START_METHOD_VARIABLE):
        chosen_start_method(None)
    with pytest.raises(ValueError, match="start_method"):
        Stuck(start_method="teleport")


def test_the_environment_variable_starts_workers_with_that_method(monkeypatch, no_leaks):
    monkeypatch.setenv(START_METHOD_VARIABLE, "spawn")

    async def main():
        with Stuck(joinTimeout=0.2) as stuck:
            assert stuck._process._start_method == "spawn"
            await asyncio.wait_for(stuck.onReady(), 20)

    run(main(), timeout=60)
