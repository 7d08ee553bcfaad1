"""The parent's end of the channel, driven by the asyncio loop."""
from __future__ import annotations

import array
import asyncio
import collections
import logging
import socket
import threading
from typing import Callable, Deque, List, Optional, Tuple

from .dispatch import ReceiveDispatcher, UnpicklableItem
from .shared_memory import _ReceivePools, _SendPool, _SendPools
from .sockets import ChannelClosed
from .wire import (
    _DROP,
    _HIGH_WATER,
    _KIND_DROP,
    _KIND_RELEASE,
    _MAX_READS_PER_WAKE,
    _RELEASE,
    _Encoded,
    _frame,
    _FrameReader,
)

logger = logging.getLogger("rtcbot.base.transport")

# ------------------------------------------------------------------------------------------- parent end


class ParentEndpoint:
    """The parent's end of the channel, driven by the asyncio loop (use it from the loop's thread only).

    Incoming items are unpickled in the loop's reader callback and passed to ``on_item`` in order; when the
    worker's end closes (exit, crash, SIGKILL), ``on_eof`` runs once, after the last item::

        channel = ParentEndpoint(parent_end, loop, on_item=queue.put_nowait, on_eof=done.set)
        channel.start()
        await channel.send(frame)          # back-pressure: waits for a free slot and socket room
        channel.send_nowait({"stop": 1})   # small control message, never waits
        channel.close()

    :param sock: the ``parent_end`` of :func:`socket_pair`
    :param loop: the event loop that runs the callbacks
    :param on_item: called with each item from the worker; it should not raise (errors are logged)
    :param on_eof: called once when the worker's end is closed
    :param slots: how many large items may be in flight to the worker at once
    :param min_shared_bytes: buffers at least this large go through shared memory, smaller ones inline
    :param pool_bytes: items small enough get more slots than ``slots``, up to twice as many, as long as a
        pool of them fits in this many bytes (0: exactly ``slots``)
    """

    def __init__(
        self,
        sock: socket.socket,
        loop: asyncio.AbstractEventLoop,
        on_item: Callable[[object], None],
        on_eof: Callable[[], None],
        slots: int = 4,
        min_shared_bytes: int = 65536,
        pool_bytes: int = 0,
    ) -> None:
        self._sock = sock
        self._sock.setblocking(False)
        self._fd = sock.fileno()
        self._loop = loop
        self._on_item = on_item
        self._on_eof = on_eof
        self._min_shared_bytes = min_shared_bytes
        self._send_pools = _SendPools(slots, pool_bytes)
        self._receive_pools = _ReceivePools(self._lent_slot_returned)
        self._reader = _FrameReader()
        # Slots lent to received arrays come back from any thread (when the last array using one dies): their
        # RELEASE messages wait here and are written together, on the loop.
        self._returns: Deque[bytes] = collections.deque()
        self._returns_scheduled = False
        self._loop_thread: Optional[int] = None  # known once the loop first calls us
        self._dispatch = ReceiveDispatcher(
            self._receive_pools, self._take_item, self._slot_released, self._queue, peer="worker"
        )
        self._out = bytearray()  # bytes not yet written
        self._out_position = 0  # stream offset of self._out[0]
        self._out_fds: Deque[Tuple[int, int]] = collections.deque()  # (stream offset, fd) to attach there
        self._writing = False  # add_writer is active
        self._flush_scheduled = False  # an item sent with flush=False is written on the loop's next turn
        self._reading = False  # add_reader is active
        self._dispatch_paused = False  # received items wait for the loop to run once (see _dispatch_received)
        self._waiters: List[asyncio.Future] = []  # send() calls waiting for a slot or socket room
        self._eof = False
        self._broken = False  # a write failed: the worker is gone
        self._closed = False

    def start(self) -> None:
        """Start delivering items to ``on_item`` (and the end of the channel to ``on_eof``)."""
        if self._closed or self._reading or self._eof:
            return
        self._loop.add_reader(self._fd, self._on_readable)
        self._reading = True

    async def send(self, obj: object, flush: bool = True) -> int:
        """Send ``obj`` to the worker, waiting while all slots are in use or the socket is full; returns the
        bytes it takes (pickle and shared buffers), for flow control.

        Do not modify ``obj``'s arrays until this returns (they are copied into shared memory at the end).
        Each item is written at once: a worker that is awake starts on it while the next one is copied (items
        held back to go out together made the two processes take turns instead). With ``flush=False`` it
        goes with the next write instead, at the latest on the loop's next turn: a sender that has the next
        item at hand saves a write, and the wake-up of the worker it costs (both cost more than the bytes)::

            await channel.send(frame, flush=False)   # the next item follows at once
            await channel.send(next_frame)           # one write: both items

        :raises ChannelClosed: the worker is gone or :meth:`close` was called
        :raises NotPicklableError: ``obj`` cannot be pickled
        """
        encoded = _Encoded(obj, self._min_shared_bytes)
        try:
            while True:
                self._check_open()
                if len(self._out) < _HIGH_WATER:
                    if not encoded.buffers:
                        self._queue(encoded.frame())
                        break
                    taken = self._send_pools.acquire(encoded.size)
                    if taken is not None:
                        pool, slot = taken
                        pool.write(slot, encoded.offsets, encoded.buffers)
                        self._announce(pool)
                        self._queue(encoded.frame(pool.pool_id, slot))
                        break
                await self._wait_for_change()
        finally:
            encoded.release()
        if flush:
            self._flush()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._scheduled_flush)
        return len(encoded.data) + encoded.size

    def send_nowait(self, obj: object, flush: bool = True) -> None:
        """Queue a small item for the worker; it is written in order, as the socket accepts it.

        Everything travels inline (no shared memory), so keep large arrays for :meth:`send`. With
        ``flush=False`` it is only queued, and rides with the next write (the next :meth:`send`, say): a
        control message that need not go at once costs no write of its own.

        :raises ChannelClosed: the worker is gone or :meth:`close` was called
        """
        encoded = _Encoded(obj, None)
        self._check_open()
        self._queue(encoded.frame())
        if flush:
            self._flush()

    def shutdown_write(self) -> None:
        """Tell the worker that nothing more comes (it reads EOF and stops); reading goes on. Threadsafe and
        idempotent: the one call a thread other than the loop's may make."""
        try:
            self._sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # closed or disconnected already

    def close(self) -> None:
        """Stop reading and writing, close the socket and unmap shared memory; idempotent.

        Unwritten data is discarded; the worker sees EOF. ``on_eof`` is not called after close().
        """
        if self._closed:
            return
        self._closed = True
        if self._reading:
            self._loop.remove_reader(self._fd)
            self._reading = False
        if self._writing:
            self._loop.remove_writer(self._fd)
            self._writing = False
        self._sock.close()
        self._reader.close()
        self._send_pools.close()
        self._receive_pools.close()  # a pool with slots lent to live arrays is unmapped when they die
        self._returns.clear()
        self._out.clear()
        self._wake_waiters()
        # Drop the owner's callbacks: the owner usually holds this endpoint, and what it received (arrays lent
        # slots of the worker's shared memory) should die with it, not wait for the cycle collector.
        self._on_item = self._on_eof = _ignore

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called or the worker's end is gone."""
        return self._closed or self._eof or self._broken

    def _check_open(self) -> None:
        if self._closed:
            raise ChannelClosed("the parent end of the channel was closed")
        if self._eof or self._broken:
            raise ChannelClosed("the worker closed the channel")

    async def _wait_for_change(self) -> None:
        waiter = self._loop.create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def _wake_waiters(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    # -- writing

    def _announce(self, pool: _SendPool) -> None:
        if not pool.announced:
            self._out_fds.append((self._out_position + len(self._out), pool.fd))
            self._queue(pool.announcement())
            pool.announced = True

    def _queue(self, frame: bytes) -> None:
        returns = self._returns
        while returns:  # slots returned since the last write go first, with it
            self._out += returns.popleft()
        if self._send_pools.pending_drops:
            drops, self._send_pools.pending_drops = self._send_pools.pending_drops, []
            for pool_id in drops:
                self._out += _frame(_KIND_DROP, _DROP.pack(pool_id))
        self._out += frame

    def _scheduled_flush(self) -> None:
        self._flush_scheduled = False
        self._flush()

    def _flush(self) -> None:
        """Write as much of the out buffer as the socket takes; the rest goes when it is writable."""
        while self._out and not (self._closed or self._broken):
            fd_offset = self._out_fds[0][0] - self._out_position if self._out_fds else None
            try:
                if fd_offset == 0:  # this message carries a pool's fd on its first byte
                    next_fd = self._out_fds[1][0] - self._out_position if len(self._out_fds) > 1 else None
                    end = len(self._out) if next_fd is None else next_fd
                    fd = array.array("i", [self._out_fds[0][1]])
                    ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fd)]
                    with memoryview(self._out) as view, view[:end] as chunk:
                        written = self._sock.sendmsg([chunk], ancillary, socket.MSG_NOSIGNAL)
                    self._out_fds.popleft()
                else:
                    end = len(self._out) if fd_offset is None else fd_offset
                    with memoryview(self._out) as view, view[:end] as chunk:
                        written = self._sock.send(chunk, socket.MSG_NOSIGNAL)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:
                logger.debug("writing to the worker failed: %s", e)
                self._broken = True
                self._out.clear()
                break
            del self._out[:written]
            self._out_position += written
        wants_writer = bool(self._out) and not (self._closed or self._broken)
        if wants_writer and not self._writing:
            self._loop.add_writer(self._fd, self._flush)
            self._writing = True
        elif not wants_writer and self._writing:
            self._loop.remove_writer(self._fd)
            self._writing = False
        if len(self._out) < _HIGH_WATER or self._broken:
            self._wake_waiters()

    # -- reading

    def _on_readable(self) -> None:
        self._loop_thread = threading.get_ident()
        if self._dispatch_paused:
            return  # the items received wait for lent slots to come back: _resume_dispatch goes on
        for _ in range(_MAX_READS_PER_WAKE):
            try:
                received = self._reader.receive(self._sock)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:  # ECONNRESET: the worker died with data unread; same as EOF
                logger.debug("reading from the worker failed: %s", e)
                received = 0
            if not received:
                self._end_of_stream()
                return
            if not self._dispatch_received() or self._reader.drained:
                break  # drained: another read would fail (an exception and a system call per wake-up)
        if not self._closed:
            self._write_returns_if_due()

    def _dispatch_received(self, loop_had_a_turn: bool = False) -> bool:
        """Hand on every complete message received; False if it stopped (closed, or held).

        When the worker sends faster than ``on_item``'s consumers let go of the arrays (a callback
        subscription runs on the next loop turn), a burst of items would find every lendable slot lent and
        be copied out of their slots (a copy per frame, on the loop). Such an item waits instead: the loop
        runs what was scheduled (the arrays die, their slots come back), and :meth:`_resume_dispatch` goes
        on, in order, lending again. If the first item it takes still finds no slot to lend
        (``loop_had_a_turn``: a consumer that keeps its arrays), it is copied out as before, so the worker
        is never held up for more than a loop turn."""
        first = loop_had_a_turn
        for kind, payload in self._reader.messages():
            if not first and self._dispatch.would_copy(kind, payload):
                self._reader.put_back()
                self._dispatch_paused = True
                self._loop.call_soon(self._resume_dispatch)
                return False
            self._dispatch.handle(kind, payload, self._reader.fds)
            if self._closed:  # on_item closed the channel
                return False
            first = False
        return True

    def _resume_dispatch(self) -> None:
        self._dispatch_paused = False
        if not self._closed:
            self._dispatch_received(loop_had_a_turn=True)
        if not self._closed:
            self._write_returns_if_due()

    def _take_item(self, item: object) -> None:
        if type(item) is UnpicklableItem:
            logger.error("an item from the worker could not be unpickled and was skipped", exc_info=item.error)
            return
        try:
            self._on_item(item)
        except Exception:
            logger.exception("on_item raised; the channel goes on with the next item")

    def _lent_slot_returned(self, pool_id: int, slot: int) -> None:
        """Any thread, maybe inside the garbage collector: queue the RELEASE and have the loop write it (one
        wake-up for every slot returned until it runs)."""
        self._returns.append(_frame(_KIND_RELEASE, _RELEASE.pack(pool_id, slot)))
        if self._returns_scheduled or self._closed:
            return
        self._returns_scheduled = True
        try:
            if threading.get_ident() == self._loop_thread:
                self._loop.call_soon(self._write_returns)
            else:
                self._loop.call_soon_threadsafe(self._write_returns)
        except RuntimeError:  # the loop is closed: the channel is gone with it
            self._returns_scheduled = False

    def _write_returns(self) -> None:
        self._returns_scheduled = False
        if not self.closed:
            self._write_returns_if_due()

    def _write_returns_if_due(self) -> None:
        """Write the RELEASEs of returned slots when due (see ``_ReceivePools.returns_due``; anything else
        written takes them along too), and whatever else waits to be written."""
        if self._receive_pools.returns_due(len(self._returns)):
            self._queue(b"")
        self._flush()

    def _slot_released(self, pool_id: int, slot: int) -> None:
        self._send_pools.release(pool_id, slot)
        if self._send_pools.pending_drops:
            self._queue(b"")  # tell the worker to unmap a replaced pool
        self._wake_waiters()

    def _end_of_stream(self) -> None:
        self._loop.remove_reader(self._fd)
        self._reading = False
        self._eof = True
        self._wake_waiters()
        try:
            self._on_eof()
        except Exception:
            logger.exception("on_eof raised")



def _ignore(*args: object) -> None:
    """The callbacks of a closed endpoint."""
