"""EverySoOften: the one helper for log messages that could repeat every frame, block or sample."""
from __future__ import annotations

import logging
import threading

import pytest

from rtcbot import _ratelimit
from rtcbot._ratelimit import EverySoOften


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = Clock()
    monkeypatch.setattr(_ratelimit.time, "monotonic", fake.monotonic)
    return fake


def messages(caplog):
    return [(r.levelno, r.getMessage(), bool(r.exc_info)) for r in caplog.records]


def test_the_first_message_is_logged_then_one_per_period_with_the_count(caplog, clock):
    log = EverySoOften(logging.getLogger("rtcbot.test"), period=5)
    with caplog.at_level(logging.WARNING, "rtcbot.test"):
        assert log.warning("bad item %s", 1)
        assert not log.warning("bad item %s", 2)
        assert not log.warning("bad item %s", 3)
        clock.now += 5
        assert log.warning("bad item %s", 4)
    assert messages(caplog) == [
        (logging.WARNING, "bad item 1 (1 time(s) since the last report)", False),
        (logging.WARNING, "bad item 4 (3 time(s) since the last report)", False),
    ]


def test_error_and_exception_levels_and_the_traceback(caplog, clock):
    errors, bugs = EverySoOften(logging.getLogger("rtcbot.test")), EverySoOften(logging.getLogger("rtcbot.test"))
    with caplog.at_level(logging.WARNING, "rtcbot.test"):
        errors.error("could not encode")
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            bugs.exception("handler failed")
    assert messages(caplog) == [
        (logging.ERROR, "could not encode (1 time(s) since the last report)", False),
        (logging.ERROR, "handler failed (1 time(s) since the last report)", True),
    ]


def test_counts_from_many_threads_add_up(caplog, clock):
    log = EverySoOften(logging.getLogger("rtcbot.test"))
    with caplog.at_level(logging.WARNING, "rtcbot.test"):
        threads = [threading.Thread(target=lambda: [log.warning("x") for _ in range(1000)]) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        clock.now += 5
        log.warning("x")
    first, last = messages(caplog)
    assert first[1].startswith("x (1 ") and last[1] == "x (4000 time(s) since the last report)"
