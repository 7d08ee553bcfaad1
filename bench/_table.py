"""Benchmark rows: checking their shape, printing them as one aligned table, and a summary of the targets.

Besides its figure, every row carries the CPU seconds per 1,000 items it cost (this process and its worker
processes, see :mod:`bench._cpu`) and the same for its baseline, so a ratio tells CPU cost as well as speed;
rows that handle no items (memory growth) have None there.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence

ROW_KEYS = (
    "bench", "case", "metric", "value", "unit", "baseline", "baseline_value", "ratio", "target",
    "cpu_per_1k", "baseline_cpu_per_1k", "cpu_ratio",
)  # fmt: skip
COLUMNS = ("bench", "case", "metric", "value", "unit", "baseline", "ratio", "target", "met", "CPU s/1k", "CPU ratio")


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
    *,
    cpu: Optional[float] = None,
    baseline_cpu: Optional[float] = None,
    cpu_target: Optional[str] = None,
    cpu_limit: Optional[float] = None,
) -> Dict[str, Any]:
    """Make one result row; ``ratio`` is ``value / baseline_value`` when there is a baseline, ``cpu`` and
    ``baseline_cpu`` are CPU seconds per 1,000 items (``CpuMeter.per_1k``), and ``cpu_ratio`` their ratio.
    With ``cpu_limit`` (a ratio, e.g. 1.5 for "<= 1.5x"), ``cpu_met`` says whether ``cpu_ratio`` is within it::

        row("process", "1920x1080x3 uint8", "producer", 3100.0, "MB/s", "memcpy", 9800.0, ">= 0.25x", True,
            cpu=0.61, baseline_cpu=0.14)
        row("serial", case, "write", 9000.0, "msg/s", "pyserial loop", 10000.0, ">= 0.9x", False,
            cpu=0.05, baseline_cpu=0.04, cpu_target="CPU <= 1.5x", cpu_limit=1.5)
    """
    ratio = _ratio(value, baseline_value)
    cpu_ratio = _ratio(cpu, baseline_cpu)
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
        "cpu_per_1k": _float(cpu),
        "baseline_cpu_per_1k": _float(baseline_cpu),
        "cpu_ratio": cpu_ratio,
    }
    if met is not None:
        result["met"] = bool(met)
    if cpu_limit is not None:
        result["cpu_target"] = cpu_target or f"CPU <= {cpu_limit:g}x"
        result["cpu_met"] = None if cpu_ratio is None else bool(cpu_ratio <= cpu_limit)
    return result


def _float(value: Optional[float]) -> Optional[float]:
    return None if value is None else float(value)


def _ratio(value: Optional[float], baseline: Optional[float]) -> Optional[float]:
    if value is None or baseline is None or baseline == 0 or math.isnan(baseline) or math.isnan(value):
        return None
    return value / baseline


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
        _cpu_cell(result.get("cpu_per_1k"), result.get("baseline_cpu_per_1k")),
        "-" if result.get("cpu_ratio") is None else f"{result['cpu_ratio']:.2f}x",
    ]


def _cpu_cell(ours: Optional[float], baseline: Optional[float]) -> str:
    """``ours`` or ``ours / baseline`` (CPU seconds per 1,000 items)."""
    if ours is None:
        return "-"
    return _number(ours) if baseline is None else f"{_number(ours)} / {_number(baseline)}"


def format_table(results: Sequence[Dict[str, Any]]) -> str:
    """One aligned text table of ``results`` (numbers right-aligned), a header and a rule under it."""
    table = [list(COLUMNS)] + [_cells(result) for result in results]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    numeric = {COLUMNS.index("value"), COLUMNS.index("ratio"), COLUMNS.index("CPU ratio")}
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


SUMMARY_COLUMNS = ("bench", "measurement", "figure", "baseline", "ratio", "target", "met")


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def targets(results: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """One entry per target in ``results`` (a row's own target, and its CPU target if it has one):
    ``{bench, measurement, figure, baseline, ratio, target, met}``, all strings but ``met`` (bool or None)."""
    entries = []
    for result in results:
        what = f"{result.get('metric', '')} | {result.get('case', '')}"
        if result.get("target"):
            value = f"{_number(result.get('value'))} {result.get('unit', '')}"
            baseline = "-"
            if result.get("baseline") is not None and result.get("baseline_value") is not None:
                baseline = f"{result['baseline']} {_number(result['baseline_value'])}"
            ratio = result.get("ratio")
            entries.append({
                "bench": str(result.get("bench", "")), "measurement": what, "figure": value,
                "baseline": baseline, "ratio": "-" if ratio is None else f"{ratio:.2f}x",
                "target": str(result["target"]), "met": result.get("met"),
            })  # fmt: skip
        if result.get("cpu_target"):
            cpu_ratio = result.get("cpu_ratio")
            entries.append({
                "bench": str(result.get("bench", "")), "measurement": f"CPU s/1k, {what}",
                "figure": f"{_number(result.get('cpu_per_1k'))} s",
                "baseline": f"{_number(result.get('baseline_cpu_per_1k'))} s",
                "ratio": "-" if cpu_ratio is None else f"{cpu_ratio:.2f}x",
                "target": str(result["cpu_target"]), "met": result.get("cpu_met"),
            })  # fmt: skip
    return entries


def format_summary(results: Sequence[Dict[str, Any]], width: int = 60) -> str:
    """A one-screen table of every target in ``results`` with a met / NOT MET column, and a count."""
    entries = targets(results)
    table = [list(SUMMARY_COLUMNS)]
    for entry in entries:
        met = entry["met"]
        table.append([
            entry["bench"], _shorten(entry["measurement"], width), entry["figure"],
            _shorten(entry["baseline"], 30), entry["ratio"], entry["target"],
            "?" if met is None else ("met" if met else "NOT MET"),
        ])  # fmt: skip
    widths = [max(len(line[i]) for line in table) for i in range(len(SUMMARY_COLUMNS))]
    numeric = {SUMMARY_COLUMNS.index("figure"), SUMMARY_COLUMNS.index("ratio")}
    lines = []
    for n, line in enumerate(table):
        cells = [
            cell.rjust(w) if (i in numeric and n) else cell.ljust(w) for i, (cell, w) in enumerate(zip(line, widths))
        ]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    met = sum(1 for entry in entries if entry["met"])
    lines.append(f"{met} of {len(entries)} targets met")
    return "\n".join(lines)
