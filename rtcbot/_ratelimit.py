"""Log a message that can repeat every frame or block at most once per period, with a count."""
from __future__ import annotations

import logging
import threading
import time
from typing import Any


class EverySoOften:
    """Logs a repeated message at most once per ``period`` seconds, saying how many times it happened::

        bad_items = EverySoOften(logger)
        bad_items.warning("skipped an item: %s", err)     # the first now, then one line per 5 s at most
        handler_bugs.exception("failed to handle a sample")   # ... with the traceback (inside an except)

    Safe to call from any thread (e.g. a library's callback thread and the event loop at once).
    """

    def __init__(self, log: logging.Logger, period: float = 5.0) -> None:
        self._log = log
        self._period = period
        self._last = -float("inf")
        self._pending = 0
        self._lock = threading.Lock()

    def log(self, level: int, message: str, *args: Any, exc_info: bool = False) -> bool:
        """Log ``message % args`` at ``level`` unless one was logged less than ``period`` ago (then only
        count it). Returns whether it was logged."""
        with self._lock:
            self._pending += 1
            now = time.monotonic()
            if now - self._last < self._period:
                return False
            self._last, count, self._pending = now, self._pending, 0
        self._log.log(level, message + " (%d time(s) since the last report)", *args, count, exc_info=exc_info)
        return True

    def warning(self, message: str, *args: Any) -> bool:
        return self.log(logging.WARNING, message, *args)

    def error(self, message: str, *args: Any) -> bool:
        return self.log(logging.ERROR, message, *args)

    def exception(self, message: str, *args: Any) -> bool:
        """Like :meth:`error`, with the traceback of the exception being handled."""
        return self.log(logging.ERROR, message, *args, exc_info=True)
