"""The other host in the network tests: a separate process speaking Zenoh through rtcbot.net.

    python tests/fakes/net_peer.py echo --listen tcp/127.0.0.1:7447
    python tests/fakes/net_peer.py stream --connect tcp/127.0.0.1:7447 --run 2
    python tests/fakes/net_peer.py probe --connect tcp/10.99.0.1:7447

- echo: republishes every item of ``echo/in/<name>`` on ``echo/out/<name>`` (``ping`` answers ``pong``;
  ``malformed`` sends an undecodable sample with raw Zenoh, then ``after-malformed``; ``quit`` closes
  everything and prints ``sessions=<open sessions>``).
- stream: publishes ``{"run": run, "n": i}`` on ``stream/counter`` at 50 Hz until killed.
- probe: the test side of echo, for a host the test process cannot be in (a network namespace); exits 0
  when a frame, an audio block and a dict came back exactly.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

import numpy as np  # noqa: E402

from rtcbot.net import (  # noqa: E402
    SessionOptions,
    ZenohPublisher,
    ZenohSubscriber,
    acquire_session,
    open_session_count,
)

BAD_ENCODING = "rtcbot/ndarray;|u1;2,2"  # claims 4 bytes, the payload has 3


async def echo(options: SessionOptions) -> None:
    sub = ZenohSubscriber("echo/in/**", info=True, session=options)
    pubs = {}
    samples = sub.subscribe()
    lease = acquire_session(options)
    try:
        while True:
            sample = await samples.get()
            name = sample.key.split("/", 2)[2]
            value = sample.value
            if isinstance(value, str) and value == "quit":
                break
            if name not in pubs:
                pubs[name] = ZenohPublisher("echo/out/" + name, delivery="reliable", session=options)
            if isinstance(value, str) and value == "malformed":
                import zenoh

                # Same QoS as the reliable publisher, so it stays in order with what follows.
                lease.session.put(
                    "echo/out/" + name,
                    b"abc",
                    encoding=BAD_ENCODING,
                    congestion_control=zenoh.CongestionControl.BLOCK,
                    priority=zenoh.Priority.INTERACTIVE_HIGH,
                )
                value = "after-malformed"
            elif isinstance(value, str) and value == "ping":
                value = "pong"
            pubs[name].put_nowait(value)
    finally:
        # Let the publishers flush what they were given before closing (bounded).
        for pub in pubs.values():
            await pub.flush()
            pub.close()
        sub.close()
        lease.release()
    print(f"sessions={open_session_count()}", flush=True)


async def stream(options: SessionOptions, run: int) -> None:
    with ZenohPublisher("stream/counter", delivery="reliable", session=options) as pub:
        n = 0
        while True:
            pub.put_nowait({"run": run, "n": n})
            n += 1
            await asyncio.sleep(0.02)  # pacing: 50 items a second


async def probe(options: SessionOptions) -> int:
    frame = np.arange(120 * 160 * 3, dtype=np.uint8).reshape(120, 160, 3)
    block = np.linspace(-1, 1, 960, dtype=np.float32).reshape(480, 2)
    command = {"left": 0.25, "right": -0.5}
    sub = ZenohSubscriber("echo/out/**", info=True, session=options)
    ping = ZenohPublisher("echo/in/ping", delivery="reliable", session=options)
    with sub, ping:
        samples = sub.subscribe()
        await handshake(ping, samples, timeout=20.0)
        for name, item in (("frame", frame), ("audio", block), ("cmd", command)):
            with ZenohPublisher("echo/in/" + name, delivery="reliable", session=options) as pub:
                pub.put_nowait(item)
                sample = await asyncio.wait_for(samples.get(), 10.0)
                await pub.flush()
            if sample.key != "echo/out/" + name or not _same(sample.value, item):
                print(f"probe: {name} came back as {sample!r}", flush=True)
                return 1
        ping.put_nowait("quit")
        await ping.flush()
    print("probe: ok", flush=True)
    return 0


async def handshake(ping: ZenohPublisher, samples: asyncio.Queue, timeout: float) -> None:
    """Pings until the echo answers: then both directions are routed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        ping.put_nowait("ping")
        try:
            sample = await asyncio.wait_for(samples.get(), 0.2)
        except asyncio.TimeoutError:
            if loop.time() > deadline:
                raise
            continue
        if sample.value == "pong":
            while not samples.empty():  # answers to earlier pings
                samples.get_nowait()
            return


def _same(a: object, b: object) -> bool:
    if isinstance(b, np.ndarray):
        same_kind = isinstance(a, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape
        return same_kind and bool((a == b).all())
    return a == b


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("role", choices=("echo", "stream", "probe"))
    parser.add_argument("--connect", action="append", default=[])
    parser.add_argument("--listen", action="append", default=[])
    parser.add_argument("--run", type=int, default=1)
    args = parser.parse_args()
    options = SessionOptions(connect=tuple(args.connect), listen=tuple(args.listen), multicast=False)
    if args.role == "echo":
        asyncio.run(echo(options))
    elif args.role == "stream":
        asyncio.run(stream(options, args.run))
    else:
        return asyncio.run(probe(options))
    return 0


if __name__ == "__main__":
    sys.exit(main())
