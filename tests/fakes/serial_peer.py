"""A scriptable device on a pty for serial tests: records what the program writes, sends what the test
asks, optionally echoes. Built on :class:`rtcbot.devices.arduino_sim.PtyDevice` (which also gives
``unplug()`` / ``replug()`` through a symlink)::

    with SerialPeer() as peer:
        conn = SerialConnection(peer.port)
        peer.send(b"hello\\n")
        assert peer.wait_for(lambda data: b"PING" in data)
"""
from __future__ import annotations

import threading
import time
from typing import Callable, Optional

from rtcbot.devices.arduino_sim import PtyDevice


class SerialPeer(PtyDevice):
    """Records every byte written to the port (``received``); ``send()`` queues bytes for the program."""

    def __init__(self, link: Optional[str] = None, echo: bool = False) -> None:
        self.echo = echo
        self._cond = threading.Condition()
        self.received = bytearray()
        self.first_byte_at: Optional[float] = None  # time.monotonic() of the first byte received
        super().__init__(link=link)

    def on_data(self, data: bytes) -> None:
        with self._cond:
            if self.first_byte_at is None:
                self.first_byte_at = time.monotonic()
            self.received += data
            self._cond.notify_all()
        if self.echo:
            self.write(data)

    def send(self, data: bytes) -> None:
        self.write(data)

    def wait_for(self, predicate: Callable[[bytes], bool], timeout: float = 10.0) -> bool:
        """Wait until ``predicate(all bytes received so far)`` is true; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: predicate(bytes(self.received)), timeout)

    def wait_for_bytes(self, n: int, timeout: float = 10.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.received) >= n, timeout)
