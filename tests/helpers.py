"""Small helpers for tests (import as ``from tests.helpers import run``)."""
from __future__ import annotations

import asyncio
import signal


def run(coro, timeout: float = 20.0):
    """Run ``coro`` in a fresh event loop, failing the test if it takes longer than ``timeout`` seconds."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def next_item(subscription, timeout: float = 5.0):
    """The next item of a subscription, or a test failure after ``timeout`` seconds."""
    return await asyncio.wait_for(subscription.get(), timeout)


def sigint_as_in_a_terminal() -> None:
    """``preexec_fn`` for a child a test will Ctrl+C: SIGINT at its default disposition, unblocked, as a
    terminal gives it.

    A program started from a shell with ``&`` (pytest itself, in a CI job or a second run sharing the
    machine) has SIGINT ignored, and an ignored signal stays ignored across exec: Python would then never
    raise KeyboardInterrupt and a Ctrl+C test would fail for a reason that is not the program's::

        subprocess.Popen([sys.executable, "robot.py"], preexec_fn=sigint_as_in_a_terminal)
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
