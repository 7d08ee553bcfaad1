"""Benchmark rows: checking their shape and printing them as one aligned table."""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence

ROW_KEYS = ("bench", "case", "metric", "value", "unit", "baseline", "baseline_value", "ratio", "target")
COLUMNS = ("bench", "case", "metric", "value", "unit", "baseline", "ratio", "target", "met")


def row(
    bench: str,
    case: str,
    metric: str,
    value: float,
    unit: str,
    baseline: Optional[str] = None,
    baseline_value: Optional[float] = None,
    target: Optional[str] = None,
    met: Optional[bool] = None,
) -> Dict[str, Any]:
    """Make one result row; ``ratio`` is ``value / baseline_value`` when there is a baseline::

    row("process", "1920x1080x3 uint8", "producer", 3100.0, "MB/s", "memcpy", 9800.0, ">= 0.25", True)
    """
    ratio = None
    if baseline_value is not None and baseline_value != 0 and not math.isnan(baseline_value):
        ratio = value / baseline_value
    result: Dict[str, Any] = {
        "bench": bench,
        "case": case,
        "metric": metric,
        "value": float(value),
        "unit": unit,
        "baseline": baseline,
        "baseline_value": None if baseline_value is None else float(baseline_value),
        "ratio": ratio,
        "target": target,
    }
    if met is not None:
        result["met"] = bool(met)
    return result


def check_row(result: Any) -> List[str]:
    """What is wrong with a row a benchmark returned (an empty list if nothing)."""
    if not isinstance(result, dict):
        return [f"a row must be a dict, got {type(result).__name__}"]
    problems = [f"missing key {key!r}" for key in ROW_KEYS if key not in result]
    if "value" in result and not isinstance(result["value"], (int, float)):
        problems.append(f"value must be a number, got {result['value']!r}")
    return problems


def _number(value: Optional[float]) -> str:
    if value is None:
        return "-"
    if math.isnan(value):
        return "nan"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 0.01 or magnitude == 0:
        return f"{value:.3f}"
    return f"{value:.2e}"


def _cells(result: Dict[str, Any]) -> List[str]:
    baseline = result.get("baseline")
    if baseline is not None and result.get("baseline_value") is not None:
        baseline = f"{baseline} {_number(result['baseline_value'])}"
    ratio = result.get("ratio")
    met = result.get("met")
    return [
        str(result.get("bench", "")),
        str(result.get("case", "")),
        str(result.get("metric", "")),
        _number(result.get("value")),
        str(result.get("unit", "")),
        baseline or "-",
        "-" if ratio is None else f"{ratio:.3f}x",
        result.get("target") or "-",
        "-" if met is None else ("yes" if met else "NO"),
    ]


def format_table(results: Sequence[Dict[str, Any]]) -> str:
    """One aligned text table of ``results`` (numbers right-aligned), a header and a rule under it."""
    table = [list(COLUMNS)] + [_cells(result) for result in results]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    numeric = {COLUMNS.index("value"), COLUMNS.index("ratio")}
    lines = []
    for n, line in enumerate(table):
        cells = [
            cell.rjust(width) if (i in numeric and n) else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(line, widths))
        ]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)
