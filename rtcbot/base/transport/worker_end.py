"""The worker process's end of the channel: blocking send/recv, usable from any thread."""
from __future__ import annotations

import array
import collections
import logging
import os
import select
import socket
import threading
from typing import Callable, Deque, List, Optional

from .dispatch import ReceiveDispatcher, UnpicklableItem
from .shared_memory import _ReceivePools, _SendPool, _SendPools
from .sockets import ChannelClosed
from .wire import (
    _DROP,
    _KIND_DROP,
    _KIND_RELEASE,
    _RELEASE,
    _Encoded,
    _frame,
    _FrameReader,
)

logger = logging.getLogger("rtcbot.base.transport")

# While threads waiting in recv()/wait_for() or sending items through shared memory have the reader thread's
# turn to read the socket, the reader thread looks this often (seconds) whether they went away for good, to
# read again itself.
TAKE_BACK_AFTER = 0.1

# ------------------------------------------------------------------------------------------- worker end


class WorkerEndpoint:
    """The worker process's end of the channel: blocking ``send``/``recv``, usable from any thread.

    A reader thread receives items (queued for :meth:`recv`) and slot releases (which wake a blocked
    :meth:`send`)::

        channel = WorkerEndpoint(sock)
        channel.send({"ready": True})
        command = channel.recv()
        ok = channel.send(frame, block=False)   # False: dropped, all slots still with the parent
        channel.close()

    Or, with ``on_item``, each item is handed to it as it arrives, in the thread reading the socket (:meth:`recv`
    then only raises ChannelClosed at the end), and ``on_eof()`` runs there once when the channel ends; a
    thread that waits for what ``on_item`` stores uses :meth:`wait_for`::

        channel = WorkerEndpoint(sock, on_item=items.put, on_eof=stop)
        channel.wait_for(lambda: not items.empty())

    A thread that waits in :meth:`recv` or :meth:`wait_for` reads the socket itself once the reader thread
    found it waiting (the reader thread then sleeps): the next item wakes it directly instead of waking the
    reader thread, which would wake it in turn. Waking a thread costs more than a 640x480 frame's copy on some
    machines. In the same way, once the reader thread found items being sent through shared memory, a thread
    sending one reads what has arrived (without waiting) before it takes a slot, and reads until a slot is
    freed when none is, so the parent's RELEASEs do not wake the reader thread (``on_item`` may then run in
    that thread). The reader thread reads again within ``TAKE_BACK_AFTER`` seconds once no thread waits and
    none sent such an item.

    :param sock: the ``worker_end`` of :func:`socket_pair`
    :param slots: how many large items may be in flight to the parent at once
    :param min_shared_bytes: buffers at least this large go through shared memory, smaller ones inline
    :param pool_bytes: items small enough get more slots than ``slots``, up to twice as many, as long as a
        pool of them fits in this many bytes (0: exactly ``slots``)
    :param on_item: called with each item in the thread reading the socket (an item that failed to unpickle is
        logged and skipped); it may send, but should not block for long (it holds up the slots returned to
        this end)
    :param on_eof: called in the reader thread once the channel ended (the parent closed it, or close())
    """

    def __init__(
        self,
        sock: socket.socket,
        slots: int = 4,
        min_shared_bytes: int = 65536,
        pool_bytes: int = 0,
        on_item: Optional[Callable[[object], None]] = None,
        on_eof: Optional[Callable[[], None]] = None,
    ) -> None:
        self.dropped = 0  # items send(block=False) dropped because no slot was free
        self.sent = 0  # items written to the socket
        self._sock = sock
        self._sock.setblocking(True)
        self._min_shared_bytes = min_shared_bytes
        # One lock guards everything below except the socket writes. Two conditions on it, so that a slot the
        # parent frees wakes only a send() waiting for one, and an arriving item only recv(): the worker's
        # reader thread sits in recv() for good, and waking it per freed slot cost a context switch per frame.
        self._lock = threading.Lock()
        self._slot_freed = threading.Condition(self._lock)
        self._item_arrived = threading.Condition(self._lock)
        self._send_pools = _SendPools(slots, pool_bytes)
        self._receive_pools = _ReceivePools(self._lent_slot_returned)
        # Small messages that ride with the next write: RELEASEs of lent slots whose last array died (any
        # thread, maybe inside the garbage collector), and what send_soon() held back until the next write or
        # flush(). RELEASEs go two at a time, unless the parent may be short of slots (see _returns_due);
        # whoever writes takes all of them, without waiting for the write lock (its holder writes them when
        # it is done).
        self._returns: Deque[bytes] = collections.deque()
        self._riders: Deque[bytes] = collections.deque()
        self._items: Deque[object] = collections.deque()
        self._on_item = on_item
        self._on_eof = on_eof
        self._eof = False  # the parent's end is gone
        self._closed = False  # close() was called
        self._stop_waiting = False  # stop_waiting() was called: no send waits for a slot any more
        self._write_lock = threading.Lock()
        # Whose turn it is to read the socket: the reader thread's, or (lent) that of threads waiting in recv()
        # or wait_for() and of threads sending through shared memory, one at a time (reading). The frame reader
        # and dispatcher go with the turn.
        self._lent = False
        self._reading_thread: Optional[threading.Thread] = None  # the lent thread reading now, if any
        self._waiting = 0  # threads in recv() or wait_for()
        self._senders_waiting = 0  # threads in send() waiting for a free slot
        self._slot_sent = False  # an item went through shared memory since the reader thread last looked
        self._read_failed = False  # a waiting thread's read found the end (or failed): the reader thread ends
        self._turn_back = threading.Condition(self._lock)  # the reader thread waits here while its turn is lent
        # A waiting thread that reads polls this pipe too: wake_waiting() writes to it, so that a ready() made
        # true by something other than a message is seen without one.
        self._wake_read_fd, self._wake_write_fd = os.pipe()
        os.set_blocking(self._wake_read_fd, False)
        os.set_blocking(self._wake_write_fd, False)
        self._poller = select.poll()
        self._poller.register(self._sock.fileno(), select.POLLIN)
        self._poller.register(self._wake_read_fd, select.POLLIN)
        self._frames = _FrameReader()
        self._dispatch = ReceiveDispatcher(
            self._receive_pools, self._take_item, self._slot_released, self._write, peer="parent"
        )
        self._reader = threading.Thread(target=self._read_loop, name="rtcbot-transport-reader", daemon=True)
        self._reader.start()

    def send(self, obj: object, block: bool = True) -> bool:
        """Send ``obj`` to the parent; return False if it was dropped (``block=False``, no free slot).

        :raises ChannelClosed: the parent is gone or :meth:`close` was called
        :raises NotPicklableError: ``obj`` cannot be pickled
        """
        encoded = _Encoded(obj, self._min_shared_bytes)
        try:
            if not encoded.buffers:
                self._write(encoded.frame())
            else:
                with self._lock:
                    self._slot_sent = True
                    if self._may_read_here():
                        self._read_in_this_thread(wait=False)  # the RELEASEs that came meanwhile free slots
                        self._hand_over_turn()
                    while True:
                        self._check_open()
                        taken = self._send_pools.acquire(encoded.size)
                        if taken is not None:
                            break
                        if not block:
                            self.dropped += 1
                            return False
                        if self._stop_waiting:
                            raise ChannelClosed("the channel is closing: the parent frees no more slots")
                        self._senders_waiting += 1
                        try:
                            if self._may_read_here():
                                self._read_in_this_thread()  # until a message comes: the RELEASE we wait for
                                self._hand_over_turn()
                            else:
                                self._slot_freed.wait()  # woken by a RELEASE, when the turn is free, at EOF/close
                        finally:
                            self._senders_waiting -= 1
                pool, slot = taken
                try:
                    pool.write(slot, encoded.offsets, encoded.buffers)
                except ValueError as e:  # close() in another thread unmapped the pool under us
                    if not self._closed:
                        raise
                    raise ChannelClosed("the worker end of the channel was closed") from e
                self._write(encoded.frame(pool.pool_id, slot), pool)
        finally:
            encoded.release()
        with self._lock:
            self.sent += 1
        return True

    def send_soon(self, obj: object) -> None:
        """Queue a small message for the parent without writing it: it rides with the next write from this
        end (an item, a returned slot) or goes at :meth:`flush`. Each write wakes the other process, which
        costs both sides far more than the bytes; a report the parent needs soon but not at once (flow
        control) is sent this way, and the sender calls :meth:`flush` before it waits::

            channel.send_soon({"took": 3})
            ...
            channel.flush()              # about to block: what was held back goes now

        Everything travels inline (no shared memory). Messages keep their order with everything sent after.

        :raises NotPicklableError: ``obj`` cannot be pickled
        """
        self._riders.append(_Encoded(obj, None).frame())

    def flush(self) -> None:
        """Write what :meth:`send_soon` held back (and slots returned meanwhile), unless another thread is
        writing: it takes them along. Never waits; a closed channel drops them."""
        if self._riders or self._returns_due():
            self._write_returns()

    def recv(self) -> object:
        """Wait for the next item from the parent and return it.

        :raises ChannelClosed: the parent closed its end (after every item it sent was returned) or
            :meth:`close` was called
        """
        while True:
            going_on = self.wait_for(self._has_item)
            with self._lock:
                if self._closed:
                    raise ChannelClosed("the worker end of the channel was closed")
                if self._items:
                    item = self._items.popleft()
                    break
                if not going_on:
                    raise ChannelClosed("the parent closed the channel")
                # else another thread in recv() took the item first
        if isinstance(item, UnpicklableItem):
            raise item.error
        return item

    def wait_for(self, ready: Callable[[], bool]) -> bool:
        """Wait until ``ready()`` is true; return False if the channel ended (or was closed) first.

        For a thread that waits for what ``on_item`` stores. ``ready`` is called with the channel's lock held,
        at once, after each batch of messages read and when the channel ends, so it must be quick and must not
        use the channel. While it waits, this thread may read the socket itself and run ``on_item``::

            items = queue.SimpleQueue()
            channel = WorkerEndpoint(sock, on_item=items.put)
            while channel.wait_for(lambda: not items.empty()):
                handle(items.get())
        """
        with self._lock:
            self._waiting += 1
            try:
                while not ready():
                    if self._closed or self._eof or self._read_failed:
                        return False
                    if self._lent and self._reading_thread is None:
                        self._read_in_this_thread()
                    else:
                        self._item_arrived.wait()  # woken after the reader's batch, or when the turn is free
                return True
            finally:
                self._waiting -= 1
                if self._lent and self._reading_thread is None:
                    self._hand_over_turn()  # another waiting thread, or a send() waiting for a slot, reads now

    def wake_waiting(self) -> None:
        """Have every thread in :meth:`recv` or :meth:`wait_for` call its ``ready()`` again now: for a
        ``ready()`` that something other than the channel's messages made true (another thread of yours)::

            items.put(STOP)
            channel.wake_waiting()
        """
        with self._lock:
            self._item_arrived.notify_all()
            self._wake_reading_thread()

    def _wake_reading_thread(self) -> None:
        """With the lock held: a lent thread waiting in poll() for the socket returns now."""
        if self._reading_thread is not None and not self._closed:
            try:
                os.write(self._wake_write_fd, b"w")
            except BlockingIOError:
                pass  # the pipe is full of wake-ups already

    def stop_waiting(self) -> None:
        """A ``send`` that would wait for a free slot raises ChannelClosed instead, now and from then on.

        For a worker asked to close: the parent no longer reads (it is joining the worker), so no slot
        would ever be freed. Sends that need no slot, and ``recv``, work as before.
        """
        with self._lock:
            self._stop_waiting = True
            self._slot_freed.notify_all()
            self._wake_reading_thread()  # a send() may be reading the socket for the RELEASE it waits for

    def close(self) -> None:
        """Close the channel: blocked :meth:`send` and :meth:`recv` raise ChannelClosed; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._wake_everyone()
            reading_here = self._reading_thread is threading.current_thread()
        try:
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes whoever reads (EOF) and a writer stuck in sendall
        except OSError:
            pass  # already disconnected: nothing to wake
        if threading.current_thread() is not self._reader and not reading_here:  # (else: called from on_item)
            self._reader.join()  # it ends once no waiting thread reads any more
        with self._write_lock:
            self._sock.close()
        with self._lock:
            self._send_pools.close()
            self._receive_pools.close()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called or the parent is gone."""
        return self._closed or self._eof or self._read_failed

    def _check_open(self) -> None:
        if self._closed:
            raise ChannelClosed("the worker end of the channel was closed")
        if self._eof or self._read_failed:
            raise ChannelClosed("the parent closed the channel")

    def _write(self, frame: bytes, pool: Optional[_SendPool] = None) -> None:
        """Write one message (announcing ``pool`` and unmapping retired pools first when needed)."""
        with self._write_lock:
            try:
                with self._lock:
                    drops, self._send_pools.pending_drops = self._send_pools.pending_drops, []
                riders = self._take_returns()  # queued before this message: they go first, in the same write
                head = b"".join([*riders, *(_frame(_KIND_DROP, _DROP.pack(pool_id)) for pool_id in drops)])
                if pool is not None and not pool.announced:
                    announcement = pool.announcement()
                    fds = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [pool.fd]))]
                    sent = self._sock.sendmsg([announcement], fds, socket.MSG_NOSIGNAL)
                    self._sock.sendall(announcement[sent:], socket.MSG_NOSIGNAL)
                    pool.announced = True
                if head or frame:
                    self._sock.sendall(head + frame, socket.MSG_NOSIGNAL)
            except OSError as e:
                raise ChannelClosed(f"the parent end of the channel is gone ({e})") from e
        if self._riders or self._returns_due():
            self._write_returns()

    def _lent_slot_returned(self, pool_id: int, slot: int) -> None:
        self._returns.append(_frame(_KIND_RELEASE, _RELEASE.pack(pool_id, slot)))
        if self._returns_due():
            self._write_returns()

    def _returns_due(self) -> bool:
        return self._receive_pools.returns_due(len(self._returns))

    def _write_returns(self) -> None:
        """Write the queued RELEASEs and held-back messages unless another write is under way (it writes them
        when it ends). Never waits for the write lock: this may run inside the garbage collector, in a thread
        holding it."""
        returns, riders = self._returns, self._riders
        while returns or riders:
            if not self._write_lock.acquire(blocking=False):
                return
            try:
                batch = self._take_returns()
                if batch and not self._closed:
                    self._sock.sendall(b"".join(batch), socket.MSG_NOSIGNAL)
            except OSError as e:
                logger.debug("returning lent slots to the parent failed: %s", e)
            finally:
                self._write_lock.release()

    def _take_returns(self) -> List[bytes]:
        """Empty the queues of messages waiting to ride with a write: held-back ones (send_soon(), in order)
        and returned slots."""
        batch = []
        for queue in (self._riders, self._returns):
            while queue:
                batch.append(queue.popleft())
        return batch

    def _has_item(self) -> bool:
        return bool(self._items)

    def _receive_batch(self) -> bool:
        """Read once from the socket and act on every complete message; False at EOF. Only the thread whose
        turn it is calls this."""
        if not self._frames.receive(self._sock):
            return False
        for kind, payload in self._frames.messages():
            self._dispatch.handle(kind, payload, self._frames.fds)
        if self._returns_due():  # the items just lent their slots: the parent may
            self._write_returns()  # now be short of slots with one of them held back here
        return True

    def _may_read_here(self) -> bool:
        """With the lock held: is the turn lent and free, so that this thread may read?"""
        return self._lent and self._reading_thread is None and not self.closed

    def _read_in_this_thread(self, wait: bool = True) -> None:
        """With the lock held and the turn lent and free: read one batch in this (lent) thread; without
        ``wait``, only if one has arrived."""
        self._reading_thread = threading.current_thread()
        self._lock.release()
        more = False
        try:
            ready = self._poller.poll(None if wait else 0)
            if any(fd == self._wake_read_fd for fd, _ in ready):
                self._drain_wake_pipe()  # wake_waiting(): look at ready() again
                more = True
            else:
                more = self._receive_batch() if ready else True
        except (OSError, ChannelClosed) as e:
            logger.debug("worker channel read in a waiting thread stops: %s", e)
        finally:
            self._lock.acquire()
            self._reading_thread = None
            if not more:
                self._read_failed = True  # the reader thread ends the channel (on_eof runs there)
            if self._closed or self._read_failed:
                self._turn_back.notify_all()

    def _drain_wake_pipe(self) -> None:
        try:
            while os.read(self._wake_read_fd, 512):
                pass
        except BlockingIOError:
            pass  # empty

    def _hand_over_turn(self) -> None:
        """With the lock held, once this thread stopped reading: threads that wait to read may now."""
        if self._waiting:
            self._item_arrived.notify_all()
        if self._senders_waiting:
            self._slot_freed.notify_all()

    def _take_turn(self) -> bool:
        """In the reader thread, between batches: lend the turn to threads waiting in recv()/wait_for() and
        to threads sending through shared memory, and wait until it is the reader thread's again; False once
        the channel ended."""
        with self._lock:
            if (self._waiting or self._slot_sent) and not self._closed:
                self._lent = True
                self._hand_over_turn()
            while self._lent:
                if self._closed or self._read_failed:
                    return False
                if self._reading_thread is None and not self._waiting and not self._slot_sent:
                    self._lent = False  # the waiting and sending threads went away: read again here
                else:
                    self._slot_sent = False  # a send() sets it again while it goes on sending
                    self._turn_back.wait(TAKE_BACK_AFTER)
            return True

    def _read_loop(self) -> None:
        try:
            while self._take_turn() and self._receive_batch():
                pass
        except (OSError, ChannelClosed) as e:
            logger.debug("worker channel reader stops: %s", e)
        finally:
            with self._lock:
                self._eof = True
                self._wake_everyone()
                while self._reading_thread is not None:  # a waiting thread still reads (close() woke it)
                    self._turn_back.wait()
                # No thread reads from now on (they all see _eof), and wake_waiting() writes only to one.
                os.close(self._wake_read_fd)
                os.close(self._wake_write_fd)
            self._frames.close()
            if self._on_eof is not None:
                try:
                    self._on_eof()
                except Exception:
                    logger.exception("on_eof raised")

    def _wake_everyone(self) -> None:
        """With the lock held: the channel ended, so every waiting send() and recv() must look again."""
        self._slot_freed.notify_all()
        self._item_arrived.notify_all()
        self._turn_back.notify_all()

    def _take_item(self, item: object) -> None:
        if self._on_item is not None:
            if type(item) is UnpicklableItem:
                logger.error("an item from the parent could not be unpickled and was skipped", exc_info=item.error)
                return
            try:
                self._on_item(item)
            except ChannelClosed:
                raise
            except Exception:
                logger.exception("on_item raised; the channel goes on with the next item")
            return
        with self._lock:
            self._items.append(item)
            self._item_arrived.notify()

    def _slot_released(self, pool_id: int, slot: int) -> None:
        with self._lock:
            self._send_pools.release(pool_id, slot)
            self._slot_freed.notify_all()
            has_drops = bool(self._send_pools.pending_drops)
        if has_drops:
            self._write(b"")  # tell the parent to unmap a replaced pool
