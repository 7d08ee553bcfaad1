"""The base layer's hot paths: producer fan-out and the worker-thread to event-loop hand-off.

Fan-out: ``producer._put_nowait(item)`` to 1, 4 and 16 asyncio.Queue subscribers, against a bare loop of
``queue.put_nowait(item)`` calls over the same queues.

Waiting get(): a task reads with ``await producer.get()`` and acknowledges each item to the task that put it,
which waits for that before the next (so each get() waits), against the same exchange over a bare
``asyncio.Queue``.

Thread hand-off: a ThreadedSubscriptionProducer's worker emits timestamped items; the latency is measured
where the item reaches its subscription on the loop. Paced at 30 Hz and 1 kHz for latency; unpaced for
items/s, against the simplest hand-off (one ``loop.call_soon_threadsafe`` per item).

Consumer hand-off: items put on the loop into a ThreadedSubscriptionConsumer, taken by ``self._get()`` in its
worker thread, unpaced (all put at once), against the standard library's way for a thread to read an
asyncio.Queue (``asyncio.run_coroutine_threadsafe(queue.get(), loop).result()`` per item).

Every row has the CPU seconds per 1,000 items it cost (and its baseline's); the paced rows' CPU includes the
idle loop between items, which is what a Pi pays at that rate.
"""
from __future__ import annotations

import asyncio
import statistics
import threading
import time
from typing import Any, Callable, Dict, List, Tuple

from rtcbot.base import SubscriptionProducer, ThreadedSubscriptionConsumer, ThreadedSubscriptionProducer
from rtcbot.subscriptions import CallbackSubscription

from ._cpu import CpuMeter, CpuTotals
from ._table import row


def _percentile(values: List[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


# -- fan-out -------------------------------------------------------------------------------------------


def _fanout(subscribers: int, items: int, rounds: int) -> Dict[str, Any]:
    async def main() -> Dict[str, Any]:
        bare_best = ours_best = float("inf")
        bare_cpu, ours_cpu = CpuTotals(), CpuTotals()
        for _ in range(rounds):
            queues: List[asyncio.Queue] = [asyncio.Queue() for _ in range(subscribers)]
            with CpuMeter() as cpu:
                start = time.perf_counter()
                for item in range(items):
                    for q in queues:
                        q.put_nowait(item)
                bare_best = min(bare_best, time.perf_counter() - start)
            bare_cpu.add(cpu, items)

            producer = SubscriptionProducer()
            for _ in range(subscribers):
                producer.subscribe()
            put = producer._put_nowait
            with CpuMeter() as cpu:
                start = time.perf_counter()
                for item in range(items):
                    put(item)
                ours_best = min(ours_best, time.perf_counter() - start)
            ours_cpu.add(cpu, items)
            producer.close()
        return {
            "bare": items / bare_best, "ours": items / ours_best,
            "bare_cpu": bare_cpu.per_1k(), "ours_cpu": ours_cpu.per_1k(),
        }  # fmt: skip

    return asyncio.run(main())


# -- get() waiting for each item ------------------------------------------------------------------------


def _waiting_get(items: int, rounds: int) -> Dict[str, Any]:
    """A task reading with ``producer.get()`` while another puts an item, then waits for the reader's
    acknowledgement (so every get() waits), against the same with a bare ``await queue.get()``; best time and
    summed CPU of alternating rounds."""

    async def exchange(get: Callable[[], Any], put: Callable[[Any], None]) -> None:
        acks: asyncio.Queue = asyncio.Queue()  # the reader acknowledges each item: the next finds it waiting

        async def reader() -> None:
            for _ in range(items):
                await get()
                acks.put_nowait(None)

        task = asyncio.ensure_future(reader())
        for item in range(items):
            put(item)
            await acks.get()
        await task

    async def main() -> Dict[str, Any]:
        bare_best = ours_best = float("inf")
        bare_cpu, ours_cpu = CpuTotals(), CpuTotals()
        for _ in range(rounds):
            queue: asyncio.Queue = asyncio.Queue()
            with CpuMeter() as cpu:
                start = time.perf_counter()
                await exchange(queue.get, queue.put_nowait)
                bare_best = min(bare_best, time.perf_counter() - start)
            bare_cpu.add(cpu, items)

            producer = SubscriptionProducer(defaultAutosubscribe=True)
            with CpuMeter() as cpu:
                start = time.perf_counter()
                await exchange(producer.get, producer.put_nowait)
                ours_best = min(ours_best, time.perf_counter() - start)
            ours_cpu.add(cpu, items)
            producer.close()
        return {
            "bare": items / bare_best, "ours": items / ours_best,
            "bare_cpu": bare_cpu.per_1k(), "ours_cpu": ours_cpu.per_1k(),
        }  # fmt: skip

    return asyncio.run(main())


# -- thread hand-off -----------------------------------------------------------------------------------


class _Emitter(ThreadedSubscriptionProducer):
    """Emits perf_counter() timestamps at ``rate`` Hz (0: as fast as it can) until ``count`` were sent."""

    def __init__(self, rate: float, count: int, start: threading.Event) -> None:
        self.rate = rate
        self.count = count
        self.start = start
        super().__init__()

    def _producer(self) -> None:
        self._setReady(True)
        self.start.wait()
        period = 1.0 / self.rate if self.rate else 0.0
        deadline = time.perf_counter()
        for _ in range(self.count):
            if period:
                deadline += period
                _pace_until(deadline)
            self._put_nowait(time.perf_counter())
        self._wait_closed()


def _pace_until(deadline: float) -> None:
    # Benchmark pacing, not synchronisation. A sleep releases the GIL as a device read would; a spin loop
    # would hold it for the interpreter's 5 ms switch interval and measure that instead of the hand-off.
    remaining = deadline - time.perf_counter()
    if remaining > 0:
        time.sleep(remaining)


def _handoff_latency(rate: float, count: int) -> Tuple[List[float], Any]:
    async def main() -> Tuple[List[float], Any]:
        latencies: List[float] = []
        done = asyncio.get_running_loop().create_future()

        def received(sent: float) -> None:
            latencies.append(time.perf_counter() - sent)
            if len(latencies) == count and not done.done():
                done.set_result(None)

        start = threading.Event()
        emitter = _Emitter(rate, count, start)
        emitter.subscribe(CallbackSubscription(received, runDirect=True))
        await emitter.onReady()
        with CpuMeter() as cpu:
            start.set()
            await asyncio.wait_for(done, count / max(rate, 1) + 30)
        emitter.close()
        return latencies, cpu.per_1k(count)

    return asyncio.run(main())


def _counter(count: int) -> Tuple[Callable[[Any], None], asyncio.Future[None]]:
    """A callback that counts items, and a future done once it has seen ``count`` of them."""
    done = asyncio.get_running_loop().create_future()
    received = 0

    def on_item(_: Any) -> None:
        nonlocal received
        received += 1
        if received == count:
            done.set_result(None)

    return on_item, done


def _handoff_throughput(count: int) -> Dict[str, Any]:
    async def ours() -> Tuple[float, Any]:
        on_item, done = _counter(count)

        start = threading.Event()
        emitter = _Emitter(0, count, start)
        emitter.subscribe(CallbackSubscription(on_item, runDirect=True))
        await emitter.onReady()
        with CpuMeter() as cpu:
            began = time.perf_counter()
            start.set()
            await asyncio.wait_for(done, 60)
            elapsed = time.perf_counter() - began
        emitter.close()
        return count / elapsed, cpu.per_1k(count)

    async def one_callback_per_item() -> Tuple[float, Any]:
        loop = asyncio.get_running_loop()
        on_item, done = _counter(count)

        def worker() -> None:
            for _ in range(count):
                loop.call_soon_threadsafe(on_item, time.perf_counter())

        with CpuMeter() as cpu:
            began = time.perf_counter()
            thread = threading.Thread(target=worker)
            thread.start()
            await asyncio.wait_for(done, 60)
            elapsed = time.perf_counter() - began
            thread.join()
        return count / elapsed, cpu.per_1k(count)

    (ours_rate, ours_cpu), (base_rate, base_cpu) = asyncio.run(ours()), asyncio.run(one_callback_per_item())
    return {"ours": ours_rate, "baseline": base_rate, "ours_cpu": ours_cpu, "baseline_cpu": base_cpu}


class _Taker(ThreadedSubscriptionConsumer):
    """Takes ``count`` items with ``self._get()`` in its worker thread, then resolves ``done`` on the loop."""

    def __init__(self, count: int, done: asyncio.Future) -> None:
        self.count = count
        self.done = done
        super().__init__()

    def _consumer(self) -> None:
        self._setReady(True)
        for _ in range(self.count):
            self._get()
        self.done.get_loop().call_soon_threadsafe(self.done.set_result, None)
        self._wait_closed()


def _consumer_handoff(count: int) -> Dict[str, Any]:
    async def ours() -> Tuple[float, Any]:
        done = asyncio.get_running_loop().create_future()
        taker = _Taker(count, done)
        await taker.onReady()
        with CpuMeter() as cpu:
            began = time.perf_counter()
            for item in range(count):
                taker.put_nowait(item)
            await asyncio.wait_for(done, 60)
            elapsed = time.perf_counter() - began
        taker.close()
        return count / elapsed, cpu.per_1k(count)

    async def run_coroutine_threadsafe_per_item() -> Tuple[float, Any]:
        loop = asyncio.get_running_loop()
        items: asyncio.Queue = asyncio.Queue()

        def worker() -> None:
            for _ in range(count):
                asyncio.run_coroutine_threadsafe(items.get(), loop).result(60)

        with CpuMeter() as cpu:
            began = time.perf_counter()
            for item in range(count):
                items.put_nowait(item)
            await asyncio.to_thread(worker)
            elapsed = time.perf_counter() - began
        return count / elapsed, cpu.per_1k(count)

    (ours_rate, ours_cpu) = asyncio.run(ours())
    (base_rate, base_cpu) = asyncio.run(run_coroutine_threadsafe_per_item())
    return {"ours": ours_rate, "baseline": base_rate, "ours_cpu": ours_cpu, "baseline_cpu": base_cpu}


def run(quick: bool) -> List[Dict[str, Any]]:
    rows: List[Dict[str, Any]] = []
    items, rounds = (20000, 3) if quick else (100000, 7)
    for subscribers in (1, 4, 16):
        r = _fanout(subscribers, items, rounds)
        target = ">= 0.9" if subscribers in (1, 16) else None
        met = r["ours"] / r["bare"] >= 0.9 if target else None
        rows.append(
            row("base", f"fan-out, {subscribers} subscribers", "items/s", r["ours"], "items/s",
                "bare put_nowait loop", r["bare"], target, met, cpu=r["ours_cpu"], baseline_cpu=r["bare_cpu"])
        )

    g = _waiting_get(items // 4, rounds)
    rows.append(
        row("base", "get(), waiting for each item", "items/s", g["ours"], "items/s", "bare await queue.get()",
            g["bare"], cpu=g["ours_cpu"], baseline_cpu=g["bare_cpu"])
    )  # fmt: skip

    for rate, seconds in ((30.0, 2 if quick else 10), (1000.0, 2 if quick else 10)):
        latencies, cpu = _handoff_latency(rate, int(rate * seconds))
        p50 = statistics.median(latencies) * 1000
        p99 = _percentile(latencies, 99) * 1000
        case = f"thread hand-off at {rate:g} Hz"
        rows.append(row("base", case, "latency p50", p50, "ms", cpu=cpu))
        target = "< 0.5 ms" if rate == 1000.0 else None
        rows.append(row("base", case, "latency p99", p99, "ms", target=target, met=(p99 < 0.5) if target else None,
                        cpu=cpu))  # fmt: skip

    t = _handoff_throughput(50000 if quick else 300000)
    rows.append(
        row("base", "thread hand-off, unpaced", "items/s", t["ours"], "items/s",
            "call_soon_threadsafe per item", t["baseline"], ">= 2", t["ours"] / t["baseline"] >= 2,
            cpu=t["ours_cpu"], baseline_cpu=t["baseline_cpu"])
    )
    c = _consumer_handoff(20000 if quick else 100000)
    rows.append(
        row("base", "consumer hand-off to a thread, unpaced", "items/s", c["ours"], "items/s",
            "run_coroutine_threadsafe per item", c["baseline"], cpu=c["ours_cpu"], baseline_cpu=c["baseline_cpu"])
    )  # fmt: skip
    return rows
