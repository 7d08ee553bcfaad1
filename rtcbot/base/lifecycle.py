"""The life of an object with a worker: one lock-guarded state machine, starting -> running -> closing -> closed.

Every producer and consumer has one. ``close()`` may be called from any thread, any number of times, while
the worker ends by itself: exactly one caller wins :meth:`Lifecycle.begin_close` and tears the object down;
the others wait (bounded) for :meth:`Lifecycle.wait_closed`::

    life = Lifecycle()
    life.running()
    if life.begin_close():          # True for the first closer only
        stop_and_join_the_worker()
        life.finish_close()         # wakes every other closer
    else:
        life.wait_closed(timeout=2)

``closing`` turns True at the first ``begin_close()`` (so a worker loop ``while not self.closed:`` ends at
once); ``is_closed`` once the teardown is done (the worker is gone).
"""
from __future__ import annotations

import enum
import threading
from typing import Optional

__all__ = ["Lifecycle", "State"]


class State(enum.IntEnum):
    """Where an object is in its life; states only move forward."""

    STARTING = 0
    RUNNING = 1
    CLOSING = 2
    CLOSED = 3


class Lifecycle:
    """A threadsafe ``State`` that only moves forward, with a wake-up for those waiting for the end."""

    __slots__ = ("_lock", "_state", "_closed", "_loop_side_done")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state = State.STARTING
        self._closed = threading.Event()
        self._loop_side_done = False

    @property
    def state(self) -> State:
        return self._state

    @property
    def closing(self) -> bool:
        """True from the first ``begin_close()`` on (closing or closed)."""
        return self._state >= State.CLOSING

    @property
    def is_closed(self) -> bool:
        """True once the teardown finished."""
        return self._state is State.CLOSED

    def running(self) -> bool:
        """Starting -> running (the worker started); False if closing began first."""
        with self._lock:
            if self._state is State.STARTING:
                self._state = State.RUNNING
                return True
            return False

    def begin_close(self) -> bool:
        """Move to closing; True for the one caller that does so (it must call ``finish_close()``)."""
        with self._lock:
            if self._state >= State.CLOSING:
                return False
            self._state = State.CLOSING
            return True

    def claim_loop_side(self) -> bool:
        """True once only: for the part of the teardown that runs on the event loop (firing onClose)."""
        with self._lock:
            if self._loop_side_done:
                return False
            self._loop_side_done = True
            return True

    def finish_close(self) -> None:
        """The teardown is done: closed, and every ``wait_closed()`` returns."""
        with self._lock:
            self._state = State.CLOSED
        self._closed.set()

    def wait_closed(self, timeout: Optional[float] = None) -> bool:
        """Block until the teardown finished (True) or ``timeout`` seconds passed (False)."""
        return self._closed.wait(timeout)

    def __repr__(self) -> str:
        return f"<Lifecycle {self._state.name.lower()}>"
