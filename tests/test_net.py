"""ZenohPublisher and ZenohSubscriber between two processes on loopback (explicit endpoints, no multicast),
and between two network namespaces joined by a veth pair where the machine allows it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import uuid

import numpy as np
import pytest

from rtcbot.net import SessionOptions, ZenohPublisher, ZenohSubscriber, open_session_count
from tests.helpers import run

pytest.importorskip("zenoh")

PEER = os.path.join(os.path.dirname(__file__), "fakes", "net_peer.py")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_peer(*args: str, prefix: tuple = ()) -> subprocess.Popen:
    return subprocess.Popen(
        [*prefix, sys.executable, PEER, *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop(proc: subprocess.Popen, timeout: float = 5.0) -> str:
    """Waits for the peer to exit (killing it after ``timeout``) and returns its output."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return out + err


@contextlib.contextmanager
def echo_peer():
    """An echo process connecting to this process, which listens on a free loopback port."""
    port = free_port()
    options = SessionOptions(listen=(f"tcp/127.0.0.1:{port}",), multicast=False)
    proc = start_peer("echo", "--connect", f"tcp/127.0.0.1:{port}")
    try:
        yield options, proc
    finally:
        if proc.poll() is None:
            proc.kill()
        stop(proc)


async def handshake(ping: ZenohPublisher, samples, timeout: float = 20.0) -> None:
    """Pings until the echo answers: then routes exist in both directions."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        ping.put_nowait("ping")
        try:
            sample = await asyncio.wait_for(samples.get(), 0.2)
        except asyncio.TimeoutError:
            assert loop.time() < deadline, "the echo peer never answered"
            continue
        if isinstance(sample.value, str) and sample.value == "pong":
            while not samples.empty():
                samples.get_nowait()
            return


async def round_trip(options: SessionOptions, items, name: str, **pub_kw):
    """Sends items to the echo peer under ``echo/in/<name>`` and returns what came back."""
    sub = ZenohSubscriber("echo/out/**", info=True, session=options)
    ping = ZenohPublisher("echo/in/ping", delivery="reliable", session=options)
    with sub, ping:
        samples = sub.subscribe()
        await handshake(ping, samples)
        with ZenohPublisher("echo/in/" + name, session=options, **pub_kw) as pub:
            for item in items:
                pub.put_nowait(item)
            got = [await asyncio.wait_for(samples.get(), 10.0) for _ in items]
            assert await pub.flush()
        ping.put_nowait("quit")
        assert await ping.flush()
    assert all(s.key == "echo/out/" + name for s in got)
    return [s.value for s in got], sub


def test_frames_round_trip_exactly_between_processes():
    frames = [np.full((480, 640, 3), i, np.uint8) for i in range(3)]
    with echo_peer() as (options, proc):
        got, _ = run(round_trip(options, frames, "frames", delivery="reliable"))
        assert "sessions=0" in stop(proc)
    for sent, back in zip(frames, got):
        assert back.dtype == sent.dtype and back.shape == sent.shape
        np.testing.assert_array_equal(back, sent)


def test_audio_blocks_round_trip_exactly_between_processes():
    rng = np.random.default_rng(1)
    blocks = [rng.standard_normal((480, 2)).astype(np.float32) for _ in range(5)]
    with echo_peer() as (options, proc):
        got, _ = run(round_trip(options, blocks, "audio"))
        stop(proc)
    for sent, back in zip(blocks, got):
        assert back.dtype == np.float32 and back.shape == (480, 2)
        np.testing.assert_array_equal(back, sent)


def test_dicts_round_trip_exactly_and_in_order():
    commands = [{"left": i / 10, "right": -i / 10, "name": f"cmd{i}", "stop": i == 9} for i in range(10)]
    with echo_peer() as (options, proc):
        got, _ = run(round_trip(options, commands, "cmd"))
        stop(proc)
    assert got == commands


def test_jpeg_frames_decode_to_the_right_shape():
    ys, xs = np.mgrid[0:480, 0:640]
    frame = np.stack([(xs % 256), (ys % 256), ((xs + ys) % 256)], axis=2).astype(np.uint8)
    with echo_peer() as (options, proc):
        got, _ = run(round_trip(options, [frame], "jpeg", jpeg_quality=85, delivery="reliable"))
        stop(proc)
    assert got[0].shape == (480, 640, 3) and got[0].dtype == np.uint8
    assert np.abs(got[0].astype(int) - frame).mean() < 4


def test_malformed_sample_is_dropped_and_counted():
    with echo_peer() as (options, proc):
        got, sub = run(round_trip(options, ["malformed"], "bad"))
        stop(proc)
    assert got == ["after-malformed"]  # the subscriber carried on
    assert sub.stats.malformed == 1


def test_subscriber_picks_up_a_restarted_publisher():
    port = free_port()
    options = SessionOptions(listen=(f"tcp/127.0.0.1:{port}",), multicast=False)

    async def main():
        with ZenohSubscriber("stream/counter", session=options) as sub:
            items = sub.subscribe()
            first = start_peer("stream", "--connect", f"tcp/127.0.0.1:{port}", "--run", "1")
            try:
                assert (await asyncio.wait_for(items.get(), 20.0))["run"] == 1
            finally:
                first.kill()  # dies mid-stream, like a crash
                stop(first)
            second = start_peer("stream", "--connect", f"tcp/127.0.0.1:{port}", "--run", "2")
            try:
                while True:
                    item = await asyncio.wait_for(items.get(), 20.0)
                    if item["run"] == 2:
                        return item
            finally:
                second.kill()
                stop(second)

    assert run(main(), timeout=45)["run"] == 2


def test_close_leaves_no_session_behind(no_leaks):
    port = free_port()
    options = SessionOptions(listen=(f"tcp/127.0.0.1:{port}",), multicast=False)

    async def main():
        sub = ZenohSubscriber("x/**", session=options)
        pub = ZenohPublisher("x/y", session=options)
        assert open_session_count() == 1  # both share one session
        pub.put_nowait({"a": 1})
        assert await pub.flush()
        pub.close()
        assert open_session_count() == 1  # the subscriber still holds it
        sub.close()
        pub.close()  # idempotent
        sub.close()

    run(main())
    assert open_session_count() == 0
    with socket.socket() as s:  # the listening socket went away with the session
        s.bind(("127.0.0.1", port))


def test_a_slow_latest_subscriber_sees_the_newest_sample_not_a_backlog():
    """Bursts of samples all cross Zenoh (the publisher sends each one), but a reader that looks once per
    burst gets that burst's newest sample and nothing else: the stale ones were dropped, not queued. A
    second subscription that keeps everything (an asyncio.Queue) is the witness of what arrived."""
    bursts, per_burst = 4, 20

    async def main():
        options = SessionOptions(multicast=False)
        with ZenohSubscriber("latest/n", session=options, delivery="latest") as sub:
            with ZenohPublisher("latest/n", session=options, delivery="latest") as pub:
                samples = sub.subscribe()  # the default for "latest": a MostRecentSubscription
                everything = sub.subscribe(asyncio.Queue())
                await asyncio.wait_for(sub.onReady(), 10.0)
                arrived = 0
                for burst in range(bursts):
                    first, last = burst * per_burst, (burst + 1) * per_burst - 1
                    for n in range(first, last + 1):  # fast: every sample is sent, none waits for the reader
                        pub.put_nowait(n)
                        assert await pub.flush(10.0)
                    seen = []
                    while not seen or seen[-1] != last:  # the burst's newest reached the loop
                        seen.append(await asyncio.wait_for(everything.get(), 10.0))
                    assert seen == sorted(seen) and first <= seen[0]
                    arrived += len(seen)
                    # slow: one look per burst, and it is the newest; nothing older waits behind it
                    assert samples.get_nowait() == last
                    assert samples.empty()
                    assert samples.dropped == arrived - (burst + 1)
                assert pub.stats.sent == bursts * per_burst
                assert sub.stats.received == bursts * per_burst and sub.stats.missed == 0

    run(main())


def test_video_is_declared_with_drop_congestion_and_control_with_block():
    import zenoh

    async def main():
        options = SessionOptions(multicast=False)
        with ZenohPublisher("v", session=options) as video, ZenohPublisher("c", session=options) as control:
            video.put_nowait(np.zeros((48, 64, 3), np.uint8))
            control.put_nowait({"stop": True})
            assert await video.flush() and await control.flush()
            assert video.delivery == "latest" and control.delivery == "reliable"
            assert video._publisher.congestion_control == zenoh.CongestionControl.DROP
            assert control._publisher.congestion_control == zenoh.CongestionControl.BLOCK
        with ZenohSubscriber("v", session=options, delivery="latest") as sub:
            assert type(sub.subscribe()).__name__ == "MostRecentSubscription"

    run(main())


# -- two hosts: network namespaces joined by a veth pair -------------------------------------------


def _netns_unavailable() -> str:
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2 ('ip') is not installed"
    name = f"rtcbot-probe-{os.getpid()}"
    probe = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"'ip netns add' failed: {probe.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return ""


@contextlib.contextmanager
def two_hosts():
    """Two namespaces, 10.99.<n>.1 and 10.99.<n>.2, joined by a veth pair; removed on exit."""
    tag = uuid.uuid4().hex[:6]
    a, b = f"rtcbot-a-{tag}", f"rtcbot-b-{tag}"
    net = 100 + os.getpid() % 100

    def sh(*cmd):
        subprocess.run(cmd, check=True, capture_output=True, timeout=10)

    try:
        sh("ip", "netns", "add", a)
        sh("ip", "netns", "add", b)
        sh("ip", "link", "add", f"va-{tag}", "type", "veth", "peer", "name", f"vb-{tag}")
        sh("ip", "link", "set", f"va-{tag}", "netns", a)
        sh("ip", "link", "set", f"vb-{tag}", "netns", b)
        for ns, dev, ip in ((a, f"va-{tag}", f"10.99.{net}.1/24"), (b, f"vb-{tag}", f"10.99.{net}.2/24")):
            sh("ip", "-n", ns, "addr", "add", ip, "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        yield (a, f"10.99.{net}.1"), (b, f"10.99.{net}.2")
    finally:
        subprocess.run(["ip", "netns", "del", a], capture_output=True)
        subprocess.run(["ip", "netns", "del", b], capture_output=True)


def test_two_network_namespaces_stream_over_a_veth_pair():
    reason = _netns_unavailable()
    if reason:
        pytest.skip(reason)
    try:
        hosts = two_hosts()
        (ns_a, ip_a), (ns_b, _) = hosts.__enter__()
    except subprocess.CalledProcessError as e:
        pytest.skip(f"cannot build a veth pair here: {e.stderr.decode(errors='replace').strip()}")
    try:
        endpoint = f"tcp/{ip_a}:7447"
        echo = start_peer("echo", "--listen", endpoint, prefix=("ip", "netns", "exec", ns_a))
        probe = start_peer("probe", "--connect", endpoint, prefix=("ip", "netns", "exec", ns_b))
        probe_out = stop(probe, timeout=40)
        echo_out = stop(echo, timeout=5)
        assert probe.returncode == 0, f"probe: {probe_out}\necho: {echo_out}"
        assert "probe: ok" in probe_out
        assert "sessions=0" in echo_out
    finally:
        hosts.__exit__(None, None, None)


# -- one process, one session (Zenoh delivers locally) ---------------------------------------------

LOCAL = SessionOptions(multicast=False, listen=("tcp/127.0.0.1:0",))


def test_received_arrays_are_writable_and_not_overwritten_while_held():
    async def main():
        with ZenohSubscriber("a/arr", session=LOCAL) as sub, ZenohPublisher("a/arr", session=LOCAL) as pub:
            items = sub.subscribe()
            held = []
            for i in range(40):  # more than the subscriber's buffer pool
                pub.put_nowait(np.full((4, 4), i, np.int16))
                held.append(await asyncio.wait_for(items.get(), 5))
        return held

    held = run(main())
    assert all(a.flags.writeable for a in held)
    assert [int(a[0, 0]) for a in held] == list(range(40))  # none was reused under a holder
    held[0][0, 0] = 99


def test_items_put_before_close_are_still_sent():
    async def main():
        with ZenohSubscriber("a/last", session=LOCAL) as sub:
            items = sub.subscribe()
            pub = ZenohPublisher("a/last", session=LOCAL)
            for i in range(20):
                pub.put_nowait({"n": i})
            pub.close()  # no flush: close sends what was put
            return [(await asyncio.wait_for(items.get(), 5))["n"] for _ in range(20)]

    assert run(main()) == list(range(20))


def test_an_item_with_no_encoding_is_skipped_and_counted():
    async def main():
        with ZenohSubscriber("a/bad", session=LOCAL) as sub, ZenohPublisher("a/bad", session=LOCAL) as pub:
            items = sub.subscribe()
            pub.put_nowait({"ok": 1})
            pub.put_nowait({1, 2})  # a set: no encoding
            pub.put_nowait({"ok": 2})
            got = [await asyncio.wait_for(items.get(), 5) for _ in range(2)]
            assert await pub.flush()
            return got, pub.stats

    got, stats = run(main())
    assert got == [{"ok": 1}, {"ok": 2}]
    assert stats.encode_errors == 1 and stats.sent == 2


def test_wildcard_subscriber_tells_keys_apart_with_info():
    async def main():
        with ZenohSubscriber("fleet/*/status", info=True, session=LOCAL) as sub:
            items = sub.subscribe()
            r1 = ZenohPublisher("fleet/r1/status", session=LOCAL)
            r2 = ZenohPublisher("fleet/r2/status", session=LOCAL)
            with r1, r2:
                r1.put_nowait("r1 ok")
                r2.put_nowait("r2 ok")
                got = [await asyncio.wait_for(items.get(), 5) for _ in range(2)]
        return {s.key: (s.value, s.seq) for s in got}

    assert run(main()) == {"fleet/r1/status": ("r1 ok", 1), "fleet/r2/status": ("r2 ok", 1)}


class _FailingPuts:
    """Forces a send fault: the real Zenoh publisher, whose put() fails as on a dead session."""

    def __init__(self, publisher):
        self._publisher = publisher

    def put(self, *args, **kwargs):
        import zenoh

        raise zenoh.ZError("session closed (forced by the test)")

    def undeclare(self):
        self._publisher.undeclare()


class _FailingDeclares:
    """Forces a declare fault: the real session lease, whose session refuses to declare publishers."""

    def __init__(self, lease):
        self._lease = lease
        self.session = self

    def declare_publisher(self, key, **qos):
        import zenoh

        raise zenoh.ZError(f"cannot declare {key} (forced by the test)")

    def release(self):
        self._lease.release()


def test_a_failed_send_fires_on_error_and_closes_the_publisher():
    async def main():
        pub = ZenohPublisher("fault/send", session=SessionOptions(multicast=False), delivery="reliable")
        pub._publisher = _FailingPuts(pub._publisher)
        pub.put_nowait({"a": 1})
        err = await asyncio.wait_for(pub.onError(), 10.0)
        assert "session closed (forced by the test)" in str(err)
        await asyncio.wait_for(pub.onClose(), 10.0)
        assert pub.closed and pub.stats.sent == 0
        pub.close()  # idempotent after the failure

    run(main())
    assert open_session_count() == 0


def test_a_failed_declare_at_the_first_item_fires_on_error_naming_the_key():
    from rtcbot.errors import DeviceOpenError

    async def main():
        pub = ZenohPublisher("fault/declare", session=SessionOptions(multicast=False))  # "auto": declared later
        pub._lease = _FailingDeclares(pub._lease)
        pub.put_nowait({"a": 1})
        err = await asyncio.wait_for(pub.onError(), 10.0)
        assert isinstance(err, DeviceOpenError) and "'fault/declare'" in str(err)
        await asyncio.wait_for(pub.onClose(), 10.0)
        assert pub.closed and pub.stats.sent == 0
        pub.close()

    run(main())
    assert open_session_count() == 0


def test_bad_endpoint_is_a_value_error_naming_it():
    with pytest.raises(ValueError, match="192.168.1.20"):
        ZenohPublisher("x", connect=["192.168.1.20"])


def test_session_comes_from_a_zenoh_config_file(tmp_path):
    port = free_port()
    config = tmp_path / "zenoh.json5"
    config.write_text(
        f'{{ listen: {{ endpoints: ["tcp/127.0.0.1:{port}"] }}, scouting: {{ multicast: {{ enabled: false }} }} }}'
    )

    async def main():
        with ZenohSubscriber("cfg/x", config_file=str(config)):
            with socket.socket() as s, pytest.raises(OSError):  # Zenoh listens where the file says
                s.bind(("127.0.0.1", port))

    run(main())


def test_configure_sets_the_default_session_options():
    from rtcbot.net import configure, default_options

    before = default_options()
    try:
        options = configure(mode="client", connect=["tcp/127.0.0.1:7447"], multicast=False)
        assert default_options() == options
        assert options.mode == "client" and options.connect == ("tcp/127.0.0.1:7447",)
    finally:
        configure(**{k: getattr(before, k) for k in ("mode", "multicast", "config_file")})
    assert default_options() == before
