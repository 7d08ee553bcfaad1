"""Small helpers for tests (import as ``from tests.helpers import run``)."""
from __future__ import annotations

import asyncio


def run(coro, timeout: float = 20.0):
    """Run ``coro`` in a fresh event loop, failing the test if it takes longer than ``timeout`` seconds."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def next_item(subscription, timeout: float = 5.0):
    """The next item of a subscription, or a test failure after ``timeout`` seconds."""
    return await asyncio.wait_for(subscription.get(), timeout)
