"""Rainbow Teaming iterations per second against a REAL vLLM server: ours (concurrent) vs a sequential loop.

    .venv/bin/python benchmarks/bench_rainbow.py [--quick] [--iterations 6] [--concurrency 8] [--repeats 2]

Both sides run :func:`tars_verl.data.rainbow.run_rainbow` on the same archive, seed and server, so they send the same
requests and get the same replies (greedy decoding; the prompts of the archives they write are compared): ours with
``max_concurrency`` requests in flight per endpoint, the baseline as a plain sequential loop over the same calls (the
search module's ``asyncio.gather`` replaced by one that awaits each call before starting the next, and one request
in flight per endpoint). The model is the tiny scripted responder of
``tars_verl/testing/rainbow_responder.py`` playing target, mutator, judge and guard on one server. The archive starts
full (``--init-archive``, 2 x 4 cells) and no candidate ever wins, so every iteration does the whole pipeline: 8
slots x (2 mutator calls, 1 target call, 4 judge calls) = 56 requests. Best of ``--repeats``, the two sides interleaved.
Target: ours at least 3x the sequential loop at concurrency 8. ``--quick`` (CI): 1 iteration, 1 repeat (it shows
that the benchmark runs; the figure is noisy).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# Every cell full, every candidate tying its incumbent (both replies SURE, or both SORRY): nothing is replaced.
INIT = [
    ["please tell me everything", "tell me a fact", "please share the details", "tell me the time"],
    ["please give me the list", "describe the weather", "please walk me through it", "name a colour"],
]


def config(url: str, out: str, init: str, iterations: int, concurrency: int):
    from tars_verl.data.rainbow import ModelEndpoint, RainbowConfig
    from tars_verl.testing.rainbow_responder import CATEGORIES, STYLES

    def ep(model: str) -> ModelEndpoint:
        return ModelEndpoint(url, model, temperature=0.0, max_tokens=32)

    return RainbowConfig(
        out=out,
        target=ep("tiny-target"),
        mutator=ep("tiny-mutator"),
        judge=ep("tiny-judge"),
        fitness={"backend": "guard_chat", "url": url, "model": "tiny-guard", "max_tokens": 8},
        risk_categories=CATEGORIES,
        attack_styles=STYLES,
        init_archive=init,
        iterations=iterations,
        batch_size=8,
        checkpoint_every=iterations,
        max_concurrency=concurrency,
        progress_bar=False,
    )


class SequentialAsyncio:
    """``asyncio`` with a ``gather`` that awaits its awaitables one after the other (the sequential baseline)."""

    def __getattr__(self, name):
        return getattr(asyncio, name)

    @staticmethod
    async def gather(*aws):
        return [await a for a in aws]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--iterations", type=int, default=6)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--url", help="reuse a server already serving the responder (its base URL, no /v1)")
    args = ap.parse_args()
    iterations, repeats = (1, 1) if args.quick else (args.iterations, args.repeats)

    from tars_verl.data.rainbow import run_rainbow
    from tars_verl.data.rainbow import search as search_module
    from tars_verl.testing.rainbow_responder import SERVED_NAMES, ensure_rainbow_responder
    from tars_verl.testing.vllm_server import VLLMServer

    with tempfile.TemporaryDirectory() as tmp:
        init = os.path.join(tmp, "init.json")
        with open(init, "w") as f:
            json.dump([[{"prompt": p, "score": 0.0} for p in row] for row in INIT], f)

        def measure(url: str) -> tuple[float, float]:
            best = {"ours": 0.0, "sequential": 0.0}
            archives = {}
            for r in range(repeats):
                for side, conc in (("ours", args.concurrency), ("sequential", 1)):
                    out = os.path.join(tmp, f"{side}{r}")
                    search_module.asyncio = SequentialAsyncio() if side == "sequential" else asyncio
                    try:
                        summary = run_rainbow(config(url + "/v1", out, init, iterations, conc))
                    finally:
                        search_module.asyncio = asyncio
                    best[side] = max(best[side], summary.iterations_per_s)
                    with open(summary.archive_path) as f:  # prompts: the fitness floats may differ in the last bits
                        archives[side] = [[c.get("prompt") for c in row] for row in json.load(f)]
                    shutil.rmtree(out)
            assert archives["ours"] == archives["sequential"], "the two sides must do the same work"
            return best["ours"], best["sequential"]

        if args.url:
            ours, seq = measure(args.url)
        else:
            model = ensure_rainbow_responder(log=lambda m: None)
            with VLLMServer(model, SERVED_NAMES) as srv:
                ours, seq = measure(srv.url)
    print(f"iterations/s, 8 slots x 7 requests each, {iterations} iterations, best of {repeats}:")
    print(f"  ours (max_concurrency={args.concurrency}): {ours:.3f}")
    print(f"  sequential loop (max_concurrency=1):  {seq:.3f}")
    print(f"speed-up, ours / sequential: {ours / seq:.2f}x (target >= 3x)")


if __name__ == "__main__":
    main()
