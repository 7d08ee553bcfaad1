"""CPU time (user + system) a measurement costs, counting this process *and* its worker processes.

rtcbot moves work into worker processes (a Speaker's playback, a process producer's ``_producer()``),
so the CPU a figure costs is spread over several processes, and the workers are usually still running when
a measurement ends. :class:`CpuMeter` therefore adds up, at the start and at the end of a measurement:

- this process (every thread), from ``getrusage(RUSAGE_SELF)``;
- the children it has already reaped, from ``getrusage(RUSAGE_CHILDREN)``;
- every live descendant (a forkserver and the workers it forked, a ``subprocess.Popen``), sampled explicitly
  from ``/proc/<pid>/stat`` through psutil: its own time and the time of the children *it* reaped.

Each process is counted exactly once in a sample (a live process is in no one's reaped total), so the
difference between two samples is the CPU spent in between, including by workers that exited meanwhile::

    with CpuMeter() as cpu:
        run_the_thing(items=5000)
    print(cpu.seconds, cpu.per_1k(5000))   # CPU seconds in all, and per 1,000 items

Threads that belong to the test rig rather than to what is measured (a simulated device answering on a pty)
can be left out: ``CpuMeter(exclude_threads=[native_id])``; such a thread must outlive the measurement (the
time of a thread that has ended can no longer be told apart). Resolution: microseconds for this process,
clock ticks (10 ms) for each other process, so measure for at least a second where the figure matters.
"""

from __future__ import annotations

import os
import resource
from typing import Any, Collection, Optional

import psutil

__all__ = ["CpuMeter", "CpuTotals", "cpu_seconds", "per_1k"]


def _thread_seconds(thread_ids: Collection[int]) -> float:
    """CPU seconds used so far by the given threads of this process (native ids); gone ones count 0."""
    if not thread_ids:
        return 0.0
    total = 0.0
    for thread in psutil.Process(os.getpid()).threads():
        if thread.id in thread_ids:
            total += thread.user_time + thread.system_time
    return total


def cpu_seconds(exclude_threads: Collection[int] = ()) -> float:
    """User + system CPU seconds used so far by this process, the children it reaped, and every live
    descendant process (with what each of those reaped), less the threads in ``exclude_threads``."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    total = me.ru_utime + me.ru_stime - _thread_seconds(exclude_threads)
    descendants = psutil.Process(os.getpid()).children(recursive=True)
    for process in descendants:
        try:
            times = process.cpu_times()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue  # exited and reaped since the listing: its time shows in its parent's reaped total
        total += times.user + times.system + times.children_user + times.children_system
    # Read last: a child reaped between the listing and here is then counted once (live), not twice.
    reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
    return total + reaped.ru_utime + reaped.ru_stime


def per_1k(seconds: Optional[float], items: float) -> Optional[float]:
    """CPU seconds per 1,000 items (None when nothing was measured or no item was handled)."""
    if seconds is None or not items:
        return None
    return seconds / items * 1000


class CpuMeter:
    """Measures the CPU seconds spent (here and in worker processes) while its ``with`` block runs.

    Usable around ``await`` too; several meters may run at once (they only read counters)::

        with CpuMeter() as cpu:
            await camera_run()
        cpu.per_1k(frames)
    """

    def __init__(self, exclude_threads: Collection[int] = ()) -> None:
        self.exclude_threads = set(exclude_threads)
        self.seconds: Optional[float] = None  # set when the block ends
        self._start = 0.0

    def __enter__(self) -> CpuMeter:
        self.seconds = None
        self._start = cpu_seconds(self.exclude_threads)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.seconds = max(0.0, cpu_seconds(self.exclude_threads) - self._start)

    def per_1k(self, items: float) -> Optional[float]:
        """CPU seconds per 1,000 of the ``items`` handled in the block (None before it ended)."""
        return per_1k(self.seconds, items)


class CpuTotals:
    """CPU seconds and items summed over several measurements of the same thing (rounds of a benchmark)::

        totals = CpuTotals()
        for _ in range(5):
            with CpuMeter() as cpu:
                handled = one_round()
            totals.add(cpu, handled)
        totals.per_1k()
    """

    def __init__(self) -> None:
        self.seconds = 0.0
        self.items = 0.0

    def add(self, meter: CpuMeter, items: float) -> None:
        if meter.seconds is not None:
            self.seconds += meter.seconds
            self.items += items

    def per_1k(self) -> Optional[float]:
        return per_1k(self.seconds, self.items)
