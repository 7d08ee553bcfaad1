"""SerialConnection: an Arduino, motor controller or any serial device as a producer and consumer.

Reading and writing the port runs in a worker process (so a busy event loop never makes the port
overflow), parsing is done by :mod:`rtcbot.devices.framing`, and messages are checked in your code, at
``put_nowait``, before anything is sent.
"""
from __future__ import annotations

import asyncio
import errno
import logging
import math
import os
import stat
import threading
import time
from typing import Any, Dict, Optional, Sequence, Union

from .._deps import require
from ..base import ProcessSubscriptionProducerConsumer, SubscriptionClosed
from ..base.waiters import Waiters
from ..errors import DeviceClosedError, DeviceLostError, DeviceOpenError, EncodeError
from .framing import make_decoder, make_encoder

__all__ = ["SerialConnection"]

log = logging.getLogger("rtcbot.devices.serial")

_BACKOFF_FIRST = 0.05  # seconds before the first reopen attempt after the port vanished
_BACKOFF_MAX = 1.0  # the wait between attempts doubles up to this


class _Wire:
    """Bytes already encoded in the parent (``count`` messages, back to back): the worker writes them as
    they are, with one ``write()``."""

    __slots__ = ("data", "count")

    def __init__(self, data: bytes, count: int = 1) -> None:
        self.data = data
        self.count = count

    def __reduce__(self) -> Any:
        return (_Wire, (self.data, self.count))


_BATCH_MAX = 65536  # bytes of queued writes sent to the worker as one item, at most


def _batch_limit(baudrate: int, write_timeout: Optional[float]) -> int:
    """The most bytes one batched write() may carry: what the line sends in a quarter of ``write_timeout``
    (so a batch never times out on a slow line where its messages one by one would not), within 64..64 KiB."""
    if write_timeout is None:
        return _BATCH_MAX
    return int(max(64, min(_BATCH_MAX, baudrate / 10 * write_timeout / 4)))


class _PortStatus:
    """The worker's counters and port state, sent to the parent (never to subscribers) when they change."""

    __slots__ = ("connected", "writes_dropped", "read_dropped", "discarded_bytes", "reconnects")

    def __init__(
        self, connected: bool, writes_dropped: int, read_dropped: int, discarded_bytes: int, reconnects: int
    ) -> None:
        self.connected = connected
        self.writes_dropped = writes_dropped
        self.read_dropped = read_dropped
        self.discarded_bytes = discarded_bytes
        self.reconnects = reconnects

    def __reduce__(self) -> Any:
        return (
            _PortStatus,
            (self.connected, self.writes_dropped, self.read_dropped, self.discarded_bytes, self.reconnects),
        )

    def key(self) -> tuple:
        return (self.connected, self.writes_dropped, self.read_dropped, self.discarded_bytes, self.reconnects)

    def as_dict(self) -> Dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


def _is_url(url: str) -> bool:
    return "://" in url


def _errno_of(err: Optional[BaseException]) -> Optional[int]:
    """The errno of ``err``, or of what caused it (pyserial wraps termios errors: ENOTTY for /dev/null)."""
    seen = 0
    while err is not None and seen < 5:
        code = getattr(err, "errno", None)
        if code is None and err.args and isinstance(err.args[0], int):
            code = err.args[0]
        if code is not None:
            return code
        err = err.__cause__ or err.__context__
        seen += 1
    return None


def _open_error(url: str, err: BaseException) -> DeviceOpenError:
    """A DeviceOpenError for ``url`` saying what to check, from the errno of ``err`` (or of its cause)."""
    code = _errno_of(err)
    if code == errno.ENOENT:
        hint = (
            "it does not exist: is the device plugged in? `rtcbot devices` lists the serial ports (use a "
            "stable /dev/serial/by-id/... path); /dev/rtcbot/... names need the udev rules in udev/ "
            "(sudo udev/install.sh)"
        )
    elif code in (errno.EACCES, errno.EPERM):
        hint = (
            "permission denied: add your user to the 'dialout' group (sudo usermod -aG dialout $USER, then "
            "log in again), or install the udev rules in udev/ (sudo udev/install.sh)"
        )
    elif code in (errno.EBUSY, errno.EAGAIN, errno.EWOULDBLOCK):
        hint = (
            "another program holds it (a serial monitor, screen/minicom, ModemManager, another "
            f"SerialConnection): close it; `fuser -v {url}` shows which"
        )
    elif code == errno.ENOTTY:
        hint = "it is not a serial port (no terminal settings): check the path"
    else:
        hint = "check the path or URL, that the device is plugged in, and the 'dialout' group"
    error = DeviceOpenError(f"SerialConnection cannot open {url!r}: {hint} ({err})")
    error.errno = code  # callers can still test the cause; str(error) stays one clean sentence
    return error


def _check_settings(url: Any, baudrate: Any, write_timeout: Any, delay_write_start: Any) -> None:
    """Reject, at construction, values the worker could never open the port with."""
    if not isinstance(url, str) or not url:
        raise TypeError(
            f"SerialConnection url must be a device path or a pyserial URL string (e.g. '/dev/ttyACM0', "
            f"'loop://'), got {url!r}; `rtcbot devices` lists the serial ports"
        )
    if isinstance(baudrate, bool) or not isinstance(baudrate, int):
        raise TypeError(
            f"SerialConnection({url!r}) baudrate must be an int (e.g. 115200, as in the board's "
            f"Serial.begin()), got {baudrate!r}"
        )
    if baudrate <= 0:
        raise ValueError(
            f"SerialConnection({url!r}) baudrate must be positive (e.g. 115200, as in the board's "
            f"Serial.begin()), got {baudrate}"
        )
    if write_timeout is not None:
        if isinstance(write_timeout, bool) or not isinstance(write_timeout, (int, float)):
            raise TypeError(f"SerialConnection({url!r}) write_timeout must be seconds or None, got {write_timeout!r}")
        if not (math.isfinite(write_timeout) and write_timeout >= 0):
            raise ValueError(
                f"SerialConnection({url!r}) write_timeout must be finite seconds >= 0 (or None to wait for "
                f"ever), got {write_timeout!r}"
            )
    if isinstance(delay_write_start, bool) or not isinstance(delay_write_start, (int, float)):
        raise TypeError(f"SerialConnection({url!r}) delayWriteStart must be seconds, got {delay_write_start!r}")
    if not (math.isfinite(delay_write_start) and delay_write_start >= 0):
        raise ValueError(
            f"SerialConnection({url!r}) delayWriteStart must be finite seconds >= 0, got {delay_write_start!r}"
        )


def _check_port(url: str) -> None:
    """Fail fast in the parent, without opening the port (opening resets an Arduino: DTR)."""
    if _is_url(url):
        scheme = url.split("://", 1)[0].lower()
        try:
            __import__(f"serial.urlhandler.protocol_{scheme}")
        except ImportError as e:
            raise DeviceOpenError(
                f"SerialConnection cannot open {url!r}: pyserial knows no '{scheme}://' URL (it has loop://, "
                "spy://, socket://, rfc2217://, alt://, hwgrep://); use a device path like /dev/ttyACM0"
            ) from e
        return
    try:
        st = os.stat(url)
    except OSError as e:
        raise _open_error(url, e) from e
    if not stat.S_ISCHR(st.st_mode):
        raise _open_error(url, OSError(errno.ENOTTY, "not a character device"))
    if not os.access(url, os.R_OK | os.W_OK):
        raise _open_error(url, OSError(errno.EACCES, "no read/write access for this user"))


class SerialConnection(ProcessSubscriptionProducerConsumer):
    """A serial port (Arduino, motor controller, GPS...) as a producer of the messages it sends and a
    consumer of the messages you write to it::

        from rtcbot import SerialConnection

        conn = SerialConnection("/dev/ttyACM0", readFormat="<hhB", readKeys=["x", "y", "flags"],
                                writeFormat="<hh", writeKeys=["left", "right"], framed=True)
        conn.put_nowait({"left": 100, "right": -100})    # packed and checked here, sent by the worker
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
    ``putSubscription`` are checked in the worker: a bad one is logged, counted in ``writes_dropped`` and
    skipped.)

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
    :param write_timeout: seconds a write may block (device not reading) before it is dropped and counted
        (None: wait for ever). Messages put in the same turn of the event loop are written together, with
        one ``write()`` (at most what the line sends in a quarter of ``write_timeout``): a write that times
        out drops that batch, each of its messages counted.
    :param start_method: how the worker process starts (``"forkserver"``, ``"spawn"``, ``"fork"``); None
        for rtcbot's default (see :mod:`rtcbot.base.multiprocess`).

    ``ready`` is True exactly while the worker has the port open (it changes together with
    ``port_present``); ``await conn.wait_port()`` waits for it, and raises once the connection is closed.

    Unplug/replug policy: when the port vanishes, ``ready`` goes False, the loss is logged, and the worker
    retries the same path (waiting 50 ms, doubling up to 1 s between attempts), so a ``/dev/serial/by-id``
    or ``/dev/rtcbot/...`` name comes back when the board is plugged in again; ``ready`` is then True
    again and ``reconnects`` counts it. Writes made while the port is gone are dropped and counted in
    ``writes_dropped``, never replayed later: a stale motor command must not arrive late.

    Raises :class:`rtcbot.DeviceOpenError` at construction when the path does not exist, is not a serial
    device or is not accessible; a port that fails to open in the worker (held by another program) fires
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
        # Everything below is checked here, so a mistake fails at the call, not later in the worker.
        _check_settings(url, baudrate, write_timeout, delayWriteStart)
        self._decoder = make_decoder(readFormat, readKeys, startByte, framed)
        self._encoder = make_encoder(writeFormat, writeKeys, framed)
        _check_port(url)
        self._url = url
        self._baudrate = baudrate
        self._delayWriteStart = float(delayWriteStart)
        self._reconnect = reconnect
        self._writeTimeout = write_timeout
        self._logger = logger or log
        # parent-side view of the worker's counters (updated from _PortStatus messages)
        self._portGone = False
        self._droppedHere = 0
        self._status = _PortStatus(False, 0, 0, 0, 0)
        super().__init__(
            logger=self._logger,
            loop=loop,
            daemonProcess=daemonProcess,
            joinTimeout=joinTimeout,
            start_method=start_method,
        )
        # Parent side only (registered after the state that crosses into the worker was taken): a
        # wait_port() pending when the connection closes or its worker dies ends with the reason.
        self.onClose(self._end_waits)

    # ------------------------------------------------------------------------------------ parent side
    @property
    def url(self) -> str:
        """The port path or URL."""
        return self._url

    @property
    def writes_dropped(self) -> int:
        """Writes not sent: made while the port was gone, failed, timed out, or bad items of a
        putSubscription."""
        return self._droppedHere + self._status.writes_dropped

    @property
    def read_dropped(self) -> int:
        """Incoming messages dropped by the decoder: corrupt frames, over-long lines, wrong-size payloads."""
        return self._status.read_dropped

    @property
    def discarded_bytes(self) -> int:
        """Incoming bytes skipped while hunting for the start byte or a frame marker."""
        return self._status.discarded_bytes

    @property
    def reconnects(self) -> int:
        """How many times the port was reopened after it disappeared."""
        return self._status.reconnects

    def put_nowait(self, data: Any) -> None:
        """Send a message: str/bytes as they are, or values packed with ``writeFormat``::

            conn.put_nowait({"left": 100, "right": -100})
            conn.put_nowait(b"PING\\n")

        Raises :class:`rtcbot.EncodeError` (naming the field) for a message that does not fit; nothing is
        sent. While the port is unplugged the message is dropped and counted in ``writes_dropped``.
        """
        encoded = self._encoder.encode(data)
        if self._portGone and not self._shouldClose:
            self._droppedHere += 1
            return
        batch = self._batch
        if batch is not None:  # more writes in this turn of the event loop: they wait for its end
            batch += encoded
            self._batchCount += 1
            if len(batch) >= self._batchLimit:
                self._send_batch()
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not on a running loop (module-level code, another thread): no batching
            super().put_nowait(_Wire(encoded))
            return
        # The first write of a turn of the event loop goes at once (no added latency for a lone command);
        # the ones after it in the same turn travel to the worker together, as one item written with one
        # write(), so a burst pays the hand-off and the system call once.
        super().put_nowait(_Wire(encoded))
        self._batch = bytearray()
        self._batchCount = 0
        self._batchLimit = _batch_limit(self._baudrate, self._writeTimeout)
        loop.call_soon(self._end_batch)

    def _send_batch(self) -> None:
        batch, count = self._batch, self._batchCount
        if not batch:
            return
        self._batch = bytearray()
        self._batchCount = 0
        if self._shouldClose:
            return  # closed meanwhile: as for any write still queued at close, it is not sent
        super().put_nowait(_Wire(bytes(batch), count))

    def _end_batch(self) -> None:
        self._send_batch()
        self._batch = None

    @property
    def port_present(self) -> bool:
        """True while the worker has the port open; False before it opened, while it is unplugged, and
        once the connection closed or failed."""
        return self._status.connected

    def _waiters(self) -> Waiters:
        """The futures of wait_port() (keyed by the state awaited) and next_counters() (keyed "counters").

        Created at first use, in the parent: never part of the state that crosses into the worker."""
        waiters = self.__dict__.get("_waitersLazy")
        if waiters is None:
            waiters = self.__dict__.setdefault("_waitersLazy", Waiters(f"SerialConnection {self._url!r}"))
            if self.closed:
                waiters.fail_all(self._closed_error())
        return waiters

    def _closed_error(self) -> BaseException:
        return self.error or DeviceClosedError(f"SerialConnection {self._url!r} is closed")

    def _end_waits(self, _value: Any = None) -> None:
        self._status = _PortStatus(False, *self._status.key()[1:])
        waiters = self.__dict__.get("_waitersLazy")
        if waiters is not None:
            waiters.fail_all(self._closed_error())

    async def next_counters(self) -> Dict[str, Any]:
        """Wait for the worker's next report of the port state and counters (sent when they change) and
        return them as a dict (``connected``, ``writes_dropped``, ``read_dropped``, ``discarded_bytes``,
        ``reconnects``)::

            while conn.writes_dropped == 0:
                await asyncio.wait_for(conn.next_counters(), 5)

        Raises the error that stopped the connection, or DeviceClosedError, when it closes first.
        """
        return await self._waiters().wait(key="counters")

    async def wait_port(self, present: bool = True) -> None:
        """Wait until the worker has the port open or, with ``present=False``, until it is not open (before
        the first open, or unplugged)::

            await conn.wait_port(present=False)   # the cable came out: stop the robot's plan
            await conn.wait_port()                # it is back

        Once it returns, ``ready`` agrees with it (True with the port, False without). Raises the error
        that stopped the connection (:class:`rtcbot.DeviceLostError`, :class:`rtcbot.WorkerDiedError`...)
        or :class:`rtcbot.DeviceClosedError` when it closes first, and at once if it is closed already.
        """
        waiters = self._waiters()
        if waiters.failure is None and self._status.connected == bool(present):
            return
        await waiters.wait(key=bool(present))

    # What stays in the parent when the worker starts (the base layer's declaration of what does not cross).
    _parent_only_attributes = frozenset(
        {"_waitersLazy", "_batch", "_batchCount", "_batchLimit", "_status", "_portGone", "_droppedHere"}
    )
    _batch: Optional[bytearray] = None  # writes of this loop turn, not yet handed to the worker
    _batchCount = 0
    _batchLimit = _BATCH_MAX

    def _deliver(self, item: Any) -> None:
        if type(item) is _PortStatus:
            if self.closed:
                return  # a report in flight when the connection closed
            self._status = item
            self._portGone = not item.connected
            # Ready follows the port, set here with the status in one step: whoever sees one sees the other.
            self._setReady(item.connected)
            waiters = self.__dict__.get("_waitersLazy")
            if waiters is not None:
                waiters.wake(key=item.connected)
                waiters.wake(item.as_dict(), key="counters")
            return
        super()._deliver(item)

    # ------------------------------------------------------------------------------------ worker side
    def _producerConsumer(self) -> None:
        worker = _PortWorker(self)
        worker.run()


class _PortWorker:
    """The worker-process half of a SerialConnection: owns the port, a reader thread and the writer loop."""

    def __init__(self, conn: SerialConnection) -> None:
        self.conn = conn
        self.serial = require("serial")
        self.log = conn._logger
        self.lock = threading.Lock()
        self.port: Any = None
        self.opened_at = 0.0
        self.stopping = False
        self.writes_dropped = 0
        self.reconnects = 0
        self.sent_status: Optional[tuple] = None
        self.gone_since: Optional[float] = None
        self.reader_error: Optional[BaseException] = None
        self.status_lock = threading.Lock()

    # -- the port ------------------------------------------------------------------------------------
    def open(self) -> Any:
        conn = self.conn
        kwargs: dict = {"baudrate": conn._baudrate, "timeout": None, "write_timeout": conn._writeTimeout}
        if not _is_url(conn._url):
            kwargs["exclusive"] = True
        try:
            port = self.serial.serial_for_url(conn._url, **kwargs)
        except (self.serial.SerialException, OSError, ValueError) as e:
            raise _open_error(conn._url, e) from e
        conn._decoder.reset()
        self.opened_at = time.monotonic()
        return port

    def lost(self, port: Any, err: BaseException) -> None:
        """The port failed (unplugged): close it, go not-ready, and let the reader reopen it."""
        with self.lock:
            if self.port is not port or port is None:
                return  # already handled by the other thread
            self.port = None
        try:
            port.close()
        except (self.serial.SerialException, OSError) as e:
            self.log.debug("closing the lost port %s: %s", self.conn._url, e)
        self.gone_since = time.monotonic()
        # The parent hears of the loss first (port_present and ready False), whatever happens next.
        self.send_status()
        if not self.conn._reconnect:
            raise DeviceLostError(
                f"SerialConnection lost {self.conn._url!r} ({err}) and reconnect=False: check the cable and "
                "the board's power, or pass reconnect=True to wait for it to come back"
            ) from err
        self.log.warning(
            "SerialConnection: %s disappeared (%s); writes are dropped until it is back, reopening it when "
            "it reappears",
            self.conn._url,
            err,
        )

    def reopen(self) -> Any:
        """Wait (bounded backoff, woken by close) until the same path opens again; None once closing."""
        delay = _BACKOFF_FIRST
        attempts = 0
        while not self.conn._wait_closed(delay):
            attempts += 1
            try:
                port = self.open()
            except DeviceOpenError as e:
                if self.log.isEnabledFor(logging.DEBUG):
                    self.log.debug("reopening %s (attempt %d): %s", self.conn._url, attempts, e)
                delay = min(delay * 2, _BACKOFF_MAX)
                continue
            with self.lock:
                if self.stopping:
                    port.close()
                    return None
                self.port = port
            self.reconnects += 1
            gone = time.monotonic() - (self.gone_since or time.monotonic())
            self.log.info("SerialConnection: %s is back after %.1f s", self.conn._url, gone)
            self.send_status()  # the parent sets ready with it
            return port
        return None

    def send_status(self, force: bool = False) -> None:
        dec = self.conn._decoder
        status = _PortStatus(
            self.port is not None, self.writes_dropped, dec.dropped, dec.discarded_bytes, self.reconnects
        )
        key = status.key()
        with self.status_lock:
            if not force and key == self.sent_status:
                return
            self.sent_status = key
        self.conn._sendToParent(status)

    # -- threads -------------------------------------------------------------------------------------
    def run(self) -> None:
        self.port = self.open()  # a failure here ends the worker: onError(DeviceOpenError) in the parent
        # The parent sets ready from this status, so ready and port_present always change together.
        self.send_status(force=True)
        reader = threading.Thread(target=self.read_loop, name="rtcbot-serial-reader", daemon=True)
        closer = threading.Thread(target=self.wait_close, name="rtcbot-serial-closer", daemon=True)
        reader.start()
        closer.start()
        try:
            self.write_loop()
        except SubscriptionClosed:
            pass  # close() was called, or the reader failed and closed the worker
        finally:
            if not self.conn._shouldClose:
                self.conn._close()  # the writer failed: stop everything (and wake the closer)
            self.stop()
            reader.join(5.0)
            closer.join(1.0)
            with self.lock:
                port, self.port = self.port, None
            if port is not None:
                port.close()
        if self.reader_error is not None:
            raise self.reader_error

    def wait_close(self) -> None:
        self.conn._wait_closed()
        self.stop()

    def stop(self) -> None:
        with self.lock:
            self.stopping = True
            port = self.port
        if port is not None:
            try:
                port.cancel_read()
                port.cancel_write()
            except (self.serial.SerialException, OSError) as e:
                self.log.debug("cancelling I/O on %s: %s", self.conn._url, e)

    def read_loop(self) -> None:
        conn = self.conn
        feed = conn._decoder.feed
        put = conn._put_nowait
        port = self.port
        try:
            while not self.stopping:
                if port is None:
                    port = self.reopen()
                    if port is None:
                        return
                    continue
                try:
                    data = port.read(port.in_waiting or 1)
                except (self.serial.SerialException, OSError) as e:
                    if self.stopping:
                        return
                    self.lost(port, e)
                    port = None
                    continue
                if not data:
                    continue  # cancel_read (closing)
                for message in feed(data):
                    put(message)
                self.send_status()
        except SubscriptionClosed:
            return  # the parent is gone
        except BaseException as e:  # the writer loop re-raises it after the worker stops
            self.reader_error = e
            conn._close()

    def write_loop(self) -> None:
        conn = self.conn
        encode = conn._encoder.encode
        while True:
            item = conn._get()  # SubscriptionClosed after close() ends the worker
            count = 1
            if type(item) is _Wire:
                data, count = item.data, item.count
            else:  # from a putSubscription: not checked in the parent
                try:
                    data = encode(item)
                except EncodeError as e:
                    self.log.error("SerialConnection %s: dropped an item from its subscription: %s", conn._url, e)
                    self.drop()
                    continue
            with self.lock:
                port = self.port
            if port is None:
                self.drop(count)
                continue
            wait = self.opened_at + conn._delayWriteStart - time.monotonic()
            if wait > 0 and conn._wait_closed(wait):
                return
            try:
                port.write(data)
            except self.serial.SerialTimeoutException as e:
                if self.stopping:
                    return
                self.log.warning(
                    "SerialConnection %s: write timed out (%s); %d message(s) dropped", conn._url, e, count
                )
                self.drop(count)
            except (self.serial.SerialException, OSError) as e:
                if self.stopping:
                    return
                self.drop(count)
                self.lost(port, e)

    def drop(self, count: int = 1) -> None:
        self.writes_dropped += count
        self.send_status()
