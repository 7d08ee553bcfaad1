"""Waking an asyncio event loop from other threads to run one callback: :class:`LoopWake`."""
from __future__ import annotations

import asyncio
import logging
import os
import threading
import weakref
from typing import Callable, List

__all__ = ["LoopWake"]

logger = logging.getLogger("rtcbot.base.loop_wake")

_HAVE_EVENTFD = hasattr(os, "eventfd")  # Linux, Python >= 3.10


class LoopWake:
    """Runs ``callback()`` on an event loop each time another thread calls :meth:`wake`.

    ``loop.call_soon_threadsafe(callback)`` does the same, but each call allocates a handle and goes
    through asyncio's self-pipe: a ``send`` from the thread, then on the loop an ``epoll_wait`` return and
    two ``recv`` (the second one raising ``BlockingIOError``). A thread that wakes the loop thousands of
    times a second (frames from a video file decoded unpaced) spends a noticeable share of the loop's CPU
    there. On Linux with Python 3.10+ a LoopWake has its own ``eventfd`` instead, watched by the loop with
    ``add_reader``: one 8-byte write from the thread, one read on the loop, no allocation::

        wake = LoopWake(loop, drain)
        wake.start()                     # on the loop's thread (or before the loop runs)
        wake.wake()                      # from any thread: drain() runs on the loop soon
        wake.close()                     # on the loop's thread: the eventfd is closed

    Wakes that come before the loop got round to the callback may be merged into one call (the eventfd
    counts them; the callback runs once), so the callback must take everything that is waiting, as a
    drain does. Elsewhere (no ``os.eventfd``, a loop without ``add_reader`` such as Windows' proactor, a
    LoopWake made off the loop's thread while it runs), and after :meth:`close`, ``wake()`` falls back to
    ``call_soon_threadsafe``: a wake is never lost, and it raises ``RuntimeError`` only once the loop is
    closed, as ``call_soon_threadsafe`` does.

    The eventfd is written only under a lock that :meth:`close` takes before closing it, so a thread racing
    ``close()`` never writes to a closed (or already reused) descriptor number.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
        self._loop = loop
        self._callback = callback
        self._lock = threading.Lock()
        self._fd = -1  # the eventfd while the loop watches it; -1: wakes go through call_soon_threadsafe
        self._fd_box: List[int] = [-1]  # the same number, for the finalizer (it must not hold self)
        self._closed = False
        self._finalizer = weakref.finalize(self, _close_fd, self._fd_box)
        self._finalizer.atexit = False  # at exit the owner's close() may still run (and close it itself)

    def start(self, use_eventfd: bool = True) -> None:
        """Have the loop watch an eventfd for the wakes from now on (where the platform allows; otherwise, or
        with ``use_eventfd=False``, wakes keep going through ``call_soon_threadsafe``). Call it on the loop's
        thread, or before the loop runs; :meth:`close` releases the descriptor."""
        if self._closed or self._fd >= 0 or not (use_eventfd and _HAVE_EVENTFD):
            return
        if not _may_add_reader_now(self._loop):
            return
        fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)  # type: ignore[attr-defined]
        try:
            self._loop.add_reader(fd, self._on_readable)
        except (NotImplementedError, RuntimeError, ValueError, OSError):
            os.close(fd)  # a proactor loop, or a closed one: the plain path serves
            return
        with self._lock:
            self._fd = self._fd_box[0] = fd

    @property
    def uses_eventfd(self) -> bool:
        """True while wakes go through the LoopWake's own eventfd (False: ``call_soon_threadsafe``)."""
        return self._fd >= 0

    def wake(self) -> None:
        """From any thread: have the loop run the callback soon. ``RuntimeError`` if the loop is closed."""
        with self._lock:
            fd = self._fd
            if fd >= 0 and not self._loop.is_closed():
                os.eventfd_write(fd, 1)  # type: ignore[attr-defined]
                return
        self._loop.call_soon_threadsafe(self._callback)

    def _on_readable(self) -> None:
        try:
            os.eventfd_read(self._fd)  # type: ignore[attr-defined]  # resets the count: merged wakes, one call
        except (BlockingIOError, OSError):
            return  # nothing to read (a spurious wake-up) or closed meanwhile
        self._callback()

    def close(self) -> None:
        """Stop watching and close the eventfd; later wakes use ``call_soon_threadsafe``. Idempotent, never
        raises. Call it on the loop's thread, or when the loop is not running (or closed); from another thread
        while the loop runs, the eventfd is released on the loop shortly after. A wake that was written
        but not yet read runs the callback anyway (scheduled on the loop)."""
        with self._lock:
            fd, self._fd = self._fd, -1
            self._closed = True
        if fd < 0:
            return
        loop = self._loop
        if _may_add_reader_now(loop) or loop.is_closed():
            self._release(fd)
            return
        try:
            loop.call_soon_threadsafe(self._release, fd)
        except RuntimeError:  # closed meanwhile: nobody watches the descriptor any more
            self._release(fd)

    def _release(self, fd: int) -> None:
        loop = self._loop
        pending = False
        try:
            pending = os.eventfd_read(fd) > 0  # type: ignore[attr-defined]
        except OSError:  # BlockingIOError: no wake was waiting
            pass
        try:
            if not loop.is_closed():
                loop.remove_reader(fd)
        except Exception:  # never raise from close; the descriptor is closed below either way
            logger.debug("removing the eventfd reader failed", exc_info=True)
        self._fd_box[0] = -1
        self._finalizer.detach()
        try:
            os.close(fd)
        except OSError:  # pragma: no cover - only this object closes it
            logger.debug("closing the eventfd failed", exc_info=True)
        if pending:
            try:
                loop.call_soon_threadsafe(self._callback)  # this may be another thread, the loop not running
            except RuntimeError:  # closed: nobody is left to deliver to
                pass


def _may_add_reader_now(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether this thread may change what ``loop`` watches: it runs the loop, or nobody does."""
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return not loop.is_running()


def _close_fd(box: List[int]) -> None:
    # A LoopWake dropped without close() (its loop closed first, so nothing references it): close the fd.
    fd, box[0] = box[0], -1
    if fd >= 0:
        try:
            os.close(fd)
        except OSError:
            pass
