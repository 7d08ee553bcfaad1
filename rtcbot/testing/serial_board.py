"""SerialBoard: what the ``rtcbot_serial_board`` fixture gives, a board on a serial port (real or simulated)
with the session's open :class:`~rtcbot.SerialConnection` to it.

    def test_motor_command_is_applied(rtcbot_run, rtcbot_serial_board):
        async def main():
            readings = rtcbot_serial_board.readings()            # a queue of what the board sends
            rtcbot_serial_board.connection.put_nowait({"left": 100, "right": -100})
            ...
        rtcbot_run(main())

``port`` and ``options`` are there for code that opens its own connection (robot code under test, with
``SerialConnection(board.port, **board.options)``); opening a real Arduino resets it, so prefer the shared
``connection``.
"""

from __future__ import annotations

import asyncio
from typing import Any, Dict, List, Optional

__all__ = ["SerialBoard"]


class SerialBoard:
    """A serial board for one test: its ``port``, the SerialConnection ``options`` that speak its protocol,
    the session's ``connection``, and ``readings()`` subscriptions that end with the test."""

    def __init__(
        self,
        port: str,
        options: Dict[str, Any],
        connection: Any,
        simulated: bool,
        description: str,
        sim_board: Any = None,
    ) -> None:
        self.port = port
        self.options = dict(options)
        self.simulated = simulated
        self.description = description
        self.sim_board = sim_board  # the PtyDevice behind a simulated board (its commands, speeds...), else None
        self.connection = connection
        """The SerialConnection to the board, opened once for the session (reopened after an injected fault)."""
        self._subscriptions: List[Any] = []

    def readings(self, subscription: Optional[Any] = None) -> Any:
        """Subscribe to what the board sends from now on (an ``asyncio.Queue`` unless given); unsubscribed
        when the test ends. Call it on the test's loop (inside ``rtcbot_run``)."""
        conn = self.connection
        subscription = conn.subscribe(subscription if subscription is not None else asyncio.Queue())
        self._subscriptions.append((conn, subscription))
        return subscription

    def end_test(self) -> None:
        """Unsubscribe what the test subscribed, and the default subscription a ``connection.get()`` made
        (on the loop thread)."""
        subscriptions, self._subscriptions = self._subscriptions, []
        for conn, subscription in subscriptions:
            conn.unsubscribe(subscription)
        self.connection.unsubscribe()

    def __repr__(self) -> str:
        kind = "simulated" if self.simulated else "real"
        return f"<SerialBoard {kind} {self.description} at {self.port}>"
