"""rtcbot's benchmarks: each ``bench/bench_*.py`` measures a part of rtcbot against a baseline taken in the
same run (ratios matter, absolute figures depend on the machine). Run them with::

    python -m bench                  # all of them; add --quick for a short run, --json FILE to keep results
    python -m bench --only process   # one module (bench/bench_process.py)

A module exposes ``run(quick: bool) -> list[dict]``, one dict per measurement, with the keys of
:data:`bench._table.ROW_KEYS` (``met`` is optional: whether ``value`` meets ``target``).
"""
