"""RTCConnection between two Python peers (real aiortc on loopback): messages, data channels, video, audio,
the shared encoder, host-only candidates, and clean closing."""

from __future__ import annotations

import asyncio
import contextlib

import numpy as np
import pytest

pytest.importorskip("aiortc", reason="the web extra is not installed: pip install 'rtcbot[web]'")

from rtcbot.devices.sim import SimCamera, SimMicrophone, render_test_pattern  # noqa: E402
from rtcbot.errors import EncodeError  # noqa: E402
from rtcbot.web import RTCConnection  # noqa: E402
from rtcbot.web.encoder import SharedVideoEncoder  # noqa: E402
from rtcbot.web.tracks import FrameTrack  # noqa: E402
from tests.helpers import next_item, run  # noqa: E402


@contextlib.asynccontextmanager
async def connected(prepare_answerer=None, prepare_offerer=None):
    """Two connected RTCConnections (offerer, answerer); closed on the way out."""
    a, b = RTCConnection(), RTCConnection()
    try:
        if prepare_offerer:
            prepare_offerer(a)
        if prepare_answerer:
            prepare_answerer(b)
        offer = await a.getLocalDescription()
        answer = await b.getLocalDescription(offer)
        await a.setRemoteDescription(answer)
        await asyncio.wait_for(asyncio.gather(a.onReady(), b.onReady()), 10)
        yield a, b
    finally:
        await asyncio.gather(a.close(), b.close())


def test_messages_both_ways_keep_their_type():
    async def body():
        async with connected() as (a, b):
            qa, qb = a.subscribe(), b.subscribe()
            a.put_nowait({"left": 1, "right": [2, 3]})
            a.send("text")
            b.put_nowait(["x", None, True])
            assert await next_item(qb) == {"left": 1, "right": [2, 3]}
            assert await next_item(qb) == "text"
            assert await next_item(qa) == ["x", None, True]

    run(body())


def test_unsendable_message_fails_at_put_and_queues_nothing():
    async def body():
        async with connected() as (a, b):
            qb = b.subscribe()
            with pytest.raises(EncodeError):
                a.put_nowait({1, 2})
            a.put_nowait("after")
            assert await next_item(qb) == "after"

    run(body())


def test_added_data_channel_reaches_the_other_side():
    async def body():
        channels = []
        async with connected(prepare_offerer=lambda a: channels.append(a.addDataChannel("telemetry"))) as (a, b):
            remote = b.onDataChannel()
            try:  # it may have arrived while connecting, before onDataChannel was subscribed to
                channel = b.getDataChannel("telemetry")
            except KeyError:
                channel = await asyncio.wait_for(remote.get(), 5)
            assert channel.name == "telemetry"
            channels[0].put_nowait({"battery": 11.9})
            assert await next_item(channel.subscribe()) == {"battery": 11.9}
            with pytest.raises(KeyError):
                a.addDataChannel("telemetry")

    run(body())


def test_video_frames_arrive_as_bgr_arrays():
    async def body():
        with SimCamera(width=320, height=240, fps=30) as camera:
            async with connected(
                prepare_offerer=lambda a: a.video.subscribe(),
                prepare_answerer=lambda b: b.video.putSubscription(camera),
            ) as (a, b):
                frames = a.video.subscribe()
                frame = await next_item(frames, timeout=10)
                assert frame.shape == (240, 320, 3) and frame.dtype == np.uint8
                # The colour bars survive the codec: the left column is white-ish, the bottom right darker.
                reference = render_test_pattern(320, 240, 0)
                assert abs(float(frame[200:, :].mean()) - float(reference[200:, :].mean())) < 60

    run(body())


def test_audio_blocks_arrive_as_float_blocks():
    async def body():
        with SimMicrophone(frequency=440, amplitude=0.5) as mic:
            async with connected(
                prepare_offerer=lambda a: a.audio.subscribe(), prepare_answerer=lambda b: b.audio.putSubscription(mic)
            ) as (a, b):
                blocks = a.audio.subscribe()
                loud = 0.0
                for _ in range(50):  # Opus starts quiet; within a second the tone is there
                    block = await next_item(blocks, timeout=10)
                    assert block.dtype == np.float32 and block.ndim == 2
                    loud = max(loud, float(np.abs(block).max()))
                    if loud > 0.3:
                        break
                assert loud > 0.3

    run(body())


def test_only_host_candidates_without_ice_servers():
    async def body():
        conn = RTCConnection()
        conn.video.subscribe()
        offer = await conn.getLocalDescription()
        candidates = [line for line in offer["sdp"].splitlines() if line.startswith("a=candidate")]
        assert candidates and all(" typ host" in line for line in candidates)
        await conn.close()

    run(body())


def test_shared_encoder_encodes_once_for_every_viewer():
    async def body():
        with SimCamera(width=320, height=240, fps=30) as camera:
            async with contextlib.AsyncExitStack() as stack:
                encoder = SharedVideoEncoder(camera)
                stack.push_async_callback(encoder.aclose)
                pairs = []
                for _ in range(2):
                    pair = connected(
                        prepare_offerer=lambda a: a.video.subscribe(),
                        prepare_answerer=lambda b: b.video.putSubscription(encoder),
                    )
                    pairs.append(await stack.enter_async_context(pair))
                subscriptions = [a.video.subscribe() for a, _ in pairs]
                for _ in range(20):
                    for frames in subscriptions:
                        await next_item(frames, timeout=10)
                received = [a.video._receivers[0].count for a, _ in pairs]
                # Two viewers got a frame for each one encoded (give or take the keyframe wait at the start).
                assert min(received) >= 20 and encoder.encoded <= max(received) + 15

    run(body(), timeout=40)


def test_frame_track_wraps_frames_without_copying():
    async def body():
        queue: asyncio.Queue = asyncio.Queue()
        image = np.zeros((48, 64, 3), np.uint8)
        queue.put_nowait(image)
        frame = await FrameTrack(queue.get).recv()
        image[0, 0, 0] = 42
        assert np.frombuffer(memoryview(frame.planes[0]), np.uint8)[0] == 42

    run(body())


def test_close_twice_and_leaves_no_task():
    async def body():
        async with connected() as (a, b):
            pass
        await a.close()
        await b.close()
        assert a.closed and b.closed
        names = [t.get_coro().__qualname__ for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        assert not [n for n in names if n != "wait_for"], names  # wait_for: the test's own run()

    run(body())


def test_other_side_closing_closes_this_side():
    async def body():
        async with connected() as (a, b):
            closed = b.onClose()
            await a.close()
            await asyncio.wait_for(closed, 10)

    run(body())


def test_rtcbot_module_paths_still_work():
    from rtcbot.connection import RTCConnection as FromConnection
    from rtcbot.web import Websocket
    from rtcbot.websocket import Websocket as FromWebsocket

    assert FromConnection is RTCConnection and FromWebsocket is Websocket


def test_connection_with_shared_encoder_leaves_no_thread(no_leaks):
    async def body():
        with SimCamera(width=160, height=120, fps=30) as camera:
            encoder = SharedVideoEncoder(camera)
            async with connected(
                prepare_offerer=lambda a: a.video.subscribe(),
                prepare_answerer=lambda b: b.video.putSubscription(encoder),
            ) as (a, b):
                await next_item(a.video.subscribe(), timeout=10)
            await encoder.aclose()

    run(body())


def test_media_waits_in_bounded_subscriptions_until_sent():
    async def body():
        with SimMicrophone(blocksize=480) as mic, SimCamera(width=160, height=120, fps=30) as camera:
            conn = RTCConnection()  # never connected: nothing takes the media
            conn.audio.putSubscription(mic)
            conn.video.putSubscription(camera)
            audio, frames = conn.audio.subscription, conn.video.subscription
            blocks = mic.subscribe()
            for _ in range(20):  # 0.2 s of audio in 20 blocks: more than the bound
                await next_item(blocks, timeout=2)
            assert audio.qsize() <= 8 and audio.dropped > 0
            assert type(frames).__name__ == "MostRecentSubscription"
            await conn.close()
            dropped = audio.dropped
            for _ in range(10):
                await next_item(blocks, timeout=2)
            assert audio.dropped == dropped  # closing unsubscribed it from the microphone

    run(body())
