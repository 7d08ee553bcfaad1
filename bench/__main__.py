"""Run rtcbot's benchmarks and print one table: ``python -m bench [--quick] [--json FILE] [--only NAME]``.

Every module ``bench/bench_*.py`` is imported and its ``run(quick)`` called; a module that fails is reported
and the others still run (the exit status is then 1); one whose optional library is missing here
(``MissingDependencyError``) is reported as skipped. ``--only process`` runs ``bench/bench_process.py``.
``--quick`` prints a one-screen summary of the targets (met / NOT MET); ``--table`` adds the full table (a
full run prints both). ``--json FILE`` writes the rows with a description of the machine.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import pkgutil
import platform
import sys
import time
import traceback
from typing import Any, Dict, List, Optional, Sequence

from rtcbot.errors import MissingDependencyError

from ._table import check_row, format_summary, format_table, targets


def discover() -> List[str]:
    """The names of the benchmark modules (``bench_process`` ...), sorted."""
    here = os.path.dirname(os.path.abspath(__file__))
    return sorted(info.name for info in pkgutil.iter_modules([here]) if info.name.startswith("bench_"))


def _cpu_model() -> Optional[str]:
    """The CPU's model name from /proc/cpuinfo ("model name" on x86, "Model" on a Raspberry Pi)."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            fields = dict(
                (key.strip().lower(), value.strip())
                for key, _, value in (line.partition(":") for line in cpuinfo)
                if value.strip()
            )
    except OSError:
        return platform.processor() or None
    return fields.get("model name") or fields.get("model") or fields.get("hardware") or platform.processor() or None


def _version(module: str) -> Optional[str]:
    try:
        return str(importlib.import_module(module).__version__)
    except Exception:  # not installed, or a broken install: the figure is still worth keeping
        return None


def machine() -> Dict[str, Any]:
    """What the figures were measured on: CPU model and cores, memory, Python and library versions."""
    info: Dict[str, Any] = {
        "cpu_model": _cpu_model(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "numpy": _version("numpy"),
        "opencv": _version("cv2"),
        "psutil": _version("psutil"),
    }
    try:
        import psutil

        info["physical_cores"] = psutil.cpu_count(logical=False)
        info["memory_gb"] = round(psutil.virtual_memory().total / 1e9, 1)
        frequency = psutil.cpu_freq()
        if frequency is not None and frequency.max:
            info["cpu_max_mhz"] = frequency.max
    except Exception:  # psutil missing, or no frequency on this platform
        pass
    try:
        info["load_average"] = os.getloadavg()
    except OSError:
        pass
    return info


def _machine_line(info: Dict[str, Any]) -> str:
    load = info.get("load_average")
    return (
        f"{info.get('cpu_model')}, {info.get('cpus')} cores; Python {info.get('python')}, numpy "
        f"{info.get('numpy')}, OpenCV {info.get('opencv')}"
        + ("" if not load else f"; load average {load[0]:.2f} at the start")
    )


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs; prints the summary of targets")
    parser.add_argument("--table", action="store_true", help="print the full table with --quick too")
    parser.add_argument("--json", metavar="FILE", help="also write the results (and the machine) to FILE")
    parser.add_argument(
        "--only", metavar="NAME", action="append", help="run only bench_NAME (repeat for several)"
    )
    args = parser.parse_args(argv)

    names = discover()
    if args.only:
        wanted = {name if name.startswith("bench_") else f"bench_{name}" for name in args.only}
        unknown = wanted - set(names)
        if unknown:
            parser.error(f"no benchmark {', '.join(sorted(unknown))}; there are: {', '.join(names)}")
        names = [name for name in names if name in wanted]

    described = machine()  # before the runs: the load average is the other users' load, not ours
    results: List[Dict[str, Any]] = []
    failures: Dict[str, str] = {}
    skipped: Dict[str, str] = {}
    timings: Dict[str, float] = {}
    for name in names:
        print(f"running {name}{' (quick)' if args.quick else ''} ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        try:
            module = importlib.import_module(f"bench.{name}")
            rows = module.run(args.quick)
            problems = [f"row {i}: {p}" for i, r in enumerate(rows) for p in check_row(r)]
            if problems:
                raise ValueError("; ".join(problems))
            results.extend(rows)
        except MissingDependencyError as e:  # an optional library is not installed here: not a failure
            skipped[name] = str(e)
            print(f"{name} skipped: {e}", file=sys.stderr, flush=True)
        except Exception:
            failures[name] = traceback.format_exc()
            print(f"{name} failed:\n{failures[name]}", file=sys.stderr, flush=True)
        timings[name] = time.perf_counter() - started
        print(f"{name} took {timings[name]:.1f} s", file=sys.stderr, flush=True)

    if args.table or not args.quick:
        print(format_table(results))
        print()
    print(format_summary(results))
    print(_machine_line(described))
    for name in failures:
        print(f"{name} FAILED (see above)")
    for name, reason in skipped.items():
        print(f"{name} skipped: {reason.split('. ')[0]}")
    if args.json:
        report = {
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "quick": args.quick,
            "machine": described,
            "targets": targets(results),
            "seconds": timings,
            "failures": failures,
            "skipped": skipped,
            "results": results,
        }
        directory = os.path.dirname(os.path.abspath(args.json))
        os.makedirs(directory, exist_ok=True)
        with open(args.json, "w") as out:
            json.dump(report, out, indent=2)
        print(f"wrote {args.json}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
