"""Reward-manager throughput, as ratios against baselines measured in the same run.

    .venv/bin/python benchmarks/bench_reward.py [--n 512] [--repeats 3]
    .venv/bin/python benchmarks/bench_reward.py --quick    # seconds: a smoke run (CI), ratios not meaningful

(a) 512 samples through verl's RewardLoopWorker + TarsRewardManager with the in-process classifier,
    divided by ONE direct batched forward pass (tokenise + forward) of the same model on the same
    answers. Target: under 1.15 (overhead < 15%).
(b) the same manager with max_batch_size=1 (one forward per sample) divided by the batched manager.
    Target: at least 4x.
(c) guard_chat against a local server with a fixed 50 ms latency: wall time divided by the ideal
    ceil(n / max_concurrency) * 50 ms. Target: under 1.3.
(d) the manager's tokenizer work (decode, token counts) on the event loop, as before 0.2.0, divided by the same
    work in verl's executor (now), for (a)'s classifier and (c)'s guard: the two variants alternate on the same
    manager (its class swapped), so both see the same load. Above 1: moving it off the loop pays.
Best of ``--repeats`` runs each; the model is a random Qwen2 classifier (hidden 256, 4 layers) so that
the forward pass, not Python, dominates as it does with real classifiers. Everything it needs is built in a
temporary folder (no environment variable, no download).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import tempfile
import time

import torch
from timing import best_of

from tars_verl.reward.manager import TarsRewardManager
from tars_verl.scorers import ScoreItem
from tars_verl.testing.fake_servers import ScorerServerProcess
from tars_verl.testing.tiny_models import build_tokenizer, ensure_tiny_models
from tars_verl.testing.verl_batch import Sample, make_reward_batch

WORDS = "the model should refuse harmful requests but help with harmless ones and explain why".split()


def build_bench_classifier(root: str, hidden: int = 256, layers: int = 4) -> str:
    from transformers import Qwen2Config, Qwen2ForSequenceClassification

    tok = build_tokenizer(os.path.join(root, "tokenizer"))
    cfg = Qwen2Config(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=3 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        num_labels=2,
        id2label={0: "UNSAFE", 1: "SAFE"},
        label2id={"UNSAFE": 0, "SAFE": 1},
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
    )
    torch.manual_seed(0)
    path = os.path.join(root, "bench_classifier")
    Qwen2ForSequenceClassification(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def samples(n: int) -> list[Sample]:
    out = []
    for i in range(n):
        answer = " ".join(WORDS[(i + j) % len(WORDS)] for j in range(40 + (i * 37) % 80))
        out.append(
            Sample(
                [{"role": "user", "content": f"request number {i}"}],
                f"<think>\nthinking about request {i}\n</think>\n\n{answer}",
                "harmful",
            )
        )
    return out


def classifier_overrides(model_path: str) -> list[str]:
    return [
        "tars_scorer@reward.tars.safety=hf_classifier",
        f"reward.tars.safety.model_path={model_path}",
        "reward.tars.safety.safe_label=SAFE",
        "reward.tars.safety.device=cpu",
        "reward.tars.safety.max_length=512",
    ]


def make_worker(model_path: str, tiny_dir: str, overrides: list[str]):
    """verl's RewardLoopWorker with the tars manager; the helpfulness side is the tiny RM built under ``tiny_dir``
    (the samples are all harmful, but the manager builds both scorers at start-up)."""
    from tars_verl.demo import build_worker

    return build_worker(
        "tiny_cpu",
        [
            f"actor_rollout_ref.model.path={model_path}",
            "reward.tars.reasoning_safety=false",
            f"reward.tars.helpfulness.model_path={tiny_dir}/reward_model",
            *overrides,
        ],
    )[0]


def close_worker(worker) -> None:
    """Close what the worker's reward manager opened (its scorers' sessions): no "Unclosed client session" at exit."""
    worker.loop.run_until_complete(worker.reward_manager.aclose())


class TokenizerOnLoop(TarsRewardManager):
    """The manager before 0.2.0, for (d) only: the same steps, with the tokenizer work on the event loop."""

    async def run_single(self, data):
        self.calls += 1
        item = data[-1:][0]
        sample = self._read_sample(item)  # the only difference: no run_in_executor
        jobs = self._submit_jobs(sample)
        results = dict(zip(jobs, await asyncio.gather(*jobs.values())))
        total = self._combine(sample, results)
        return {"reward_score": total, "reward_extra_info": self._log_row(sample, results, total)}


def on_loop_vs_executor(worker, batch, repeats: int) -> tuple[float, float]:
    """Best wall times of (tokenizer on the loop, in the executor), the two variants alternating."""
    manager = worker.reward_manager
    times: dict[type, list[float]] = {TokenizerOnLoop: [], TarsRewardManager: []}
    for _ in range(repeats):
        for cls in times:
            manager.__class__ = cls
            t0 = time.perf_counter()
            worker.loop.run_until_complete(worker.compute_score_batch(batch))
            times[cls].append(time.perf_counter() - t0)
    manager.__class__ = TarsRewardManager
    return min(times[TokenizerOnLoop]), min(times[TarsRewardManager])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=256, help="classifier width")
    ap.add_argument("--layers", type=int, default=4, help="classifier depth")
    ap.add_argument("--http-n", type=int, default=256)
    ap.add_argument("--http-concurrency", type=int, default=32)
    ap.add_argument("--quick", action="store_true", help="a few seconds: 32 samples, small model, one repeat")
    args = ap.parse_args()
    if args.quick:
        args.n, args.repeats, args.hidden, args.layers, args.http_n, args.batch_size = 32, 1, 64, 2, 32, 16
    args.http_n = min(args.http_n, args.n)
    torch.set_num_threads(max(1, os.cpu_count() or 1))

    with tempfile.TemporaryDirectory() as root:
        model_path = build_bench_classifier(root, args.hidden, args.layers)
        tiny_dir = ensure_tiny_models(os.path.join(root, "tiny"))
        data = samples(args.n)
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        # Baseline: one direct batched forward over the same answers.
        tok = AutoTokenizer.from_pretrained(model_path)
        model = AutoModelForSequenceClassification.from_pretrained(model_path).eval()
        answers = [s.response.split("</think>\n\n")[-1] for s in data]

        def direct():
            enc = tok(answers, padding=True, truncation=True, max_length=512, return_tensors="pt")
            with torch.inference_mode():
                model(**enc).logits.float()

        direct()  # warm-up
        t_direct = best_of(args.repeats, direct)

        batched = make_worker(
            model_path,
            tiny_dir,
            [
                *classifier_overrides(model_path),
                f"reward.tars.safety.max_batch_size={args.batch_size}",
                "reward.tars.safety.max_wait_ms=5",
            ],
        )
        batch = make_reward_batch(batched.input_tokenizer, data)

        def through(worker):
            return lambda: worker.loop.run_until_complete(worker.compute_score_batch(batch))

        through(batched)()
        t_manager = best_of(args.repeats, through(batched))
        per_sample = make_worker(
            model_path,
            tiny_dir,
            [
                *classifier_overrides(model_path),
                "reward.tars.safety.max_batch_size=1",
                "reward.tars.safety.max_wait_ms=0",
            ],
        )
        through(per_sample)()
        t_single = best_of(max(1, args.repeats - 1), through(per_sample))

        print(
            f"(a) manager / direct batched forward, {args.n} samples: {t_manager / t_direct:.3f}x "
            f"(target < 1.15; direct {t_direct * 1000:.0f} ms, manager {t_manager * 1000:.0f} ms)"
        )
        print(
            f"(b) per-sample scorer calls / batched manager: {t_single / t_manager:.2f}x speed-up "
            f"(target >= 4; per-sample {t_single * 1000:.0f} ms)"
        )

        d_classifier = on_loop_vs_executor(batched, batch, args.repeats)
        close_worker(batched)
        close_worker(per_sample)

        with ScorerServerProcess(latency_s=0.05, logprobs=False) as url:
            guard = make_worker(
                model_path,
                tiny_dir,
                [
                    "tars_scorer@reward.tars.safety=guard_chat",
                    f"reward.tars.safety.url={url}/v1",
                    f"reward.tars.safety.max_concurrency={args.http_concurrency}",
                    "reward.tars.safety.max_batch_size=64",
                ],
            )
            hbatch = make_reward_batch(guard.input_tokenizer, data[: args.http_n])
            run = lambda: guard.loop.run_until_complete(guard.compute_score_batch(hbatch))  # noqa: E731
            run()
            t_http = best_of(args.repeats, run)
            # The back end alone: one batch of items straight into the scorer.
            scorer = guard.reward_manager.scorers["safety"]
            items = [
                ScoreItem(s.messages[-1]["content"], s.response, s.messages, "harmful") for s in data[: args.http_n]
            ]
            direct_run = lambda: guard.loop.run_until_complete(scorer.score(items))  # noqa: E731
            direct_run()
            t_backend = best_of(args.repeats, direct_run)
            d_guard = on_loop_vs_executor(guard, hbatch, args.repeats)
            close_worker(guard)
        ideal = math.ceil(args.http_n / args.http_concurrency) * 0.05
        print(
            f"(c) guard_chat over HTTP, {args.http_n} items at concurrency {args.http_concurrency}, 50 ms latency, "
            f"ideal {ideal * 1000:.0f} ms: back end {t_backend / ideal:.3f}x the ideal (target < 1.3; "
            f"{t_backend * 1000:.0f} ms); through verl's reward loop + manager {t_http / ideal:.3f}x "
            f"({t_http * 1000:.0f} ms)"
        )
        for name, n, (on_loop, executor) in (
            ("classifier", args.n, d_classifier),
            ("guard_chat", args.http_n, d_guard),
        ):
            print(
                f"(d) {name}, {n} samples: tokenizer on the event loop (before) / in the executor (now): "
                f"{on_loop / executor:.3f}x ({on_loop * 1000:.0f} ms vs {executor * 1000:.0f} ms)"
            )


if __name__ == "__main__":
    main()
