"""Stream items between hosts over Zenoh: a consumer that publishes and a producer that subscribes.

On the robot::

    camera = CVCamera()
    video = ZenohPublisher("robot1/camera", jpeg_quality=80)
    video.putSubscription(camera)                  # every frame is published as a JPEG

On the desktop::

    video = ZenohSubscriber("robot1/camera", delivery="latest")
    frame = await video.get()                     # a numpy frame again, as on the robot

Delivery (``delivery=``) says what happens under congestion:

- ``"latest"``: video. Zenoh drops samples rather than queue them (congestion control DROP, express,
  best effort); the subscriber's default subscription is a MostRecentSubscription, so a slow reader
  gets the newest frame, never a backlog.
- ``"reliable"``: control messages, audio, sensor readings. Nothing is dropped: congestion control
  BLOCK, reliable, ordered, a higher priority than video; the subscriber's default subscription is an
  unbounded asyncio.Queue.
- ``"auto"`` (the publisher's default) picks ``"latest"`` if the first item is a frame (uint8, (H, W)
  or (H, W, 3)) and ``"reliable"`` otherwise. The subscriber defaults to ``"reliable"``: pass
  ``delivery="latest"`` for video.

The encoding travels with each sample (see :mod:`rtcbot.net.codec`), so subscribers decode arrays,
JPEG frames, bytes, str and JSON without being told. A sample that does not decode is dropped, counted in
``stats.malformed`` and logged. Publishers and subscribers share one Zenoh session per process (see
:mod:`rtcbot.net.session`); pass ``connect=``/``listen=``/``mode=``... to choose it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
import threading
import time
from typing import Any, Dict, Iterable, NamedTuple, Optional

from .._ratelimit import EverySoOften
from ..base import (
    BaseSubscriptionConsumer,
    SubscriptionClosed,
    ThreadedSubscriptionConsumer,
    ThreadedSubscriptionProducer,
)
from ..base.bufferpool import BufferPool
from ..errors import DeviceOpenError, EncodeError
from ..subscriptions import MostRecentSubscription
from ._send_queue import QueueClosed, SendQueue
from .codec import DEFAULT_MAX_BYTES, DecodeError, SampleTooLargeError, decode, encode, is_frame
from .session import SessionLease, SessionOptions, acquire_session, default_options

__all__ = ["PublisherStats", "SubscriberStats", "ZenohPublisher", "ZenohSample", "ZenohSubscriber"]

DELIVERIES = ("auto", "latest", "reliable")

# The attachment rtcbot adds to each sample: magic, publisher id, sequence number, publish time (ns).
_HEADER = struct.Struct("<4sIQq")
_MAGIC = b"rtc1"
_MAX_TRACKED_PUBLISHERS = 256
_RELIABLE_DEPTH = 8  # items a reliable publisher keeps queued for its sending thread
_LOG_EVERY = 5.0  # seconds between repeated warnings about bad items


class ZenohSample(NamedTuple):
    """An item with where and when it was published (``ZenohSubscriber(..., info=True)`` produces these).

    ``sent`` is the publisher's clock (seconds since the epoch), None if the publisher is not rtcbot.
    """

    value: Any
    key: str
    seq: Optional[int]
    sent: Optional[float]


class PublisherStats:
    """What a publisher did: ``sent`` samples, ``encode_errors`` (items with no encoding, skipped)."""

    def __init__(self) -> None:
        self.sent = 0
        self.encode_errors = 0

    def __repr__(self) -> str:
        return f"PublisherStats(sent={self.sent}, encode_errors={self.encode_errors})"


class SubscriberStats:
    """What a subscriber saw: ``received`` items, ``malformed`` samples dropped (undecodable or over
    ``max_bytes``), ``missed`` samples (gaps in a publisher's sequence numbers: dropped on the way)."""

    def __init__(self) -> None:
        self.received = 0
        self.malformed = 0
        self.missed = 0

    def __repr__(self) -> str:
        return f"SubscriberStats(received={self.received}, malformed={self.malformed}, missed={self.missed})"


def _check_delivery(delivery: str, allowed: Iterable[str]) -> None:
    if delivery not in allowed:
        raise ValueError(f"delivery must be one of {tuple(allowed)}, got {delivery!r}")


def _session_options(
    session: Optional[SessionOptions],
    mode: Optional[str],
    connect: Optional[Iterable[str]],
    listen: Optional[Iterable[str]],
    multicast: Optional[bool],
    config_file: Optional[str],
) -> SessionOptions:
    base = session if session is not None else default_options()
    return base.with_overrides(mode, connect, listen, multicast, config_file)


def _qos(zenoh: Any, delivery: str) -> Dict[str, Any]:
    if delivery == "latest":
        return dict(
            congestion_control=zenoh.CongestionControl.DROP,
            express=True,
            priority=zenoh.Priority.DATA,
            reliability=zenoh.Reliability.BEST_EFFORT,
        )
    return dict(
        congestion_control=zenoh.CongestionControl.BLOCK,
        express=False,
        priority=zenoh.Priority.INTERACTIVE_HIGH,
        reliability=zenoh.Reliability.RELIABLE,
    )


class ZenohPublisher(ThreadedSubscriptionConsumer):
    """A consumer that publishes every item it consumes under a Zenoh key::

        pub = ZenohPublisher("robot1/camera", jpeg_quality=80)
        pub.putSubscription(camera)                      # stream a camera
        cmd = ZenohPublisher("robot1/cmd")
        cmd.put_nowait({"left": 0.4, "right": 0.6})      # or put items directly

    :param key: the Zenoh key expression, e.g. ``"robot1/camera"``.
    :param delivery: ``"latest"`` (video: stale samples dropped under congestion), ``"reliable"``
        (commands: nothing dropped, in order) or ``"auto"`` (default: ``"latest"`` if the first item is a
        frame, else ``"reliable"``).
    :param jpeg_quality: 1-100 to send frames as JPEG (other arrays still go raw); None sends them raw.
    :param mode, connect, listen, multicast, config_file: the Zenoh session (see :mod:`rtcbot.net.session`);
        ``session`` takes a whole :class:`SessionOptions`. Unset ones come from ``rtcbot.net.configure()``.
    :param joinTimeout: seconds ``close()`` waits for items already put to be sent.

    Encoding and sending run in the worker thread of the threaded consumer flavour, so a JPEG encode or a
    blocked ``reliable`` send never stalls the event loop; a task on the loop moves items from the active
    subscription to it in batches (a :class:`~rtcbot.net._send_queue.SendQueue`), waking the loop only when
    it waits. An item with no encoding (e.g. a set) is skipped, counted in
    ``stats.encode_errors`` and logged. ``await pub.flush()`` waits until everything put was sent.
    """

    _lease: Optional[SessionLease] = None
    _task: Optional[asyncio.Task[None]] = None
    _queue: Optional[SendQueue] = None
    _publisher: Any = None

    def __init__(
        self,
        key: str,
        *,
        delivery: str = "auto",
        jpeg_quality: Optional[int] = None,
        mode: Optional[str] = None,
        connect: Optional[Iterable[str]] = None,
        listen: Optional[Iterable[str]] = None,
        multicast: Optional[bool] = None,
        config_file: Optional[str] = None,
        session: Optional[SessionOptions] = None,
        logger: Optional[logging.Logger] = None,
        loop: Optional[asyncio.AbstractEventLoop] = None,
        joinTimeout: float = 1.0,
    ) -> None:
        _check_delivery(delivery, DELIVERIES)
        if jpeg_quality is not None and (not isinstance(jpeg_quality, int) or not 1 <= jpeg_quality <= 100):
            raise ValueError(f"jpeg_quality must be an int from 1 to 100 or None, got {jpeg_quality!r}")
        options = _session_options(session, mode, connect, listen, multicast, config_file)
        super().__init__(
            directPutSubscriptionType=MostRecentSubscription if delivery == "latest" else asyncio.Queue,
            logger=logger if logger is not None else logging.getLogger("rtcbot.net.ZenohPublisher"),
            loop=loop,
        )
        self.key = key
        self.delivery = delivery
        self.jpeg_quality = jpeg_quality
        self.joinTimeout = joinTimeout
        self.stats = PublisherStats()
        self._pid = int.from_bytes(os.urandom(4), "little")
        self._seq = 0
        self._encode_errors_log = EverySoOften(self._log, _LOG_EVERY)
        self._zenoh = _require_zenoh()
        self._lease = acquire_session(options)
        try:
            if delivery != "auto":
                self._publisher = self._declare(delivery)
        except BaseException:
            self._release()
            raise
        self._queue = SendQueue(self._loop, depth=1 if delivery == "latest" else _RELIABLE_DEPTH)
        self._task = self._loop.create_task(self._run())
        self._task.add_done_callback(self._run_ended)

    def _declare(self, delivery: str) -> Any:
        assert self._lease is not None
        try:
            publisher = self._lease.session.declare_publisher(self.key, **_qos(self._zenoh, delivery))
        except self._zenoh.ZError as e:
            raise DeviceOpenError(f"cannot publish on Zenoh key {self.key!r}: {e}") from e
        self._log.debug("publishing %r with delivery %s", self.key, delivery)
        return publisher

    async def _run(self) -> None:
        """On the loop: moves items from the active subscription to the sending thread."""
        queue = self._queue
        assert queue is not None
        while True:
            try:
                item = await BaseSubscriptionConsumer._get(self)  # the async read, on the loop
            except SubscriptionClosed:
                return
            if self._shouldClose:
                return
            if self.delivery == "auto":
                self.delivery = "latest" if is_frame(item) else "reliable"
                queue.depth = 1 if self.delivery == "latest" else _RELIABLE_DEPTH
            queue.put(item)
            if queue.pending >= queue.depth:
                # Video (depth 1) waits for each send, so the next frame taken is the newest; reliable
                # streams refill once half the queue is sent, waking the loop once per few items.
                await queue.wait_below(max(1, queue.depth // 2))

    def _consumer(self) -> None:
        """The worker thread: encode and put each item, in order, until closed and drained. A failed send
        ends the worker with the error (onError fires and the publisher closes)."""
        queue = self._queue
        assert queue is not None
        self._setReady(True)
        while True:
            try:
                item = queue.get()
            except QueueClosed:
                return
            try:
                self._send(item)
            except Exception:
                if self._shouldClose:
                    return  # the publisher was undeclared under a late send
                queue.close(drain=False)
                queue.done()
                raise
            queue.done()

    def _send(self, item: Any) -> None:
        try:
            encoded = encode(item, self.jpeg_quality)
        except EncodeError as e:
            self.stats.encode_errors += 1
            self._encode_errors_log.error(
                "%s %r: item skipped (%d so far): %s", type(self).__name__, self.key, self.stats.encode_errors, e
            )
            return
        publisher = self._publisher
        if publisher is None:  # "auto": _run() chose the delivery from the first item
            publisher = self._publisher = self._declare(self.delivery)
        self._seq += 1
        attachment = _HEADER.pack(_MAGIC, self._pid, self._seq, time.time_ns())
        publisher.put(encoded.payload, encoding=encoded.encoding, attachment=attachment)
        self.stats.sent += 1

    def _run_ended(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        err = task.exception()
        if err is not None and not self._shouldClose:
            self._log.error("%s %r stopped: %s", type(self).__name__, self.key, err, exc_info=err)
            self._setError(err)
            self._close()

    def _idle(self) -> bool:
        queue = self._queue
        return (
            (queue is None or queue.pending == 0)
            and not self._unread_direct_items()
            and not self._get_holds_an_item()  # an item handed over by _get(), not yet picked up by _run()
        )

    async def flush(self, timeout: float = 5.0) -> bool:
        """Waits until every item given so far has been sent (nothing queued, no send in progress); False
        if that did not happen within ``timeout`` seconds::

            cmd.put_nowait({"left": 0, "right": 0})
            await cmd.flush()
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self._idle():
            queue = self._queue
            if self._shouldClose or queue is None:
                return False
            try:
                if queue.pending:
                    await asyncio.wait_for(queue.wait_below(1), max(0.0, deadline - loop.time()))
                else:  # the item is on its way from the subscription to the queue: let _run() move it
                    await asyncio.sleep(0)
            except asyncio.TimeoutError:
                return self._idle()
            if loop.time() > deadline:
                return self._idle()
        return True

    def _release(self) -> None:
        """Undeclare the publisher and release the session (once)."""
        publisher, self._publisher = self._publisher, None
        if publisher is not None:
            publisher.undeclare()
        lease, self._lease = self._lease, None
        if lease is not None:
            lease.release()

    def _closeNow(self) -> None:
        """The loop-side close: stop moving items, then release Zenoh and close the subscriptions."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
        queue = self._queue
        if queue is not None:
            queue.close(drain=False)
        self._release()
        super()._closeNow()

    def close(self) -> None:
        """Stops publishing: items already put are still sent (for at most ``joinTimeout`` seconds), then the
        publisher is undeclared and the session released. Idempotent, from any thread."""
        queue = self._queue
        if queue is not None and not self.closed and self._onLoopThread():
            for item in self._take_unread_direct_items():  # put_nowait() then close(): still send it
                queue.put(item)
        if queue is not None:
            queue.close(drain=True)  # the worker sends what is queued, then returns
        super().close()


class ZenohSubscriber(ThreadedSubscriptionProducer):
    """A producer of the items published under a Zenoh key (wildcards allowed)::

        video = ZenohSubscriber("robot1/camera", delivery="latest")
        display.putSubscription(video)

        @ZenohSubscriber("fleet/*/status").subscribe
        def status(msg):
            print(msg)

    :param key: the key expression; ``*`` matches one chunk, ``**`` any number (``"fleet/**"``).
    :param delivery: ``"reliable"`` (default: ``subscribe()`` gives an asyncio.Queue, nothing dropped) or
        ``"latest"`` (``subscribe()`` gives a MostRecentSubscription: a slow reader gets the newest item).
    :param info: produce :class:`ZenohSample` (value, key, seq, sent) instead of bare values, to tell
        publishers apart on a wildcard key or to measure latency.
    :param max_bytes: larger samples (or arrays and JPEGs that would decode larger) are dropped.
    :param mode, connect, listen, multicast, config_file, session: the Zenoh session, as for ZenohPublisher.

    Samples are decoded in Zenoh's receive thread, off the event loop, and handed to the loop in batches
    (the threaded producer flavour's ``_put_nowait``); its worker thread owns the Zenoh subscriber.
    ``stats`` counts received, malformed and missed samples.
    """

    _lease: Optional[SessionLease] = None
    _subscriber: Any = None

    def __init__(
        self,
        key: str,
        *,
        delivery: str = "reliable",
        info: bool = False,
        max_bytes: int = DEFAULT_MAX_BYTES,
        mode: Optional[str] = None,
        connect: Optional[Iterable[str]] = None,
        listen: Optional[Iterable[str]] = None,
        multicast: Optional[bool] = None,
        config_file: Optional[str] = None,
        session: Optional[SessionOptions] = None,
        logger: Optional[logging.Logger] = None,
        loop: Optional[asyncio.AbstractEventLoop] = None,
    ) -> None:
        _check_delivery(delivery, ("latest", "reliable"))
        options = _session_options(session, mode, connect, listen, multicast, config_file)
        latest = delivery == "latest"
        self._release_lock = threading.Lock()
        # Decoded items wait for the event loop; video keeps only the newest few.
        self._handoff_limit = 2 if latest else 1 << 16
        super().__init__(
            defaultSubscriptionType=MostRecentSubscription if latest else asyncio.Queue,
            logger=logger if logger is not None else logging.getLogger("rtcbot.net.ZenohSubscriber"),
            loop=loop,
        )
        self.key = key
        self.delivery = delivery
        self.info = info
        self.max_bytes = max_bytes
        # Decoded arrays reuse buffers consumers have let go of: no fresh memory per frame.
        self._pool = BufferPool(slots=4 if latest else 32)
        self.stats = SubscriberStats()
        self._stats_lock = threading.Lock()
        self._last_seq: Dict[int, int] = {}
        self._malformed_log = EverySoOften(self._log, _LOG_EVERY)
        self._handler_bugs_log = EverySoOften(self._log, _LOG_EVERY)
        zenoh = _require_zenoh()
        self._put_kind = zenoh.SampleKind.PUT
        self._lease = acquire_session(options)
        try:
            self._subscriber = self._lease.session.declare_subscriber(key, self._on_sample)
        except zenoh.ZError as e:
            self._release()
            raise DeviceOpenError(f"cannot subscribe to Zenoh key {key!r}: {e}") from e

    def _producer(self) -> None:
        """The worker thread owns the Zenoh subscriber: ready once declared, undeclared on close."""
        try:
            self._setReady(True)
            self._wait_closed()
        finally:
            self._release()

    def _on_sample(self, sample: Any) -> None:
        """In Zenoh's receive thread: decode, count, hand to the loop. Must never raise into Zenoh."""
        if self._shouldClose or sample.kind != self._put_kind:
            return
        try:
            self._handle(sample)
        except DecodeError as e:
            self._malformed(sample, e)
        except Exception:  # a bug here would otherwise vanish inside Zenoh's thread
            self._handler_bugs_log.exception("%s %r: failed to handle a sample", type(self).__name__, self.key)

    def _handle(self, sample: Any) -> None:
        payload = sample.payload
        if len(payload) > self.max_bytes:
            raise SampleTooLargeError(f"sample of {len(payload)} bytes is over max_bytes={self.max_bytes}")
        value = decode(str(sample.encoding), payload.to_bytes(), self.max_bytes, self._pool.take)
        seq, sent = self._track(sample.attachment)
        if self.info:
            value = ZenohSample(value, str(sample.key_expr), seq, sent)
        self._put_nowait(value)

    def _track(self, attachment: Any) -> tuple[Optional[int], Optional[float]]:
        """Counts the sample and any gap in its publisher's sequence numbers."""
        with self._stats_lock:
            self.stats.received += 1
            if attachment is None or len(attachment) != _HEADER.size:
                return None, None
            magic, pid, seq, sent_ns = _HEADER.unpack(attachment.to_bytes())
            if magic != _MAGIC:
                return None, None
            last = self._last_seq.pop(pid, None)
            if last is not None and seq > last + 1:
                self.stats.missed += seq - last - 1
            self._last_seq[pid] = seq
            if len(self._last_seq) > _MAX_TRACKED_PUBLISHERS:
                del self._last_seq[next(iter(self._last_seq))]
            return seq, sent_ns / 1e9

    def _malformed(self, sample: Any, err: DecodeError) -> None:
        with self._stats_lock:
            self.stats.malformed += 1
            count = self.stats.malformed
        self._malformed_log.warning(
            "%s %r: dropped a sample on %s (%d dropped so far): %s",
            type(self).__name__,
            self.key,
            sample.key_expr,
            count,
            err,
        )

    def _release(self) -> None:
        """Undeclare the subscriber and release the session (once, from whichever thread gets there)."""
        with self._release_lock:
            subscriber, self._subscriber = self._subscriber, None
            lease, self._lease = self._lease, None
        if subscriber is not None:
            subscriber.undeclare()
        if lease is not None:
            lease.release()

    def close(self) -> None:
        """Undeclares the subscriber, releases the session and closes the subscriptions (idempotent, from any
        thread)."""
        super().close()
        self._release()  # the worker did it, unless it was abandoned


def _require_zenoh() -> Any:
    from .._deps import require

    return require("zenoh")
