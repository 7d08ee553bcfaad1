"""SerialConnection: an Arduino, motor controller or any serial device as a producer and consumer.

The port's I/O runs in the event loop (:mod:`rtcbot.devices.serial_io`: the loop watches the port's
descriptor; URLs without one use two owned threads), parsing is done by :mod:`rtcbot.devices.framing`, and
messages are checked in your code, at ``put_nowait``, before anything is sent. Opening the port
(:mod:`rtcbot.devices.serial_port`) happens off the loop, in a thread.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from .._deps import require
from ..base import SubscriptionClosed, SubscriptionProducerConsumer
from ..base.events import LoopBound
from ..base.waiters import Waiters
from ..errors import DeviceClosedError, DeviceLostError, DeviceOpenError, EncodeError
from .framing import make_decoder, make_encoder
from .serial_io import BACKLOG_LIMIT, make_port_io
from .serial_port import check_port, check_settings, open_error, open_port

__all__ = ["SerialConnection"]

log = logging.getLogger("rtcbot.devices.serial")

_BACKOFF_FIRST = 0.05  # seconds before the first reopen attempt after the port vanished
_BACKOFF_MAX = 1.0  # the wait between attempts doubles up to this
_BATCH_MAX = 65536  # bytes of one loop turn's writes written with one write(), at most

# Kept for code that imported it from here.
_open_error = open_error
_check_settings = check_settings
_check_port = check_port


def _batch_limit(baudrate: int, write_timeout: Optional[float]) -> int:
    """The most bytes one batched write may carry: what the line sends in a quarter of ``write_timeout``
    (so a batch never times out on a slow line where its messages one by one would not), within 64..64 KiB."""
    if write_timeout is None:
        return _BATCH_MAX
    return int(max(64, min(_BATCH_MAX, baudrate / 10 * write_timeout / 4)))


def _close_port(port: Any, url: str) -> None:
    try:
        port.close()
    except Exception as e:  # a port that failed may fail again closing: it is closed as far as we can
        log.debug("closing %s: %s", url, e)


class SerialConnection(LoopBound, SubscriptionProducerConsumer):
    """A serial port (Arduino, motor controller, GPS...) as a producer of the messages it sends and a
    consumer of the messages you write to it::

        from rtcbot import SerialConnection

        conn = SerialConnection("/dev/ttyACM0", readFormat="<hhB", readKeys=["x", "y", "flags"],
                                writeFormat="<hh", writeKeys=["left", "right"], framed=True)
        conn.put_nowait({"left": 100, "right": -100})    # packed, checked and written here
        reading = await conn.get()                        # {"x": ..., "y": ..., "flags": ...}
        conn.close()

    Reading, chosen by ``readFormat``:

    - ``"\\n"`` (default, or any separator): each line as bytes, without the separator.
    - ``None``: raw chunks of bytes, as they arrive.
    - a struct format (``"<hhB"``): tuples, or dicts when ``readKeys`` names the fields.

    Writing (``put_nowait``, ``putSubscription``): str and bytes are sent as they are; with ``writeFormat``
    a tuple/list (or a dict, with ``writeKeys``) is packed with that struct format. A message that does not
    fit (wrong count, missing key, out of range, NaN or infinity in a float field: refused, never clipped)
    raises :class:`rtcbot.EncodeError` at ``put_nowait``, naming the field; nothing is sent and the
    connection keeps running. (Items read from a
    ``putSubscription`` are checked as they are written: a bad one is logged, counted in ``writes_dropped``
    and skipped.)

    :param url: a device path (opened exclusively) or a pyserial URL (``loop://``, ``socket://host:port``,
        ``rfc2217://``, ``spy://``).
    :param startByte: ignore everything read before the first occurrence of these byte(s) (boot noise).
    :param delayWriteStart: seconds writes wait after the port opens (an Arduino resets when it is opened
        and needs ~2 s before it listens); readings flow meanwhile.
    :param framed: every message in both directions travels in a frame ``A5 5A | len | payload | crc16``;
        a corrupt frame is dropped and counted (``read_dropped``), reading resynchronises on the next good
        one. The payload is ``readFormat``/``writeFormat`` packed (or bytes).
    :param reconnect: when the port disappears (unplugged), set ``ready`` False and reopen the same path
        when it reappears (True, default); with False, fail with :class:`rtcbot.DeviceLostError`.
    :param write_timeout: seconds a write may wait for the port (device not reading) before it is dropped
        and counted (None: wait for ever, within a bounded backlog of 4 MiB). The loop never blocks on it.
        Writes made before the port first opened wait for it (and for ``delayWriteStart``). Messages put
        after the first in the same turn of the event loop are written together, with one ``write()`` (at
        most what the line sends in a quarter of ``write_timeout``): a batch that times out is dropped, each
        of its messages counted.
    :param start_method: accepted for existing scripts and ignored, like ``daemonProcess`` and
        ``joinTimeout``: SerialConnection has no worker process (it once had).

    Where the work happens: reading and writing run in the event loop, which watches the port's file
    descriptor (``add_reader``) and reads whatever is there at each wake; decoding runs in the loop too,
    and subscribers get every message of a read at once. Writes never block the loop: what the kernel does
    not take at once waits in a bounded backlog, written as soon as the port can take it, and dropped (and
    counted) after ``write_timeout``. Ports without a descriptor (``loop://``, ``rfc2217://``, ``spy://``,
    which logs in its ``read()``) are read and written by two threads the connection owns. Opening (and
    reopening) the port runs off the loop, in its default executor. So a loop blocked by your code delays serial
    messages (the kernel holds incoming bytes meanwhile, up to about 64 KiB: seconds at 115200 baud): keep
    heavy work in threads or process devices.

    ``ready`` is True exactly while the port is open (it changes together with
    ``port_present``); ``await conn.wait_port()`` waits for it, and raises once the connection is closed.

    Unplug/replug policy: when the port vanishes, ``ready`` goes False, the loss is logged, and the connection
    retries the same path (waiting 50 ms, doubling up to 1 s between attempts), so a ``/dev/serial/by-id``
    or ``/dev/rtcbot/...`` name comes back when the board is plugged in again; ``ready`` is then True
    again and ``reconnects`` counts it. Writes made while the port is gone are dropped and counted in
    ``writes_dropped``, never replayed later: a stale motor command must not arrive late.

    Raises :class:`rtcbot.DeviceOpenError` at construction when the path does not exist, is not a serial
    device or is not accessible; a port that fails to open (held by another program) fires
    ``onError`` with a DeviceOpenError saying what to check.
    """

    def __init__(
        self,
        url: str = "/dev/ttyS0",
        readFormat: Union[str, bytes, None] = "\n",
        writeFormat: Optional[str] = None,
        baudrate: int = 115200,
        writeKeys: Optional[Sequence[str]] = None,
        readKeys: Optional[Sequence[str]] = None,
        startByte: Union[str, bytes, int, None] = None,
        delayWriteStart: float = 0,
        loop: Any = None,
        *,
        framed: bool = False,
        reconnect: bool = True,
        write_timeout: Optional[float] = 2.0,
        logger: Optional[logging.Logger] = None,
        daemonProcess: bool = True,
        joinTimeout: float = 1,
        start_method: Optional[str] = None,
    ) -> None:
        require("serial")
        # Everything below is checked here, so a mistake fails at the call, not later.
        check_settings(url, baudrate, write_timeout, delayWriteStart)
        self._decoder = make_decoder(readFormat, readKeys, startByte, framed)
        self._encoder = make_encoder(writeFormat, writeKeys, framed)
        check_port(url)
        self._url = url
        self._baudrate = baudrate
        self._delayWriteStart = float(delayWriteStart)
        self._reconnect = reconnect
        self._writeTimeout = write_timeout
        self._logger = logger or log
        if start_method is not None or daemonProcess is not True or joinTimeout != 1:
            self._logger.debug(
                "SerialConnection %s: start_method, daemonProcess and joinTimeout are ignored (the port's I/O "
                "runs in the event loop, with no worker process)",
                url,
            )
        self._port: Any = None  # the open pyserial port, while present
        self._io: Any = None  # its LoopPortIO / ThreadPortIO
        self._unsent: List[Tuple[bytes, int]] = []  # writes made before the port first opened
        self._unsent_bytes = 0
        self._port_gone = False  # it was open and vanished: writes are dropped until it is back
        self._writes_dropped = 0
        self._reconnects = 0
        self._reported: Optional[tuple] = None  # the counters next_counters() last saw
        self._counter_waits = 0  # next_counters() calls waiting
        self._batch: Optional[bytearray] = None  # writes of this loop turn after its first, not yet written
        self._batch_count = 0
        self._batch_scheduled = False  # _end_batch is due at the end of this turn
        self._batch_limit = _batch_limit(baudrate, write_timeout)
        self._pump: Optional[asyncio.Task] = None  # reads a putSubscription
        self._waiters = Waiters(f"SerialConnection {url!r}")
        SubscriptionProducerConsumer.__init__(self, logger=self._logger, ready=False)
        self._bind_loop(loop)
        # The port's life is loop callbacks: open (in the executor), serve, and on loss a timer to reopen.
        self._opening: Optional[asyncio.Future] = None  # open_port() running in the loop's executor
        self._timer: Optional[asyncio.Handle] = None  # the next (re)open attempt
        self._backoff = _BACKOFF_FIRST
        self._attempts = 0  # reopen attempts since the port vanished (0: the first open)
        self._gone_since = 0.0
        # Made before the loop runs (RTCBot's tutorial style), it starts opening when the loop does.
        self._timer = self._loop.call_soon(self._begin_open)

    # ------------------------------------------------------------------------------------ properties
    @property
    def url(self) -> str:
        """The port path or URL."""
        return self._url

    @property
    def writes_dropped(self) -> int:
        """Writes not sent: made while the port was gone, failed, timed out, or bad items of a
        putSubscription."""
        return self._writes_dropped

    @property
    def read_dropped(self) -> int:
        """Incoming messages dropped by the decoder: corrupt frames, over-long lines, wrong-size payloads."""
        return self._decoder.dropped

    @property
    def discarded_bytes(self) -> int:
        """Incoming bytes skipped while hunting for the start byte or a frame marker."""
        return self._decoder.discarded_bytes

    @property
    def reconnects(self) -> int:
        """How many times the port was reopened after it disappeared."""
        return self._reconnects

    @property
    def port_present(self) -> bool:
        """True while the port is open; False before it opened, while it is unplugged, and once the
        connection closed or failed."""
        return self._io is not None

    # ------------------------------------------------------------------------------------ writing
    def put_nowait(self, data: Any) -> None:
        """Send a message: str/bytes as they are, or values packed with ``writeFormat``::

            conn.put_nowait({"left": 100, "right": -100})
            conn.put_nowait(b"PING\\n")

        Raises :class:`rtcbot.EncodeError` (naming the field) for a message that does not fit; nothing is
        sent. While the port is unplugged the message is dropped and counted in ``writes_dropped``. Never
        blocks: what the port does not take at once waits (``write_timeout``) and goes when it can.
        """
        encoded = self._encoder.encode(data)
        if self._shouldClose:
            raise DeviceClosedError(f"SerialConnection {self._url!r} is closed; it takes no more messages")
        if self.subscription is not None:
            self.stopSubscription()
        if not self._onLoopThread():  # from another thread: the port belongs to the loop
            self._call_on_loop(self._send, encoded)
            return
        self._send(encoded)

    def _send(self, encoded: bytes) -> None:
        # Batching: the first write goes at once (no added latency for a lone command); writes after it in
        # the same turn of the event loop are written together at the end of the turn, with one write(). A
        # read is a boundary too (a reply arrived: what is put next answers it), so a request/reply
        # exchange never waits for the end of a turn.
        batch = self._batch
        if batch is None:
            io = self._io
            if io is not None and not self._shouldClose:  # the port is open (so not gone): straight to it
                io.write(encoded, 1)
            elif self._port_gone:
                self._dropped(1)
            else:
                self._write(encoded, 1)
            if self._loop.is_running():  # (_send runs on the loop's thread: put_nowait hands it over)
                self._batch = bytearray()
            return
        if self._port_gone:
            self._dropped(1)
            return
        batch += encoded
        self._batch_count += 1
        if not self._batch_scheduled:
            self._batch_scheduled = True
            self._loop.call_soon(self._end_batch)
        if len(batch) >= self._batch_limit:
            self._write_batch()

    def _write_batch(self) -> None:
        batch, count = self._batch, self._batch_count
        if not batch:
            return
        self._batch = bytearray()
        self._batch_count = 0
        self._write(bytes(batch), count)

    def _end_batch(self) -> None:
        self._write_batch()
        self._batch = None
        self._batch_scheduled = False

    def _write(self, data: bytes, count: int) -> None:
        if self._shouldClose:
            return  # closed meanwhile: as for any write still waiting at close, it is not sent
        io = self._io
        if io is not None:
            io.write(data, count)
        elif self._port_gone:
            self._dropped(count)
        elif self._unsent_bytes + len(data) <= BACKLOG_LIMIT:  # not opened yet: written once it is
            self._unsent.append((data, count))
            self._unsent_bytes += len(data)
        else:
            self._dropped(count)

    def _dropped(self, count: int) -> None:
        self._writes_dropped += count
        self._counters_changed()

    def putSubscription(self, subscription: Any) -> None:
        """Keep writing what ``subscription`` gives (a producer, or anything with an async ``get()``) until
        another one is put, ``stopSubscription()`` or ``put_nowait()`` is called. Its items are checked as
        they are written: a bad one is logged, counted in ``writes_dropped`` and skipped."""
        super().putSubscription(subscription)
        if self._pump is None and not self._shouldClose:
            self._pump = self._loop.create_task(self._pump_subscription())
            self._pump.add_done_callback(self._pump_ended)

    async def _pump_subscription(self) -> None:
        encode = self._encoder.encode
        try:
            while True:
                item = await self._get()
                try:
                    encoded = encode(item)
                except EncodeError as e:
                    self._logger.error("SerialConnection %s: dropped an item from its subscription: %s", self._url, e)
                    self._dropped(1)
                    continue
                self._send(encoded)
        except SubscriptionClosed:
            return

    # ------------------------------------------------------------------------------------ the port
    def _begin_open(self) -> None:
        """Open the port in the loop's executor (opening may block: a network URL connects)."""
        self._timer = None
        if self._shouldClose:
            return
        try:
            opening = self._loop.run_in_executor(None, open_port, self._url, self._baudrate, self._writeTimeout)
        except RuntimeError as e:  # the loop is shutting down its executor: it is ending, and so are we
            self._logger.debug("SerialConnection %s: not opened, the loop is ending (%s)", self._url, e)
            return
        self._opening = opening
        opening.add_done_callback(self._opened)

    def _opened(self, opening: asyncio.Future) -> None:
        self._opening = None
        err = opening.exception() if not opening.cancelled() else DeviceClosedError("opening was cancelled")
        if self._shouldClose:  # closed while opening: a port that opened anyway is closed at once
            if err is None:
                _close_port(opening.result(), self._url)
            return
        if err is not None:
            if self._attempts and isinstance(err, DeviceOpenError):  # still gone: try again later
                if self._logger.isEnabledFor(logging.DEBUG):
                    self._logger.debug("reopening %s (attempt %d): %s", self._url, self._attempts, err)
                self._backoff = min(self._backoff * 2, _BACKOFF_MAX)
                self._retry_later()
                return
            self._fail(err)  # the first open failed (or something unexpected): onError, then closed
            return
        if self._attempts:
            self._reconnects += 1
            gone = time.monotonic() - self._gone_since
            self._logger.info("SerialConnection: %s is back after %.1f s", self._url, gone)
        self._attach(opening.result())

    def _retry_later(self) -> None:
        """Retry the same path after the backoff (50 ms doubling to 1 s between attempts)."""
        self._attempts += 1
        self._timer = self._loop.call_later(self._backoff, self._begin_open)

    def _fail(self, err: BaseException) -> None:
        if not isinstance(err, (DeviceOpenError, DeviceLostError)):
            self._logger.error("SerialConnection %s failed", self._url, exc_info=err)
        self._setError(err)
        self._close()

    def _attach(self, port: Any) -> None:
        """The port opened: serve it, write what waited for it, and go ready."""
        self._decoder.reset()
        self._port = port
        self._io = make_port_io(
            port,
            self._loop,
            self._on_data,
            self._dropped,
            self._on_lost,
            write_timeout=self._writeTimeout,
            writes_from=time.monotonic() + self._delayWriteStart,
            name=repr(self._url),
        )
        self._port_gone = False
        unsent, self._unsent, self._unsent_bytes = self._unsent, [], 0
        for data, count in unsent:
            self._io.write(data, count)
        # Ready follows the port, set here with port_present in one step: whoever sees one sees the other.
        self._setReady(True)
        self._waiters.wake(key=True)
        self._counters_changed()

    def _on_lost(self, err: BaseException) -> None:
        """The port failed (unplugged): whoever waits hears of it first; then reopen it, or fail."""
        self._detach()  # at once: from here on writes are dropped and counted
        if self._shouldClose:
            return
        if not self._reconnect:
            lost = DeviceLostError(
                f"SerialConnection lost {self._url!r} ({err}) and reconnect=False: check the cable and the "
                "board's power, or pass reconnect=True to wait for it to come back"
            )
            lost.__cause__ = err
            self._fail(lost)
            return
        self._logger.warning(
            "SerialConnection: %s disappeared (%s); writes are dropped until it is back, reopening it when it "
            "reappears",
            self._url,
            err,
        )
        self._gone_since = time.monotonic()
        self._backoff = _BACKOFF_FIRST
        self._attempts = 0
        self._retry_later()

    def _detach(self) -> None:
        """The port failed (unplugged): close it and go not ready; whoever waits hears of it first."""
        io, self._io = self._io, None
        port, self._port = self._port, None
        if io is not None:
            io.close()
        if port is not None:
            _close_port(port, self._url)
        if not self._shouldClose:
            self._port_gone = True
            self._setReady(False)
            self._waiters.wake(key=False)
            self._counters_changed()

    def _on_data(self, data: bytes) -> None:
        if self._batch is not None and not self._batch_scheduled:
            self._batch = None  # a boundary: the next write goes at once
        put = self._put_nowait
        for message in self._decoder.feed(data):
            put(message)
        if self._counter_waits:  # the decoder's counters may have changed: tell next_counters()
            self._counters_changed()

    def _pump_ended(self, task: asyncio.Task) -> None:
        """The putSubscription pump ended: by close (cancelled, or SubscriptionClosed), or because the
        subscription failed, which stops the connection (onError), as a failed writer did."""
        if not task.cancelled() and task.exception() is not None:
            self._fail(task.exception())  # type: ignore[arg-type]

    # ------------------------------------------------------------------------------------ waiting
    def _counters(self) -> Dict[str, Any]:
        return {
            "connected": self.port_present,
            "writes_dropped": self._writes_dropped,
            "read_dropped": self._decoder.dropped,
            "discarded_bytes": self._decoder.discarded_bytes,
            "reconnects": self._reconnects,
        }

    def _counters_changed(self) -> None:
        if not self._counter_waits:
            return  # nobody waits: next_counters() compares with the counters of when it started
        counters = self._counters()
        key = tuple(counters.values())
        if key != self._reported:
            self._reported = key
            self._waiters.wake(counters, key="counters")

    async def next_counters(self) -> Dict[str, Any]:
        """Wait until the port state or a counter changes, and return them as a dict (``connected``,
        ``writes_dropped``, ``read_dropped``, ``discarded_bytes``, ``reconnects``)::

            while conn.writes_dropped == 0:
                await asyncio.wait_for(conn.next_counters(), 5)

        Raises the error that stopped the connection, or DeviceClosedError, when it closes first.
        """
        self._reported = tuple(self._counters().values())
        self._counter_waits += 1
        try:
            return await self._waiters.wait(key="counters")
        finally:
            self._counter_waits -= 1

    async def wait_port(self, present: bool = True) -> None:
        """Wait until the port is open or, with ``present=False``, until it is not open (before the first
        open, or unplugged)::

            await conn.wait_port(present=False)   # the cable came out: stop the robot's plan
            await conn.wait_port()                # it is back

        Once it returns, ``ready`` agrees with it (True with the port, False without). Raises the error
        that stopped the connection (:class:`rtcbot.DeviceLostError`, :class:`rtcbot.DeviceOpenError`...)
        or :class:`rtcbot.DeviceClosedError` when it closes first, and at once if it is closed already.
        """
        if self._waiters.failure is None and self.port_present == bool(present):
            return
        await self._waiters.wait(key=bool(present))

    # ------------------------------------------------------------------------------------ closing
    def close(self) -> None:
        """Stop reading and writing and close the port (released at once: another program can open it).
        Writes still waiting are not sent. Idempotent; never raises or blocks for long (the threads of a
        port without a descriptor are joined, after being woken). Call it from any thread."""
        if getattr(self, "_loop", None) is not None and not self._onLoopThread() and self._loop.is_running():
            self._call_on_loop(self.close)
            return
        first = not self._shouldClose
        self._shouldClose = True
        self._batch = None
        self._unsent, self._unsent_bytes = [], 0
        timer = getattr(self, "_timer", None)
        if timer is not None:
            timer.cancel()  # an open that is running finishes in its thread; _opened then closes the port
        pump = getattr(self, "_pump", None)
        if pump is not None and not pump.done():
            try:
                pump.cancel()
            except RuntimeError:  # its loop is closed: the task will never run again anyway
                pass
        if getattr(self, "_io", None) is not None or getattr(self, "_port", None) is not None:
            self._detach()
        if first:
            waiters = getattr(self, "_waiters", None)
            if waiters is not None:
                waiters.fail_all(self.error or DeviceClosedError(f"SerialConnection {self._url!r} is closed"))
        SubscriptionProducerConsumer.close(self)

    def _close(self) -> None:
        SerialConnection.close(self)
