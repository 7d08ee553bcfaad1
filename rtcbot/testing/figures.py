"""Figures: the numbers a check measured (a latency, a frame rate), recorded for JUnit XML and the summary.

A result object of a check has ``figures()``, a dict of name to number; recording it puts each figure in
the test's properties (``record_property``), so it lands in ``--junitxml`` output as
``<property name="rtcbot.serial_round_trip.latency_p50_ms" value="3.1"/>``, and the plugin prints every
recorded figure in a table at the end of the run. Robot code can record its own the same way::

    def test_stop_distance(record_property):
        record_property("rtcbot.stop_distance_cm", 4.2)      # any property named rtcbot.* is a figure
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Tuple

__all__ = ["PREFIX", "Figure", "FigureCollector", "FigureTable", "figure_properties", "record"]

PREFIX = "rtcbot."


@dataclass(frozen=True)
class Figure:
    test: str  # the test's node id
    name: str  # without the rtcbot. prefix
    value: Any


def figure_properties(check: str, figures: Dict[str, Any]) -> List[Tuple[str, Any]]:
    """The (property name, value) pairs for a check's figures: ``rtcbot.<check>.<figure>``, rounded."""
    return [(f"{PREFIX}{check}.{name}", _rounded(value)) for name, value in figures.items()]


def _rounded(value: Any) -> Any:
    if isinstance(value, float) and math.isfinite(value):
        return round(value, 4)
    return value


def record(record_property: Callable[[str, Any], None], check: str, figures: Dict[str, Any]) -> None:
    """Record a check's figures with pytest's ``record_property``."""
    for name, value in figure_properties(check, figures):
        record_property(name, value)


class FigureTable:
    """Every figure of the run, collected from test reports, printed as one table at the end."""

    def __init__(self) -> None:
        self.figures: List[Figure] = []

    def add_report(self, nodeid: str, user_properties: Iterable[Tuple[str, Any]]) -> None:
        for name, value in user_properties:
            if isinstance(name, str) and name.startswith(PREFIX):
                self.figures.append(Figure(nodeid, name[len(PREFIX) :], value))

    def lines(self) -> List[str]:
        """The table as text lines (empty when nothing was recorded)."""
        if not self.figures:
            return []
        rows = [(f.test, f.name, _format(f.value)) for f in self.figures]
        widths = [max(len(r[i]) for r in rows + [("test", "figure", "value")]) for i in range(3)]
        header = f"{'test':<{widths[0]}}  {'figure':<{widths[1]}}  {'value':>{widths[2]}}"
        return [header] + [f"{t:<{widths[0]}}  {n:<{widths[1]}}  {v:>{widths[2]}}" for t, n, v in rows]


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return str(value)


class FigureCollector:
    """A pytest plugin object (one per run): collects the rtcbot.* properties of every test report and
    prints them as a table at the end of the run."""

    def __init__(self) -> None:
        self.table = FigureTable()

    def pytest_runtest_logreport(self, report: Any) -> None:
        if report.when == "call":
            self.table.add_report(report.nodeid, report.user_properties)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        lines = self.table.lines()
        if lines:
            terminalreporter.write_sep("=", "rtcbot figures")
            for line in lines:
                terminalreporter.write_line(line)
