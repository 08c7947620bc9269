"""Time building a 2000-prompt TARS mix from 100k-row local sources (with and without the token filter).

    .venv/bin/python benchmarks/bench_rl_mix.py [--rows 100000]
    .venv/bin/python benchmarks/bench_rl_mix.py --quick    # 2000-row sources: a smoke run (CI)

Prints wall times; the token-filter run is also given as a ratio to the run without it.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from tars_verl.data.rl_mix import MixConfig, write_mixes
from tars_verl.testing.source_files import write_rl_sources
from tars_verl.testing.tiny_models import build_tokenizer


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--quick", action="store_true", help="2000-row sources instead of --rows")
    args = ap.parse_args()
    if args.quick:
        args.rows = 2000
    with tempfile.TemporaryDirectory() as root:
        t0 = time.perf_counter()
        paths = write_rl_sources(os.path.join(root, "src"), n=args.rows)
        tok_dir = os.path.join(root, "tok")
        build_tokenizer(tok_dir)
        print(f"wrote 5 sources x {args.rows} rows in {time.perf_counter() - t0:.1f} s")
        timings = {}
        for name, extra in [
            ("chars+dedup+leakage", {}),
            ("+ token filter", {"tokenizer": tok_dir, "max_prompt_tokens": 512}),
        ]:
            cfg = MixConfig(paths=paths, **extra)
            t0 = time.perf_counter()
            write_mixes(cfg, os.path.join(root, name.replace(" ", "_").replace("+", "p")))
            timings[name] = time.perf_counter() - t0
        for name, t in timings.items():
            print(f"2000-prompt mix (+100 val) from {args.rows}-row sources, {name}: {t:.1f} s")
        print(f"token filter cost: {timings['+ token filter'] / timings['chars+dedup+leakage']:.2f}x")


if __name__ == "__main__":
    main()
