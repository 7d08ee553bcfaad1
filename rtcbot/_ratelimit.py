"""Log a warning that can repeat every frame or block at most once per period, with a count."""
from __future__ import annotations

import logging
import time
from typing import Any


class EverySoOften:
    """Logs a repeated warning at most once per ``period`` seconds, saying how many times it happened::

        bad_items = EverySoOften(logger)
        bad_items.warning("skipped an item: %s", err)     # the first now, then one line per 5 s at most
    """

    def __init__(self, log: logging.Logger, period: float = 5.0) -> None:
        self._log = log
        self._period = period
        self._last = -float("inf")
        self._pending = 0

    def warning(self, message: str, *args: Any) -> None:
        self._pending += 1
        now = time.monotonic()
        if now - self._last >= self._period:
            self._log.warning(message + " (%d time(s) since the last report)", *args, self._pending)
            self._last = now
            self._pending = 0
