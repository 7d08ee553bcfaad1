"""The serial round trip: send a message, wait for the board's answer to it, many times; how fast and how
steady. Works on any :class:`~rtcbot.SerialConnection` given how to make request ``i`` and how to recognise
its answer; the defaults speak the example Arduino's protocol (a motor command, answered by a reading that
reports the new speed)::

    result = await serial_round_trip(conn, count=100)
    print(result.messages_per_s, result.latency_p99_ms)

    # an echo board (or a loopback plug on a line protocol): the answer is the request
    result = await serial_round_trip(conn, request=lambda i: f"{i}\\n".encode(),
                                     is_reply=lambda i, line: line == str(i).encode())
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional

import numpy as np

__all__ = ["SerialRoundTripResult", "serial_round_trip"]


_STOP_MOTORS = {"left": 0, "right": 0}


def _motor_request(i: int) -> Dict[str, int]:
    return {"left": 10 + i % 200, "right": 0}


def _motor_reply(i: int, reading: Any) -> bool:
    return isinstance(reading, dict) and reading.get("left") == 10 + i % 200


@dataclass
class SerialRoundTripResult:
    """What :func:`serial_round_trip` measured. ``ok``: every request was answered."""

    sent: int
    answered: int
    seconds: float
    latencies_ms: List[float]

    @property
    def lost(self) -> int:
        return self.sent - self.answered

    @property
    def ok(self) -> bool:
        return self.sent > 0 and self.lost == 0

    @property
    def messages_per_s(self) -> float:
        return self.answered / self.seconds if self.seconds > 0 else 0.0

    def _percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")

    @property
    def latency_p50_ms(self) -> float:
        return self._percentile(50)

    @property
    def latency_p90_ms(self) -> float:
        return self._percentile(90)

    @property
    def latency_p99_ms(self) -> float:
        return self._percentile(99)

    @property
    def latency_max_ms(self) -> float:
        return max(self.latencies_ms) if self.latencies_ms else float("nan")

    def figures(self) -> Dict[str, Any]:
        return {
            "messages_per_s": self.messages_per_s,
            "latency_p50_ms": self.latency_p50_ms,
            "latency_p90_ms": self.latency_p90_ms,
            "latency_p99_ms": self.latency_p99_ms,
            "latency_max_ms": self.latency_max_ms,
            "lost": self.lost,
        }

    def __str__(self) -> str:
        return (
            f"serial round trip: {self.answered}/{self.sent} answered, {self.messages_per_s:.0f} messages/s, "
            f"latency p50 {self.latency_p50_ms:.2f} ms, p90 {self.latency_p90_ms:.2f} ms, "
            f"p99 {self.latency_p99_ms:.2f} ms, "
            f"max {self.latency_max_ms:.2f} ms"
        )


async def serial_round_trip(
    connection: Any,
    count: int = 50,
    request: Callable[[int], Any] = _motor_request,
    is_reply: Callable[[int, Any], bool] = _motor_reply,
    reply_timeout: float = 1.0,
    finally_send: Optional[Any] = _STOP_MOTORS,
) -> SerialRoundTripResult:
    """Send ``request(i)`` for i in 0..count-1, each once the previous one was answered (a message for
    which ``is_reply(i, message)`` is true) or ``reply_timeout`` passed (counted as lost). Then send
    ``finally_send`` (the default stops the example Arduino's motors; None sends nothing)."""
    if count < 1:
        raise ValueError(f"serial_round_trip count must be at least 1, got {count}")
    messages = connection.subscribe(asyncio.Queue())
    latencies: List[float] = []
    began = time.perf_counter()
    try:
        await asyncio.wait_for(connection.onReady(), 10)
        began = time.perf_counter()
        for i in range(count):
            sent = time.perf_counter()
            connection.put_nowait(request(i))
            deadline = sent + reply_timeout
            while True:
                remaining = deadline - time.perf_counter()
                try:
                    message = await asyncio.wait_for(messages.get(), max(0.0, remaining))
                except asyncio.TimeoutError:
                    break
                if is_reply(i, message):
                    latencies.append((time.perf_counter() - sent) * 1000)
                    break
        elapsed = time.perf_counter() - began
        if finally_send is not None:
            connection.put_nowait(finally_send)
    finally:
        connection.unsubscribe(messages)
    return SerialRoundTripResult(count, len(latencies), elapsed, latencies)
