"""Timing shared by the benchmarks (a plain module next to them: each ``bench_*.py`` runs as a script, so
this folder is first on ``sys.path``; the ``bench_*`` glob of tests/test_benchmarks_on_cpu.py skips it).

>>> best_of(3, lambda: None) >= 0.0
True
"""

from __future__ import annotations

import time
from collections.abc import Callable


def best_of(repeats: int, fn: Callable[[], object]) -> float:
    """The shortest wall time, in seconds, of ``repeats`` calls of ``fn`` (the least disturbed run)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)
