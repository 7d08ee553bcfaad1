"""The benchmark harness itself: CPU accounting across worker processes, and ``python -m bench`` output.

These check that figures are *accounted* (CPU time of a child process that is still running is counted, a
rig thread can be left out, every row carries CPU columns), never how fast anything is: CPU work is measured
in CPU seconds (``time.process_time``), so machine load changes how long a test takes, not what it asserts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench._cpu import CpuMeter, CpuTotals, per_1k
from bench._table import format_summary, row, targets

ROOT = Path(__file__).resolve().parent.parent
SPIN = 0.2  # CPU seconds each busy piece of work burns
TICK = 0.02  # slack for another process's CPU time, counted in 10 ms clock ticks

# A child that burns SPIN CPU seconds, says so, and stays alive until its stdin closes.
CHILD = (
    "import sys, time\n"
    "start = time.process_time()\n"
    f"while time.process_time() - start < {SPIN}:\n"
    "    pass\n"
    "print('spun', flush=True)\n"
    "sys.stdin.read()\n"
)


def _spin(seconds: float = SPIN) -> None:
    start = time.thread_time()
    while time.thread_time() - start < seconds:
        pass


def test_meter_counts_this_process():
    with CpuMeter() as cpu:
        _spin()
    assert cpu.seconds is not None and cpu.seconds >= SPIN - TICK
    assert cpu.per_1k(1000) == cpu.seconds


def test_meter_counts_a_child_that_is_still_running():
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        with CpuMeter() as cpu:  # started after the child: its start-up may or may not count, its spin does
            assert child.stdout is not None and child.stdout.readline() == b"spun\n"
        assert child.poll() is None, "the child must still be running when the meter stops"
        assert cpu.seconds is not None and cpu.seconds >= SPIN - TICK
    finally:
        child.communicate(b"", timeout=30)


def test_meter_counts_a_child_that_exited_and_was_reaped():
    with CpuMeter() as cpu:
        child = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        child.communicate(b"", timeout=30)
    assert cpu.seconds is not None and cpu.seconds >= SPIN - TICK


def test_meter_leaves_out_excluded_threads():
    started, go, spun, finish = threading.Event(), threading.Event(), threading.Event(), threading.Event()
    ident: list = []

    def rig() -> None:  # a rig thread (a simulated device): it outlives the measurement, as required
        ident.append(threading.get_native_id())
        started.set()
        go.wait(30)
        _spin()
        spun.set()
        finish.wait(30)

    thread = threading.Thread(target=rig)
    thread.start()
    try:
        assert started.wait(30)
        with CpuMeter(exclude_threads=ident) as cpu:
            go.set()
            assert spun.wait(60)
    finally:
        go.set()
        finish.set()
        thread.join(60)
    assert cpu.seconds is not None and cpu.seconds < SPIN / 2


def test_totals_add_rounds():
    totals = CpuTotals()
    for _ in range(2):
        with CpuMeter() as cpu:
            _spin(0.05)
        totals.add(cpu, 500)
    assert totals.items == 1000
    assert totals.per_1k() == totals.seconds >= 0.1 - TICK
    assert per_1k(None, 10) is None and per_1k(1.0, 0) is None


def test_rows_carry_cpu_and_its_ratio_and_cpu_targets_reach_the_summary():
    rows = [
        row("serial", "pty", "write", 90.0, "msg/s", "pyserial loop", 100.0, ">= 0.9x", True,
            cpu=0.3, baseline_cpu=0.1, cpu_limit=1.5),
        row("process", "640x480", "memcpy", 5.0, "MB/s"),
    ]  # fmt: skip
    assert rows[0]["cpu_ratio"] == 0.3 / 0.1 and rows[0]["cpu_met"] is False
    assert rows[1]["cpu_per_1k"] is None and rows[1]["cpu_ratio"] is None
    entries = targets(rows)
    assert [(e["target"], e["met"]) for e in entries] == [(">= 0.9x", True), ("CPU <= 1.5x", False)]
    summary = format_summary(rows)
    assert "NOT MET" in summary and summary.splitlines()[-1] == "1 of 2 targets met"


def test_quick_run_prints_a_summary_and_json_keeps_the_machine(tmp_path):
    out = tmp_path / "bench.json"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", "serial", "--json", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "targets met" in done.stdout and "met" in done.stdout
    report = json.loads(out.read_text())
    for key in ("cpu_model", "cpus", "python", "numpy", "opencv"):
        assert key in report["machine"], key
    assert report["results"] and report["targets"]
    for result in report["results"]:
        assert result["cpu_per_1k"] is not None and result["cpu_per_1k"] > 0
        assert result["baseline_cpu_per_1k"] is not None
    assert {entry["target"] for entry in report["targets"]} >= {">= 0.9x", "<= 2x", "CPU <= 1.5x"}


def test_wakeup_round_trip_is_measured_and_its_echo_process_is_gone():
    import psutil

    from bench.bench_process import _wakeup_round_trip

    me = psutil.Process()
    before = {child.pid for child in me.children(recursive=True)}
    micros, cpu = _wakeup_round_trip(200, rounds=5)
    assert 0 < micros < 100_000  # one round trip: microseconds, far under a tenth of a second
    assert cpu is not None and cpu > 0  # CPU per 1,000 round trips, here and in the echo process
    # multiprocessing's forkserver and resource tracker, started by the first forkserver process, stay
    helpers = "from multiprocessing."
    left = [c for c in me.children(recursive=True) if c.pid not in before and helpers not in " ".join(c.cmdline())]
    assert left == []
