"""What the ``verl.plugins`` entry point costs every process that imports verl.

    python benchmarks/bench_import.py [--repeats 5]
    python benchmarks/bench_import.py --quick     # one repeat: a smoke run (CI)

Runs ``python -c "import verl"`` in fresh interpreters, alternating VERL_USE_EXTERNAL_PLUGINS=none
(verl alone) and =auto (with the ``tars`` plug-in), and prints the median wall time and module count
of each and their ratios. Target: ratio <= 1.1 (tests/test_verl_plugin_on_cpu.py checks the module
count; wall time depends on the machine and is only reported here).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

CODE = "import sys, verl; print(len(sys.modules))"


def one(policy: str) -> tuple[float, int]:
    env = {**os.environ, "VERL_USE_EXTERNAL_PLUGINS": policy}
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", CODE], env=env, capture_output=True, text=True, check=True)
    return time.perf_counter() - start, int(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="one repeat")
    args = ap.parse_args()
    if args.quick:
        args.repeats = 1
    one("none")  # warm the file cache
    runs: dict[str, list[tuple[float, int]]] = {"none": [], "auto": []}
    for _ in range(args.repeats):
        for policy in runs:
            runs[policy].append(one(policy))
    med = {p: (statistics.median(t for t, _ in r), statistics.median(n for _, n in r)) for p, r in runs.items()}
    for policy, (t, n) in med.items():
        print(
            f"VERL_USE_EXTERNAL_PLUGINS={policy:<5} import verl: {t:.2f} s, {n:.0f} modules (median of {args.repeats})"
        )
    print(
        f"ratio with/without plug-in: time {med['auto'][0] / med['none'][0]:.3f}x, "
        f"modules {med['auto'][1] / med['none'][1]:.4f}x (target <= 1.1)"
    )


if __name__ == "__main__":
    main()
