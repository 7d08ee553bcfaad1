"""SerialConnection against a plain pyserial loop, on the same pty pair, in the same run.

A simulated device serves the master end of a pty (a thread in this process: it echoes, records, or sends
a burst). Struct messages ``<IhB`` (7 bytes):

- read: the device sends N messages in one burst; messages/s until the last one is delivered to a
  subscription, against ``struct.unpack(fmt, port.read(7))`` in a loop.
- write: N ``put_nowait`` calls; messages/s until the device has received every byte, against
  ``port.write(struct.pack(...))`` in a loop.
- round trip: one message out, wait for its echo, repeat; p50/p99 latency, against ``port.write`` then
  ``port.read(7)``. The echo is awaited on a subscription (``sub.get()``), and, in a row of its own, with
  the connection's ``get()``. The three loops run on two echoing devices opened side by side, taking turns
  in short chunks, so that a burst of load from elsewhere on the machine falls on all three alike; the CPU
  figure is the median of the chunks'.

SerialConnection does its I/O in the event loop (the loop watches the pty's descriptor; reads take what
arrived, decode it and fan it out; writes are non-blocking), so its figures include the loop's wake-ups, the
decoding and the subscription queue: the ratio shows that cost. Every row also has the CPU seconds per
1,000 messages of each side (this process, all threads; the simulated device's thread is left out, read
from its own CPU clock to the nanosecond: it is the board, not the code measured).

Targets (issue 18): reads and writes >= 0.9x of the plain loop, round trip p50 <= 2x, CPU per message
<= 1.5x the plain loop's.
"""

from __future__ import annotations

import asyncio
import statistics
import struct
import threading
import time
from typing import Any, Dict, List, Optional

from rtcbot.devices.arduino_sim import PtyDevice
from rtcbot.devices.serial import SerialConnection

from ._cpu import CpuMeter
from ._table import row

FMT = "<IhB"
CPU_LIMIT = 1.5  # CPU per message, at most this many times the plain loop's
SIZE = struct.calcsize(FMT)


class _Device(PtyDevice):
    """Echoes (when ``echo``) and counts the bytes it receives."""

    def __init__(self) -> None:
        self.echo = False
        self.count = 0
        self._cond = threading.Condition()
        super().__init__()

    def on_data(self, data: bytes) -> None:
        if self.echo:
            self.write(data)
        with self._cond:
            self.count += len(data)
            self._cond.notify_all()

    def reset_count(self) -> None:
        with self._cond:
            self.count = 0

    def wait_count(self, n: int, timeout: float = 60.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.count >= n, timeout)

    def meter(self) -> _CpuWithoutDevice:
        """A CPU meter for one measurement that leaves this device's thread out (read from its own CPU clock,
        to the nanosecond: psutil's per-thread times are 10 ms ticks, too coarse for a round trip of ~50 us
        of CPU, whose device thread costs about as much as the code measured)."""
        return _CpuWithoutDevice(self)

    def thread_ids(self) -> List[int]:
        """Native ids of the thread serving the pty (named ``rtcbot-<class>`` by PtyDevice), to leave its
        CPU time out of the figures."""
        name = f"rtcbot-{type(self).__name__}"
        return [t.native_id for t in threading.enumerate() if t.name == name and t.native_id is not None]


class _CpuWithoutDevice:
    """:class:`CpuMeter` (this process, its children) minus the simulated device thread's CPU time, taken from
    that thread's CPU clock (``pthread_getcpuclockid``)::

        with dev.meter() as cpu:
            ...
        cpu.per_1k(n)
    """

    def __init__(self, dev: _Device) -> None:
        name = f"rtcbot-{type(dev).__name__}"
        idents = [t.ident for t in threading.enumerate() if t.name == name and t.ident is not None]
        self._clocks = [time.pthread_getcpuclockid(ident) for ident in idents]
        self._meter = CpuMeter()
        self._device_start = 0.0
        self._device_seconds = 0.0

    def _device(self) -> float:
        return sum(time.clock_gettime(clock) for clock in self._clocks)

    def __enter__(self) -> _CpuWithoutDevice:
        self._meter.__enter__()
        self._device_start = self._device()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._device_seconds = self._device() - self._device_start
        self._meter.__exit__(*exc_info)

    def per_1k(self, items: float) -> Optional[float]:
        seconds = self._meter.seconds
        if seconds is None:
            return None
        return max(0.0, seconds - self._device_seconds) / items * 1000


def _messages(n: int) -> List[tuple]:
    return [(i, i % 30000, i % 256) for i in range(n)]


def _percentile(values: List[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


# -- plain pyserial ------------------------------------------------------------------------------------


def _pyserial(dev: _Device, n: int) -> Dict[str, Any]:
    import serial

    msgs = _messages(n)
    with serial.serial_for_url(dev.port, baudrate=115200, timeout=10) as port:
        dev.echo = False
        burst = b"".join(struct.pack(FMT, *m) for m in msgs)
        with dev.meter() as read_cpu:
            start = time.perf_counter()
            dev.write(burst)
            for _ in range(n):
                struct.unpack(FMT, port.read(SIZE))
            read_rate = n / (time.perf_counter() - start)

        dev.reset_count()
        with dev.meter() as write_cpu:
            start = time.perf_counter()
            for m in msgs:
                port.write(struct.pack(FMT, *m))
            dev.wait_count(n * SIZE)
            write_rate = n / (time.perf_counter() - start)
    return {"read": read_rate, "write": write_rate, "read_cpu": read_cpu.per_1k(n), "write_cpu": write_cpu.per_1k(n)}


# -- SerialConnection ----------------------------------------------------------------------------------


def _rtcbot(dev: _Device, n: int) -> Dict[str, Any]:
    async def main() -> Dict[str, Any]:
        loop = asyncio.get_running_loop()
        msgs = _messages(n)
        with SerialConnection(dev.port, readFormat=FMT, writeFormat=FMT) as conn:
            sub = conn.subscribe()
            await asyncio.wait_for(conn.onReady(), 10)
            dev.echo = False
            burst = b"".join(struct.pack(FMT, *m) for m in msgs)
            with dev.meter() as read_cpu:
                start = time.perf_counter()
                dev.write(burst)
                for _ in range(n):
                    await sub.get()
                read_rate = n / (time.perf_counter() - start)

            dev.reset_count()
            with dev.meter() as write_cpu:
                start = time.perf_counter()
                for m in msgs:
                    conn.put_nowait(m)
                await loop.run_in_executor(None, dev.wait_count, n * SIZE)
                write_rate = n / (time.perf_counter() - start)
        return {
            "read": read_rate, "write": write_rate, "read_cpu": read_cpu.per_1k(n), "write_cpu": write_cpu.per_1k(n),
        }  # fmt: skip

    return asyncio.run(asyncio.wait_for(main(), 120))


# -- round trips ---------------------------------------------------------------------------------------

CHUNKS = 20  # round-trip chunks per loop, taking turns


def _device_seconds() -> float:
    """CPU seconds used so far by the simulated devices' threads (the board, not the code measured)."""
    name = f"rtcbot-{_Device.__name__}"
    idents = [t.ident for t in threading.enumerate() if t.name == name and t.ident is not None]
    return sum(time.clock_gettime(time.pthread_getcpuclockid(ident)) for ident in idents)


def _cpu_now() -> float:
    # The process's CPU clock (every thread, to the nanosecond) less the devices': a chunk of a few hundred
    # round trips costs a few ms, too short for CpuMeter's per-call sampling of child processes (there are
    # none here: SerialConnection does its I/O in this process).
    return time.process_time() - _device_seconds()


def _round_trips(trips: int) -> Dict[str, Dict[str, Any]]:
    """Round trips through a plain pyserial loop, ``sub.get()`` and ``conn.get()``, interleaved in chunks;
    for each: every round trip's time (``rtts``) and the median CPU per 1,000 of its chunks (``cpu``)."""
    import serial

    per_chunk = max(1, trips // CHUNKS)
    msgs = _messages(per_chunk)

    async def main() -> Dict[str, Dict[str, Any]]:
        with _Device() as plain_dev, _Device() as ours_dev:
            plain_dev.echo = ours_dev.echo = True
            with serial.serial_for_url(plain_dev.port, baudrate=115200, timeout=10) as port, SerialConnection(
                ours_dev.port, readFormat=FMT, writeFormat=FMT
            ) as conn:
                await asyncio.wait_for(conn.onReady(), 10)

                async def plain_chunk(rtts: List[float], sub: Any) -> None:
                    for m in msgs:
                        start = time.perf_counter()
                        port.write(struct.pack(FMT, *m))
                        port.read(SIZE)
                        rtts.append(time.perf_counter() - start)

                async def sub_chunk(rtts: List[float], sub: Any) -> None:
                    for m in msgs:
                        start = time.perf_counter()
                        conn.put_nowait(m)
                        await sub.get()
                        rtts.append(time.perf_counter() - start)

                async def get_chunk(rtts: List[float], sub: Any) -> None:
                    for m in msgs:
                        start = time.perf_counter()
                        conn.put_nowait(m)
                        await conn.get()
                        rtts.append(time.perf_counter() - start)

                loops = {"plain": plain_chunk, "sub": sub_chunk, "get": get_chunk}
                rtts: Dict[str, List[float]] = {k: [] for k in loops}
                cpus: Dict[str, List[float]] = {k: [] for k in loops}
                for _ in range(CHUNKS):
                    for key, chunk in loops.items():
                        # Only the loop being measured holds a subscription: the others' replies pile up nowhere.
                        sub = conn.subscribe() if key == "sub" else None
                        before = _cpu_now()
                        await chunk(rtts[key], sub)
                        cpus[key].append((_cpu_now() - before) / per_chunk * 1000)
                        conn.unsubscribe(sub)  # (None: the default subscription conn.get() made)
            return {k: {"rtts": rtts[k], "cpu": statistics.median(cpus[k])} for k in loops}

    return asyncio.run(asyncio.wait_for(main(), 120))


# -- the rows ------------------------------------------------------------------------------------------

ROUNDS = 3  # alternating rounds of each side for reads and writes; figures are medians


def _median_of(runs: List[Dict[str, Any]]) -> Dict[str, Any]:
    """One result from several rounds: the median of each figure."""
    return {key: statistics.median(r[key] for r in runs) for key in ("read", "write", "read_cpu", "write_cpu")}


def run(quick: bool) -> List[Dict[str, Any]]:
    n = 3000 if quick else 10000
    # 6,000 round trips in a full run (~0.6 s of each loop, in 300-trip turns): at 2,000 each loop ran for
    # ~0.2 s in all, and one busy moment of the host moved the CPU ratio from ~1.2x to 1.57x.
    trips = 300 if quick else 6000
    # Each side runs ROUNDS times, alternating, and each figure is the median of its rounds, so a burst of
    # load from elsewhere on a shared machine does not land on one side only.
    plains: List[Dict[str, Any]] = []
    ourses: List[Dict[str, Any]] = []
    with _Device() as dev:
        for _ in range(ROUNDS):
            plains.append(_pyserial(dev, n))
            ourses.append(_rtcbot(dev, n))
    plain, ours = _median_of(plains), _median_of(ourses)
    case = f"pty, {n} x '{FMT}' ({SIZE} B)"
    rows = []
    for what in ("read", "write"):
        ratio = ours[what] / plain[what]
        rows.append(
            row("serial", case, what, ours[what], "msg/s", "pyserial loop", plain[what], ">= 0.9x", ratio >= 0.9,
                cpu=ours[f"{what}_cpu"], baseline_cpu=plain[f"{what}_cpu"], cpu_limit=CPU_LIMIT)
        )  # fmt: skip

    trip = _round_trips(trips)
    base = trip["plain"]
    rtt_case = f"pty echo, {len(base['rtts'])} round trips in {CHUNKS} turns"
    for p in (50, 99):
        ours_ms = _percentile(trip["sub"]["rtts"], p) * 1000
        plain_ms = _percentile(base["rtts"], p) * 1000
        target = "<= 2x" if p == 50 else None
        met = ours_ms <= 2 * plain_ms if target else None
        rows.append(
            row("serial", rtt_case, f"round trip p{p}", ours_ms, "ms", "pyserial loop", plain_ms, target, met,
                cpu=trip["sub"]["cpu"], baseline_cpu=base["cpu"], cpu_limit=CPU_LIMIT if target else None)
        )  # fmt: skip
    # conn.get() is how the docs read a reply; it has no target of its own (the is for the loop above).
    rows.append(
        row("serial", rtt_case, "round trip p50, conn.get()", _percentile(trip["get"]["rtts"], 50) * 1000, "ms",
            "pyserial loop", _percentile(base["rtts"], 50) * 1000, cpu=trip["get"]["cpu"], baseline_cpu=base["cpu"])
    )  # fmt: skip
    return rows


if __name__ == "__main__":
    from ._table import format_table

    print(format_table(run(quick=True)))
