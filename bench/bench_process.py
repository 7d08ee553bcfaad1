"""Process hand-off: frames and audio blocks between a worker process and the event loop.

Measured in one run, each against a baseline from the same run:

- throughput (MB/s, unpaced) worker -> parent ("producer") and parent -> worker ("consumer") for 640x480x3
  and 1920x1080x3 uint8 frames and 1024x1 float32 audio blocks (the median of 5 runs in a full run), vs an
  in-process ``np.copyto`` of the same array (memcpy, the best of 9 short rounds measured right before) and
  vs a plain ``multiprocessing.Queue`` carrying the same arrays;
- latency p50/p99 (ms) with frames paced at 30 frames/s and audio blocks at 48 kHz (1024/48000 s), vs the
  same through ``multiprocessing.Queue``; timestamps are ``time.perf_counter()`` (CLOCK_MONOTONIC, shared by
  the processes on Linux);
- peak RSS growth of both processes while a slow consumer takes 10,000 frames (back-pressure policy) or is
  offered 10,000 (drop policy, a camera's);
- the machine's wake-up round trip (us, no target): one byte to a process blocked in ``recv()`` and back,
  which the hand-off rows pay a few times per item and memcpy never.

Every row also has the CPU seconds per 1,000 items of both processes (parent and worker, user + system),
and the same for its baseline (the in-process copy, or the ``multiprocessing.Queue`` pair of processes).
Targets: unpaced 640x480 and 1080p frames at least 0.25x memcpy (issue 18), p99 under 20 ms at 30 frames/s.

"channel" rows measure the raw transport (``rtcbot.base.transport``, imported in ``bench/_transport.py``);
"process class" rows the same through
``ProcessSubscriptionProducer`` (worker -> parent) and ``ProcessSubscriptionProducerConsumer`` (parent ->
worker), subscriptions and callbacks included. One worker process serves every channel measurement (and one
every ``multiprocessing.Queue`` measurement), so process start-up is not measured.
"""

from __future__ import annotations

import asyncio
import functools
import multiprocessing
import os
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from ._cpu import CpuMeter, per_1k
from ._table import row
from ._transport import ChannelClosed, ParentEndpoint, WorkerEndpoint, socket_pair

try:
    from rtcbot.base import ProcessSubscriptionProducer, ProcessSubscriptionProducerConsumer
except ImportError:  # the process classes are not there (yet): channel rows only
    ProcessSubscriptionProducer = ProcessSubscriptionProducerConsumer = None  # type: ignore[assignment,misc]

BENCH = "process"
START_METHOD = "forkserver"
FRAME_PERIOD = 1 / 30
AUDIO_PERIOD = 1024 / 48000
# The channel rows set up the raw transport as the process classes set up theirs (their class settings).
SLOTS = 4  # _handoff_slots
POOL_BYTES = 8 << 20  # _handoff_pool_bytes: up to twice SLOTS slots for frames small enough (eight at 640x480)

# (label, shape, dtype)
VGA = ("640x480x3 uint8", (480, 640, 3), np.uint8)
HD = ("1920x1080x3 uint8", (1080, 1920, 3), np.uint8)
AUDIO = ("1024x1 float32", (1024, 1), np.float32)
SMALL = ("320x240x3 uint8", (240, 320, 3), np.uint8)

WARMUP = 5  # items sent first in every measurement and not counted (page faults, first pool)
TIMEOUT = 120.0  # no measurement may take longer


def _pace(deadline: float) -> None:
    """Wait until ``deadline`` (perf_counter seconds): pacing a source, not synchronisation."""
    delay = deadline - time.perf_counter()
    if delay > 0:
        time.sleep(delay)


def _produce(put: Callable[[Any], Any], shape: tuple, dtype: Any, count: int, period: float) -> None:
    """Put WARMUP + count items ``(timestamp, index, array)`` (index < 0: warm-up), paced if ``period``."""
    array = np.ones(shape, dtype)
    deadline = time.perf_counter()
    for index in range(-WARMUP, count):
        if period:
            _pace(deadline)
            deadline += period
        put((time.perf_counter(), index, array))


def _take(get: Callable[[], Any], count: int) -> Dict[str, Any]:
    """Take WARMUP + count items from ``get``; latencies of the measured ones and their first/last arrival."""
    latencies: List[float] = []
    first = last = 0.0
    for _ in range(WARMUP + count):
        stamp, index, _array = get()
        last = time.perf_counter()
        if index >= 0:
            latencies.append(last - stamp)
            if index == 0:
                first = last
    return {"latencies": latencies, "first": first, "last": last}


# ---------------------------------------------------------- worker processes (module level: the forkserver
# imports them by name). Each runs commands ("produce" / "consume") until the parent closes.


def _channel_worker(sock: Any) -> None:
    channel = WorkerEndpoint(sock, slots=SLOTS, pool_bytes=POOL_BYTES)
    try:
        channel.send("ready")
        while True:
            command: Any = channel.recv()
            if command["do"] == "produce":
                sent, dropped = channel.sent, channel.dropped
                send = functools.partial(channel.send, block=command["block"])
                _produce(send, *command["args"])
                channel.send({"sent": channel.sent - sent, "dropped": channel.dropped - dropped})
            else:
                channel.send(_take(channel.recv, command["count"]))
    except ChannelClosed:
        pass
    finally:
        channel.close()


def _queue_worker(commands: Any, items_out: Any, items_in: Any, results: Any) -> None:
    results.put("ready")
    for command in iter(commands.get, None):
        if command["do"] == "produce":
            _produce(items_out.put, *command["args"])
        else:
            results.put(_take(items_in.get, command["count"]))
    for q in (items_out, results):
        q.close()
        q.join_thread()


# ------------------------------------------------------------------------------------ parent: channel


class _Collector:
    """Receives measured items in the parent (``on_item``): latencies, arrival times, reports."""

    def __init__(self) -> None:
        self.ready = asyncio.Event()
        self.reset()

    def reset(self, work: float = 0.0, sample: Optional[Callable[[int], None]] = None) -> None:
        self.work = work  # seconds of CPU work per item: a slow consumer
        self.sample = sample  # called every 10 items with the count delivered so far
        self.latencies: List[float] = []
        self.first = self.last = 0.0
        self.delivered = 0
        self.report: Any = None
        self.reported = asyncio.Event()

    def on_item(self, item: Any) -> None:
        now = time.perf_counter()
        if isinstance(item, str):
            self.ready.set()
        elif isinstance(item, dict):
            self.report = item
            self.reported.set()
        else:
            stamp, index, _array = item
            self.delivered += 1
            if index >= 0:
                self.latencies.append(now - stamp)
                if not self.first:
                    self.first = now
                self.last = now
            if self.work:
                end = now + self.work
                while time.perf_counter() < end:  # CPU work standing in for a slow consumer
                    pass
            if self.sample is not None and self.delivered % 10 == 0:
                self.sample(self.delivered)

    def result(self) -> Dict[str, Any]:
        """What was measured since the last reset (a copy: the collector is reused)."""
        return {
            "latencies": self.latencies,
            "first": self.first,
            "last": self.last,
            "delivered": self.delivered,
            "report": self.report,
        }

    async def wait_report(self) -> Any:
        await asyncio.wait_for(self.reported.wait(), TIMEOUT)
        return self.report


async def _send_stamped(send: Callable[[Any], Any], shape: tuple, dtype: Any, count: int, period: float) -> None:
    """Send WARMUP + ``count`` items ``(perf_counter(), index, array)``, every ``period`` seconds (0: unpaced,
    paced with the loop's timer otherwise); ``send`` may be a coroutine function (awaited) or a plain call."""
    loop = asyncio.get_running_loop()
    array = np.ones(shape, dtype)
    deadline = loop.time()
    for index in range(-WARMUP, count):
        if period:
            await asyncio.sleep(deadline - loop.time())  # pacing
            deadline += period
        sent = send((time.perf_counter(), index, array))
        if sent is not None:
            await sent


class _ChannelBench:
    """One channel worker process, driven by commands from the loop."""

    async def __aenter__(self) -> _ChannelBench:
        parent_end, worker_end = socket_pair()
        context: Any = multiprocessing.get_context(START_METHOD)
        self.process = context.Process(target=_channel_worker, args=(worker_end,))
        self.process.start()
        worker_end.close()
        self.eof = asyncio.Event()
        self.collector = _Collector()
        loop = asyncio.get_running_loop()
        self.channel = ParentEndpoint(
            parent_end, loop, self.collector.on_item, self.eof.set, slots=SLOTS, pool_bytes=POOL_BYTES
        )
        self.channel.start()
        await asyncio.wait_for(self.collector.ready.wait(), TIMEOUT)
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        self.channel.close()
        _stop(self.process)

    async def produce(
        self,
        shape: tuple,
        dtype: Any,
        count: int,
        period: float,
        block: bool = True,
        work: float = 0.0,
        sample: Optional[Callable[[int, int], None]] = None,
    ) -> Dict[str, Any]:
        """The worker sends; the parent collects (doing ``work`` seconds of CPU work per item)."""
        pid = self.process.pid
        self.collector.reset(work, None if sample is None else (lambda n: sample(n, pid)))
        with CpuMeter() as cpu:
            self.channel.send_nowait({"do": "produce", "args": (shape, dtype, count, period), "block": block})
            await self.collector.wait_report()
        return dict(self.collector.result(), cpu=cpu.per_1k(WARMUP + count), cpu_seconds=cpu.seconds)

    async def consume(self, shape: tuple, dtype: Any, count: int, period: float) -> Dict[str, Any]:
        """The parent sends (paced with the loop's timer); the worker reports what it measured."""
        self.collector.reset()
        with CpuMeter() as cpu:
            self.channel.send_nowait({"do": "consume", "count": count})
            await _send_stamped(self.channel.send, shape, dtype, count, period)
            report = await self.collector.wait_report()
        return dict(report, cpu=cpu.per_1k(WARMUP + count))


def _echo_worker(sock: Any) -> None:
    """Sends back every byte it reads until EOF: the far end of a wake-up round trip."""
    with sock:
        while True:
            data = sock.recv(64)
            if not data:
                return
            sock.sendall(data)


def _wakeup_round_trip(count: int, rounds: int = 5) -> Tuple[float, Optional[float]]:
    """What it costs on this machine to wake another process and be woken back: one byte there and back over
    a socket pair to a process blocked in ``recv()``, ``count`` round trips in ``rounds`` turns. Returns the
    median turn's microseconds per round trip and the CPU seconds per 1,000 of both processes, over all turns.

    Every hand-off row pays a few wake-ups per item (a receiver that is ahead sleeps until the next one) and
    memcpy pays none, so where a wake-up costs as much as copying a frame (a virtual machine whose idle cores
    halt), it sets those rows' ratios more than the copy does. No target: it is there to read them by."""
    parent_end, worker_end = socket_pair()
    context: Any = multiprocessing.get_context(START_METHOD)
    process = context.Process(target=_echo_worker, args=(worker_end,))
    process.start()
    worker_end.close()
    parent_end.settimeout(TIMEOUT)  # blocking, but a worker that stopped answering cannot hang the run
    per_turn = count // rounds
    turns: List[float] = []
    try:
        parent_end.sendall(b"x")  # the worker has started once its first answer is back
        parent_end.recv(64)
        with CpuMeter() as cpu:
            for _ in range(rounds):
                started = time.perf_counter()
                for _ in range(per_turn):
                    parent_end.sendall(b"x")
                    parent_end.recv(64)
                turns.append((time.perf_counter() - started) / per_turn * 1e6)
    finally:
        parent_end.close()
        _stop(process)
    return float(np.median(turns)), cpu.per_1k(rounds * per_turn)


def _stop(process: Any) -> None:
    process.join(10)
    if process.is_alive():
        process.kill()
        process.join(5)
    process.close()


# --------------------------------------------------------------------------- parent: multiprocessing.Queue


class _QueueBench:
    """One worker process exchanging the same items through ``multiprocessing.Queue``."""

    def __enter__(self) -> _QueueBench:
        context: Any = multiprocessing.get_context(START_METHOD)
        self.commands, self.items_in, self.items_out, self.results = (context.Queue() for _ in range(4))
        self.process = context.Process(
            target=_queue_worker, args=(self.commands, self.items_in, self.items_out, self.results)
        )
        self.process.start()
        if self.results.get(timeout=TIMEOUT) != "ready":
            raise RuntimeError("the multiprocessing.Queue worker did not start")
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.commands.put(None)
        _stop(self.process)
        for q in (self.commands, self.items_in, self.items_out, self.results):
            q.close()
            q.join_thread()

    def produce(self, shape: tuple, dtype: Any, count: int, period: float) -> Dict[str, Any]:
        with CpuMeter() as cpu:
            self.commands.put({"do": "produce", "args": (shape, dtype, count, period)})
            result = _take(lambda: self.items_in.get(timeout=TIMEOUT), count)
        return dict(result, cpu=cpu.per_1k(WARMUP + count))

    def consume(self, shape: tuple, dtype: Any, count: int, period: float) -> Dict[str, Any]:
        with CpuMeter() as cpu:
            self.commands.put({"do": "consume", "count": count})
            _produce(self.items_out.put, shape, dtype, count, period)
            result = self.results.get(timeout=TIMEOUT)
        return dict(result, cpu=cpu.per_1k(WARMUP + count))


# --------------------------------------------------------------------------- parent: rtcbot process classes

if ProcessSubscriptionProducerConsumer is not None:

    class _ClassWorker(ProcessSubscriptionProducerConsumer):
        """The channel worker's commands, through the process classes: its producer half sends with the same
        ``_put_nowait`` as a ProcessSubscriptionProducer, its consumer half takes with ``_get``."""

        def _producerConsumer(self) -> None:
            self._setReady(True)
            while True:
                command = self._get()
                if command["do"] == "produce":
                    _produce(self._put_nowait, *command["args"])
                    self._put_nowait({"done": True})
                else:
                    self._put_nowait(_take(self._get, command["count"]))


class _ClassBench:
    """One ``_ClassWorker``; its items reach a callback subscription (scheduled on the loop per item)."""

    async def __aenter__(self) -> _ClassBench:
        self.collector = _Collector()
        self.worker = _ClassWorker(start_method=START_METHOD)
        self.worker.subscribe(self.collector.on_item)
        await asyncio.wait_for(self.worker.onReady(), TIMEOUT)
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        self.worker.close()

    async def produce(self, shape: tuple, dtype: Any, count: int, period: float) -> Dict[str, Any]:
        self.collector.reset()
        with CpuMeter() as cpu:
            self.worker.put_nowait({"do": "produce", "args": (shape, dtype, count, period)})
            await self.collector.wait_report()
        return dict(self.collector.result(), cpu=cpu.per_1k(WARMUP + count))

    async def consume(self, shape: tuple, dtype: Any, count: int, period: float) -> Dict[str, Any]:
        self.collector.reset()
        with CpuMeter() as cpu:
            self.worker.put_nowait({"do": "consume", "count": count})
            await _send_stamped(self.worker.put_nowait, shape, dtype, count, period)
            report = await self.collector.wait_report()
        return dict(report, cpu=cpu.per_1k(WARMUP + count))


# ------------------------------------------------------------------------------------------- figures


class _Memcpy:
    """In-process ``np.copyto`` of the same array into a preallocated one: the best MB/s of 9 short rounds
    (``mbps``: this machine's copy speed; on a shared machine a round that was preempted says nothing about
    it, and a median of such rounds made the baseline swing 5 to 60 GB/s between rows), and CPU seconds per
    1,000 copies over all rounds (``cpu``)."""

    ROUNDS = 9

    def __init__(self, shape: tuple, dtype: Any, seconds: float) -> None:
        source = np.ones(shape, dtype)
        target = np.empty_like(source)
        np.copyto(target, source)
        copies = max(1, int(seconds / self.ROUNDS / max(source.nbytes / 5e9, 1e-7)))
        rates = []
        with CpuMeter() as cpu:
            for _ in range(self.ROUNDS):
                started = time.perf_counter()
                for _ in range(copies):
                    np.copyto(target, source)
                rates.append(copies * source.nbytes / (time.perf_counter() - started) / 1e6)
        self.mbps = float(max(rates))
        self.cpu = cpu.per_1k(self.ROUNDS * copies)


def _median_run(runs: List[Dict[str, Any]], nbytes: int, count: int) -> Dict[str, Any]:
    """The run with the median MB/s of ``runs`` (each measured alike), with the mean CPU of all of them."""
    ranked = sorted(runs, key=lambda run: _mbps(nbytes, run.get("count", count), run["first"], run["last"]))
    cpus = [run["cpu"] for run in runs if run.get("cpu") is not None]
    return dict(ranked[len(ranked) // 2], cpu=sum(cpus) / len(cpus) if cpus else None)


def _mbps(nbytes: int, count: int, first: float, last: float) -> float:
    """MB/s from the arrival of the first measured item to the last (count - 1 intervals)."""
    if count < 2 or last <= first:
        return float("nan")
    return (count - 1) * nbytes / (last - first) / 1e6


def _percentiles_ms(latencies: List[float]) -> Tuple[float, float]:
    if not latencies:
        return float("nan"), float("nan")
    p50, p99 = np.percentile(np.asarray(latencies) * 1000, [50, 99])
    return float(p50), float(p99)


def _nbytes(shape: tuple, dtype: Any) -> int:
    return int(np.prod(shape)) * np.dtype(dtype).itemsize


class _RssSampler:
    """Peak RSS of this process and a worker, from the first sample on (taken once ``start_after`` items
    were delivered, so start-up allocations do not count)."""

    def __init__(self, start_after: int) -> None:
        import psutil

        self._psutil = psutil
        self._me = psutil.Process(os.getpid())
        self._start_after = start_after
        self._worker: Any = None
        self.start: Optional[Tuple[int, int]] = None
        self.peak = (0, 0)

    def __call__(self, delivered: int, worker_pid: int) -> None:
        if delivered < self._start_after:
            return
        if self._worker is None:
            self._worker = self._psutil.Process(worker_pid)
        now = (self._me.memory_info().rss, self._worker.memory_info().rss)
        if self.start is None:
            self.start = now
        self.peak = (max(self.peak[0], now[0]), max(self.peak[1], now[1]))

    def growth_mb(self) -> Tuple[float, float]:
        if self.start is None:
            return float("nan"), float("nan")
        return (self.peak[0] - self.start[0]) / 1e6, (self.peak[1] - self.start[1]) / 1e6


def _throughput_rows(
    size: Any, path: str, count: int, memcpy: _Memcpy, ours: Dict[str, Any], theirs: Optional[Dict[str, Any]]
) -> List[Dict[str, Any]]:
    label, shape, dtype = size
    value = _mbps(_nbytes(shape, dtype), count, ours["first"], ours["last"])
    target = ">= 0.25x" if size in (VGA, HD) else None
    met = None if target is None else value >= 0.25 * memcpy.mbps
    rows = [
        row(BENCH, label, f"{path} unpaced", value, "MB/s", "memcpy", memcpy.mbps, target, met,
            cpu=ours["cpu"], baseline_cpu=memcpy.cpu)
    ]  # fmt: skip
    if theirs is not None:
        queue_value = _mbps(_nbytes(shape, dtype), theirs["count"], theirs["first"], theirs["last"])
        rows.append(row(BENCH, label, f"{path} unpaced", value, "MB/s", "mp.Queue", queue_value,
                        cpu=ours["cpu"], baseline_cpu=theirs["cpu"]))  # fmt: skip
    return rows


def _latency_rows(
    size: Any, path: str, period: float, ours: Dict[str, Any], theirs: Optional[Dict[str, Any]]
) -> List[Dict[str, Any]]:
    """p50 and p99 rows; the CPU figures are per 1,000 items at this pace (idle time included)."""
    label = size[0]
    pace = "30 frames/s" if period == FRAME_PERIOD else "48 kHz blocks"
    limit = 20.0 if period == FRAME_PERIOD else 2.0
    p50, p99 = _percentiles_ms(ours["latencies"])
    q50, q99 = _percentiles_ms(theirs["latencies"]) if theirs is not None else (None, None)
    baseline = "mp.Queue" if theirs is not None else None
    cpu = {"cpu": ours.get("cpu"), "baseline_cpu": None if theirs is None else theirs.get("cpu")}
    return [
        row(BENCH, label, f"{path} p50 @{pace}", p50, "ms", baseline, q50, **cpu),
        row(BENCH, label, f"{path} p99 @{pace}", p99, "ms", baseline, q99, f"< {limit:g} ms", p99 < limit, **cpu),
    ]


async def _channel_rows(plan: Dict[str, Any]) -> List[Dict[str, Any]]:
    rows: List[Dict[str, Any]] = []
    async with _ChannelBench() as bench:
        with _QueueBench() as baseline:
            rounds = plan["rounds"]
            for size in (VGA, HD, AUDIO):
                _label, shape, dtype = size
                nbytes = _nbytes(shape, dtype)
                count, queue_count = plan["unpaced"][size], plan["queue unpaced"][size]
                produced = _median_run(
                    [await bench.produce(shape, dtype, count, 0.0) for _ in range(rounds)], nbytes, count
                )
                queue_produced = dict(baseline.produce(shape, dtype, queue_count, 0.0), count=queue_count)
                rows += _throughput_rows(
                    size, "channel producer", count, _Memcpy(shape, dtype, 0.1), produced, queue_produced
                )
                consumed = _median_run(
                    [await bench.consume(shape, dtype, count, 0.0) for _ in range(rounds)], nbytes, count
                )
                queue_consumed = dict(baseline.consume(shape, dtype, queue_count, 0.0), count=queue_count)
                rows += _throughput_rows(
                    size, "channel consumer", count, _Memcpy(shape, dtype, 0.1), consumed, queue_consumed
                )
            for size, period in ((VGA, FRAME_PERIOD), (HD, FRAME_PERIOD), (AUDIO, AUDIO_PERIOD)):
                _label, shape, dtype = size
                count = plan["paced"][size]
                produced = await bench.produce(shape, dtype, count, period)
                queue_produced = baseline.produce(shape, dtype, count, period)
                rows += _latency_rows(size, "channel producer", period, produced, queue_produced)
                consumed = await bench.consume(shape, dtype, count, period)
                queue_consumed = baseline.consume(shape, dtype, count, period)
                rows += _latency_rows(size, "channel consumer", period, consumed, queue_consumed)
        rows += await _memory_rows(bench, plan["slow consumer"], plan["slow work"])
    return rows


async def _memory_rows(bench: _ChannelBench, size: Any, work: float) -> List[Dict[str, Any]]:
    label, shape, dtype = size
    # the other side's slots mapped (up to twice SLOTS, see POOL_BYTES), plus allocator slack
    bound_mb = 2 * SLOTS * _nbytes(shape, dtype) / 1e6 + 16
    target = f"< {bound_mb:.0f} MB (flat)"
    rows = []
    for policy, block in (("back-pressure", True), ("drop", False)):
        # Unpaced against a slow consumer, the drop policy delivers only a few dozen of the 10,000 frames (the
        # rest are dropped at once): start sampling early enough that the row is measured.
        sampler = _RssSampler(start_after=50 if block else 10)
        result = await bench.produce(shape, dtype, 10_000 - WARMUP, 0.0, block, work, sampler)
        parent, worker = sampler.growth_mb()
        case = f"{label} slow consumer, {policy}"
        dropped = (result["report"] or {}).get("dropped", "?")
        rows += [
            row(BENCH, case, "parent peak RSS growth", parent, "MB", None, None, target, parent < bound_mb),
            row(BENCH, case, "worker peak RSS growth", worker, "MB", None, None, target, worker < bound_mb),
            row(BENCH, case, f"delivered of 10,000 ({dropped} dropped)", result["delivered"], "frames",
                cpu=per_1k(result["cpu_seconds"], result["delivered"])),  # per frame delivered
        ]
    return rows


async def _class_rows(plan: Dict[str, Any]) -> List[Dict[str, Any]]:
    if ProcessSubscriptionProducerConsumer is None:
        return []
    rows: List[Dict[str, Any]] = []
    async with _ClassBench() as bench:
        rounds = plan["rounds"]
        for size in plan["class unpaced"]:
            _label, shape, dtype = size
            nbytes, count = _nbytes(shape, dtype), plan["unpaced"][size]
            produced = _median_run(
                [await bench.produce(shape, dtype, count, 0.0) for _ in range(rounds)], nbytes, count
            )
            rows += _throughput_rows(
                size, "process class producer", count, _Memcpy(shape, dtype, 0.1), produced, None
            )
            consumed = _median_run(
                [await bench.consume(shape, dtype, count, 0.0) for _ in range(rounds)], nbytes, count
            )
            rows += _throughput_rows(
                size, "process class consumer", count, _Memcpy(shape, dtype, 0.1), consumed, None
            )
        for size, period in plan["class paced"]:
            _label, shape, dtype = size
            count = plan["paced"][size]
            produced = await bench.produce(shape, dtype, count, period)
            rows += _latency_rows(size, "process class producer", period, produced, None)
            consumed = await bench.consume(shape, dtype, count, period)
            rows += _latency_rows(size, "process class consumer", period, consumed, None)
    return rows


QUICK: Dict[str, Any] = {
    "rounds": 1,  # unpaced runs of each; the figure is their median
    "wake-ups": 1000,  # socket round trips to another process (the machine's wake-up cost)
    "unpaced": {VGA: 60, HD: 20, AUDIO: 1000},
    "queue unpaced": {VGA: 20, HD: 8, AUDIO: 1000},
    "paced": {VGA: 12, HD: 12, AUDIO: 30},
    "slow consumer": SMALL,
    "slow work": 0.0001,
    "class unpaced": (VGA, HD),
    "class paced": ((HD, FRAME_PERIOD), (AUDIO, AUDIO_PERIOD)),
}
FULL: Dict[str, Any] = {
    "rounds": 5,  # the median of 5, as the camera's: single runs swing by a third on a shared VM
    "wake-ups": 10000,
    # ~0.2 s of frames per run: at 600 frames (40 ms) one preemption of a few ms moved a run by 10%
    "unpaced": {VGA: 3000, HD: 600, AUDIO: 10000},
    "queue unpaced": {VGA: 200, HD: 50, AUDIO: 10000},
    "paced": {VGA: 300, HD: 300, AUDIO: 940},
    "slow consumer": VGA,
    "slow work": 0.0005,
    "class unpaced": (VGA, HD, AUDIO),
    "class paced": ((VGA, FRAME_PERIOD), (HD, FRAME_PERIOD), (AUDIO, AUDIO_PERIOD)),
}


def run(quick: bool) -> List[Dict[str, Any]]:
    """Measure everything; ``quick`` takes about 15 s (fewer items, smaller slow-consumer frames), the full
    run a few minutes (10 s of paced items per latency figure)."""
    plan = QUICK if quick else FULL
    rows: List[Dict[str, Any]] = []
    for label, shape, dtype in (VGA, HD, AUDIO):
        memcpy = _Memcpy(shape, dtype, 0.1 if quick else 0.5)
        rows.append(row(BENCH, label, "memcpy (np.copyto, in-process)", memcpy.mbps, "MB/s", cpu=memcpy.cpu))
    wakeup_us, wakeup_cpu = _wakeup_round_trip(plan["wake-ups"])
    rows.append(row(BENCH, "1 byte over a socket pair, median of 5 turns", "wake-up round trip to another process",
                    wakeup_us, "us", cpu=wakeup_cpu))  # fmt: skip
    # Each throughput row's memcpy baseline is measured again right before it, so that a ratio compares
    # figures taken under the same load (this machine may be shared).
    rows += asyncio.run(_channel_rows(plan))
    rows += asyncio.run(_class_rows(plan))
    return rows


if __name__ == "__main__":  # python -m bench.bench_process [--quick]
    import sys

    from ._table import format_table

    print(format_table(run("--quick" in sys.argv)))
