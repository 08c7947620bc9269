"""Every benchmark in benchmarks/ runs as the README writes it (`.venv/bin/python benchmarks/<name>.py`), in its
``--quick`` mode, with no TARS_* variable set, prints its ratios and leaves no client session open: a broken benchmark
is a red CI."""

import glob
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARKS = sorted(glob.glob(os.path.join(ROOT, "benchmarks", "bench_*.py")))


def test_benchmarks_are_found():
    assert len(BENCHMARKS) >= 2, BENCHMARKS


@pytest.mark.slow
@pytest.mark.parametrize("path", BENCHMARKS, ids=os.path.basename)
def test_benchmark_quick_mode_runs_and_prints_ratios(path):
    # As on a fresh clone: nothing from the test session (conftest sets TARS_TINY_DIR) or the user's shell.
    env = {k: v for k, v in os.environ.items() if not k.startswith("TARS_")}
    out = subprocess.run(
        [sys.executable, path, "--quick"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
    assert re.search(r"\d\.\d+x", out.stdout), out.stdout[-2000:]  # a ratio against the run's own baseline
    # Every client session the benchmark (and the project code it drives) opened was closed.
    assert "Unclosed client session" not in out.stderr and "Unclosed connector" not in out.stderr, out.stderr[-4000:]
