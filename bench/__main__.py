"""Run rtcbot's benchmarks and print one table: ``python -m bench [--quick] [--json FILE] [--only NAME]``.

Every module ``bench/bench_*.py`` is imported and its ``run(quick)`` called; a module that fails is reported
and the others still run (the exit status is then 1). ``--only process`` runs ``bench/bench_process.py``.
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

from ._table import check_row, format_table


def discover() -> List[str]:
    """The names of the benchmark modules (``bench_process`` ...), sorted."""
    here = os.path.dirname(os.path.abspath(__file__))
    return sorted(info.name for info in pkgutil.iter_modules([here]) if info.name.startswith("bench_"))


def _machine() -> Dict[str, Any]:
    info: Dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }
    try:
        info["load_average"] = os.getloadavg()
    except OSError:
        pass
    try:
        import numpy

        info["numpy"] = numpy.__version__
    except ImportError:
        pass
    return info


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs (about 20 s in all)")
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

    results: List[Dict[str, Any]] = []
    failures: Dict[str, str] = {}
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
        except Exception:
            failures[name] = traceback.format_exc()
            print(f"{name} failed:\n{failures[name]}", file=sys.stderr, flush=True)
        timings[name] = time.perf_counter() - started
        print(f"{name} took {timings[name]:.1f} s", file=sys.stderr, flush=True)

    print(format_table(results))
    if args.json:
        report = {
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "quick": args.quick,
            "machine": _machine(),
            "seconds": timings,
            "failures": failures,
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
