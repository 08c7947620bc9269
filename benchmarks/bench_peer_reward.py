"""The TARS reward manager against what a verl user writes instead, on a REAL vLLM server, as ratios in one run.

    .venv/bin/python benchmarks/bench_peer_reward.py [--n 512] [--concurrency 16,64] [--repeats 3]
    .venv/bin/python benchmarks/bench_peer_reward.py --quick     # CI: a smoke run, ratios not meaningful

Guard (Llama Guard format, served by vLLM's CPU build from .venv-vllm): the peer is verl's ``naive`` reward manager with
the async ``compute_score`` of benchmarks/peer_reward.py (one ``/v1/chat/completions`` request per sample, a pooled
aiohttp session, the project's own verdict parsing); ours is the TARS manager with ``guard_chat``. Both are driven by
verl's own ``RewardLoopWorker.compute_score_batch`` over the same batch of responses (half refusals, half
compliances), against the same server, with the same number of requests in flight (``--concurrency``). The guard
(tars_verl/testing/verdict_guard.py) answers ``safe`` to refusals and ``unsafe`` to the rest, and every variant's
verdicts are checked against the peer's and against what the guard was trained to say, on both classes.

Variants (wall time of ours / the peer's, min and median over interleaved repeats):

- graded vs peer with the same log-probs (equal information). Target <= 0.8.
- binary (``logprobs: false``) vs peer binary (equal information). Target <= 0.8.
- graded vs peer binary (the peer's simplest form; ours keeps the graded verdict). Target <= 1.0.
- graded with reasoning safety at its default sampled fraction (``reward.tars.reasoning_safety_fraction``) vs peer
  binary (what the default costs), and with reasoning safety on every harmful response (the behaviour before the
  setting: twice the guard's requests).

Served reward model (vLLM ``/classify`` behind the address verl passes as ``reward_router_address``): the peer is
verl's own per-sample path (``RewardLoopWorker.compute_score_disrm``, one ``/classify`` request per sample); ours is
``served_reward_model`` with ``url: verl`` (one request per batch). Scores are checked to agree.

Each line also gives the HTTP requests sent and the server-side batch size (vLLM ``/metrics``: engine steps, mean
sequences per step = generated tokens / steps) of one run of each side. Ratios are printed last.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import sys
import time
import urllib.request

from tars_verl.reward.config import TarsConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

PEER_FILE = os.path.join(ROOT, "benchmarks", "peer_reward.py")


# -- data -------------------------------------------------------------------------------------------------------------
def qwen_tokenizer_dir() -> str:
    from tars_verl.testing.served_models import qwen_tokenizer_dir as find

    return find()


def guard_samples(n: int, seed: int = 0):
    """``n`` harmful-prompt responses with reasoning, drawn as the guard was trained (random filler, a class-deciding
    closing): even ones refuse, odd ones comply (the guard's two classes); the reasoning is of the other class."""
    from transformers import AutoTokenizer

    from tars_verl.testing.verdict_guard import conversation
    from tars_verl.testing.verl_batch import Sample

    tokenizer = AutoTokenizer.from_pretrained(qwen_tokenizer_dir())
    rng = random.Random(seed)
    out = []
    for i in range(n):
        prompt, text = conversation(i % 2 == 0, rng, tokenizer)
        _, reasoning = conversation(i % 2 == 1, rng, tokenizer)
        out.append(
            Sample(
                [{"role": "user", "content": prompt}],
                f"<think>\n{reasoning}\n</think>\n\n{text}",
                "harmful",
                extra_info={"question": prompt},
            )
        )
    return out


# -- server metrics ---------------------------------------------------------------------------------------------------
METRICS = {
    "http": r'^http_requests_total\{[^}]*handler="(/v1/chat/completions|/v1/completions|/classify)"[^}]*\} (\S+)',
    "engine_requests": r"^vllm:request_success_total\{[^}]*\} (\S+)",
    "steps": r"^vllm:iteration_tokens_total_count\{[^}]*\} (\S+)",
    "step_tokens": r"^vllm:iteration_tokens_total_sum\{[^}]*\} (\S+)",
    "generated": r"^vllm:generation_tokens_total\{[^}]*\} (\S+)",
    "prompt_tokens": r"^vllm:prompt_tokens_total\{[^}]*\} (\S+)",
    "cache_hits": r"^vllm:prefix_cache_hits_total\{[^}]*\} (\S+)",
    "cache_queries": r"^vllm:prefix_cache_queries_total\{[^}]*\} (\S+)",
}


def scrape(url: str) -> dict[str, float]:
    """Counters of vLLM's ``/metrics`` (summed over label sets)."""
    with urllib.request.urlopen(url + "/metrics", timeout=30) as resp:
        text = resp.read().decode()
    out = dict.fromkeys(METRICS, 0.0)
    for line in text.splitlines():
        for key, pattern in METRICS.items():
            m = re.match(pattern, line)
            if m:
                out[key] += float(m.groups()[-1])
    return out


def delta(before: dict, after: dict) -> dict:
    return {k: after[k] - before[k] for k in before}


def describe(d: dict) -> str:
    # Generation: sequences decoding per step (generated tokens / steps); pooling (/classify) generates nothing: the
    # requests per step.
    seqs = (d["generated"] or d["engine_requests"]) / d["steps"] if d["steps"] else float("nan")
    hit = d["cache_hits"] / d["cache_queries"] if d["cache_queries"] else float("nan")
    return (
        f"{d['http']:.0f} HTTP requests, {d['engine_requests']:.0f} engine requests, {d['steps']:.0f} engine steps, "
        f"{seqs:.1f} sequences/step, {d['generated']:.0f} generated tokens, prefix-cache hits {hit:.0%}"
    )


# -- workers ----------------------------------------------------------------------------------------------------------
def tars_guard_worker(policy: str, tiny_dir: str, url: str, concurrency: int, extra: list[str]):
    from bench_reward import make_worker

    return make_worker(
        policy,
        tiny_dir,
        [
            "tars_scorer@reward.tars.safety=guard_chat",
            f"reward.tars.safety.url={url}/v1",
            "reward.tars.safety.model=tiny-guard",
            f"reward.tars.safety.max_concurrency={concurrency}",
            *extra,
        ],
    )


def peer_guard_worker(policy: str, url: str, concurrency: int, logprobs: bool):
    from verl.experimental.reward_loop.reward_loop import RewardLoopWorker

    from tars_verl.config import compose

    cfg = compose(
        "tars_grpo",
        [
            "tars@reward.tars=tiny_cpu",
            "reward.num_workers=1",
            f"actor_rollout_ref.model.path={policy}",
            "reward.reward_manager.name=naive",
            f"reward.custom_reward_function.path={PEER_FILE}",
            "reward.custom_reward_function.name=compute_score",
            f"+reward.custom_reward_function.reward_kwargs.url={url}/v1",
            "+reward.custom_reward_function.reward_kwargs.model=tiny-guard",
            f"+reward.custom_reward_function.reward_kwargs.logprobs={logprobs}",
            f"+reward.custom_reward_function.reward_kwargs.concurrency={concurrency}",
        ],
    )
    return RewardLoopWorker(cfg)


def rm_workers(policy: str, tiny_dir: str, rm_path: str, router: str, concurrency: int):
    """(ours, peer) on the served reward model: the TARS manager's served_reward_model (url=verl) and verl's own
    per-sample /classify path; both get the server's address as verl's ``reward_router_address``."""
    from verl.experimental.reward_loop.reward_loop import RewardLoopWorker

    from tars_verl.config import compose

    rm = [
        "reward.reward_model.enable=True",
        f"reward.reward_model.model_path={rm_path}",
        "reward.reward_model.rollout.name=vllm",
    ]
    ours_cfg = compose(
        "tars_grpo",
        [
            "tars@reward.tars=tiny_cpu",
            "reward.num_workers=1",
            f"actor_rollout_ref.model.path={policy}",
            f"reward.tars.safety.model_path={tiny_dir}/classifier",
            "reward.tars.reasoning_safety=false",
            "tars_scorer@reward.tars.helpfulness=grm_verl",
            f"reward.tars.helpfulness.model={rm_path}",
            f"reward.tars.helpfulness.max_concurrency={concurrency}",
            "reward.custom_reward_function.path=pkg://tars_verl.verl_plugin",
            "reward.custom_reward_function.name=compute_score",
            *rm,
        ],
    )
    peer_cfg = compose(
        "tars_grpo",
        [
            "tars@reward.tars=tiny_cpu",
            "reward.num_workers=1",
            f"actor_rollout_ref.model.path={policy}",
            "reward.reward_manager.name=naive",  # verl then scores with compute_score_disrm: one /classify per sample
            *rm,
        ],
    )
    return RewardLoopWorker(ours_cfg, router), RewardLoopWorker(peer_cfg, router)


# -- one timed run ----------------------------------------------------------------------------------------------------
class Side:
    def __init__(self, name: str, worker, server_url: str):
        self.name, self.worker, self.server_url = name, worker, server_url
        self.times: list[float] = []
        self.metrics: dict | None = None
        self.outputs: list[dict] | None = None

    def run(self, batch) -> None:
        before = scrape(self.server_url)
        t0 = time.perf_counter()
        outputs = self.worker.loop.run_until_complete(self.worker.compute_score_batch(batch))
        self.times.append(time.perf_counter() - t0)
        self.metrics = delta(before, scrape(self.server_url))
        self.outputs = outputs


def ratio_line(label: str, ours: Side, peer: Side, target: float | None) -> str:
    ratios = [o / p for o, p in zip(ours.times, peer.times)]  # repeat r of both sides ran back to back
    goal = f"; target <= {target}" if target is not None else ""
    return (
        f"{label}: {min(ratios):.3f}x min / {statistics.median(ratios):.3f}x median{goal} "
        f"(ours {min(ours.times) * 1000:.0f} ms, peer {min(peer.times) * 1000:.0f} ms)"
    )


def guard_scores(side: Side) -> list[float]:
    if "safety" in side.outputs[0]["reward_extra_info"]:
        return [float(o["reward_extra_info"]["safety"]) for o in side.outputs]
    return [float(o["reward_score"]) for o in side.outputs]


def check_agreement(samples, sides: dict[str, Side], tol: float) -> str:
    """Every side's verdict (score >= 0.5 = safe) equals the guard's trained verdict on every sample, both classes
    present; graded sides agree with the graded peer within ``tol``, binary sides with the binary peer exactly."""
    from tars_verl.testing.verdict_guard import expected_verdict

    want = [expected_verdict(s.response.rpartition("</think>")[2].strip()) for s in samples]
    counts = {v: want.count(v) for v in ("safe", "unsafe")}
    assert min(counts.values()) > 0, counts
    for name, side in sides.items():
        got = ["safe" if x >= 0.5 else "unsafe" for x in guard_scores(side)]
        bad = [i for i, (g, w) in enumerate(zip(got, want)) if g != w]
        assert not bad, f"{name}: {len(bad)} verdicts differ from the guard's, e.g. sample {bad[0]}"
    for name, side in sides.items():
        ref = sides["peer graded"] if "graded" in name else sides["peer binary"]
        diffs = [abs(a - b) for a, b in zip(guard_scores(side), guard_scores(ref))]
        assert max(diffs) <= tol, f"{name}: scores differ from {ref.name}'s by up to {max(diffs):.2e}"
    return f"{counts['safe']} safe / {counts['unsafe']} unsafe, 0 disagreements"


def bench_guard(args, policy, tiny_dir, lm_url, concurrency) -> list[str]:
    from tars_verl.testing.verl_batch import make_reward_batch

    samples = guard_samples(args.n)
    sides = {
        "ours graded": Side("ours graded", tars_guard_worker(policy, tiny_dir, lm_url, concurrency, NO_RS), lm_url),
        "ours binary": Side(
            "ours binary",
            tars_guard_worker(policy, tiny_dir, lm_url, concurrency, [*NO_RS, "reward.tars.safety.logprobs=false"]),
            lm_url,
        ),
        "ours graded + reasoning safety": Side(
            "ours graded + reasoning safety",
            tars_guard_worker(policy, tiny_dir, lm_url, concurrency, RS_DEFAULT),
            lm_url,
        ),
        "ours graded + reasoning safety on all": Side(
            "ours graded + reasoning safety on all",
            tars_guard_worker(policy, tiny_dir, lm_url, concurrency, RS_ALL),
            lm_url,
        ),
        "peer graded": Side("peer graded", peer_guard_worker(policy, lm_url, concurrency, True), lm_url),
        "peer binary": Side("peer binary", peer_guard_worker(policy, lm_url, concurrency, False), lm_url),
    }
    try:
        batch = make_reward_batch(sides["peer binary"].worker.input_tokenizer, samples)
        warm = make_reward_batch(sides["peer binary"].worker.input_tokenizer, guard_samples(8, seed=1))
        for side in sides.values():
            side.run(warm)
            side.times.clear()
        for _ in range(args.repeats):  # interleaved: a change of machine load hits every side alike
            for side in sides.values():
                side.run(batch)
        agreement = check_agreement(samples, {k: v for k, v in sides.items() if "reasoning" not in k}, tol=1e-3)
        rs, rs_all = sides["ours graded + reasoning safety"], sides["ours graded + reasoning safety on all"]
        sampled = sum(o["reward_extra_info"].get("reasoning_safety") is not None for o in rs.outputs)
        assert sampled > 0, "reasoning safety was scored on no response: the metric would not be logged"
        lines = [f"guard, {args.n} responses at concurrency {concurrency} ({agreement}):"]
        tag = f"guard c={concurrency}"
        for side in sides.values():
            lines.append(f"  {side.name}: {describe(side.metrics)}")
        lines.append(
            f"  reasoning safety scored on {sampled} of {args.n} responses at the default fraction {RS_FRACTION}: "
            f"{rs.metrics['http']:.0f} guard requests, against {rs_all.metrics['http']:.0f} when scored on all (before)"
        )
        peer_g, peer_b = sides["peer graded"], sides["peer binary"]
        lines += [
            ratio_line(f"{tag}: graded / peer graded (equal information)", sides["ours graded"], peer_g, 0.8),
            ratio_line(f"{tag}: binary / peer binary (equal information)", sides["ours binary"], peer_b, 0.8),
            ratio_line(f"{tag}: graded / peer binary (peer's simplest form)", sides["ours graded"], peer_b, 1.0),
            ratio_line(f"{tag}: graded + reasoning safety (default) / peer binary", rs, peer_b, None),
            ratio_line(f"{tag}: graded + reasoning safety on all (before) / peer binary", rs_all, peer_b, None),
        ]
    finally:
        for side in sides.values():
            close_worker(side.worker)
    return lines


def bench_rm(args, policy, tiny_dir, rm_path, rm_url, concurrency) -> list[str]:
    from tars_verl.scorers.base import stable_sigmoid
    from tars_verl.testing.verl_batch import Sample, make_reward_batch

    router = rm_url.split("://", 1)[1]
    ours_w, peer_w = rm_workers(policy, tiny_dir, rm_path, router, concurrency)
    ours, peer = Side("ours served_reward_model", ours_w, rm_url), Side("verl per-sample /classify", peer_w, rm_url)
    # Answers without reasoning: the TARS manager scores the answer (text after </think>), verl's disrm the whole
    # response, so only a response without reasoning gives both the same text to score.
    samples = [
        Sample(
            [{"role": "user", "content": f"How do I bake bread number {i}?"}],
            s.response.rpartition("</think>")[2].strip(),
            "harmless",
        )
        for i, s in enumerate(guard_samples(args.n))
    ]
    batch = make_reward_batch(ours_w.input_tokenizer, samples)
    warm = make_reward_batch(ours_w.input_tokenizer, samples[:8])
    for side in (ours, peer):
        side.run(warm)
        side.times.clear()
    for _ in range(args.repeats):
        for side in (ours, peer):
            side.run(batch)
    mine = [float(o["reward_extra_info"]["helpfulness"]) for o in ours.outputs]
    theirs = [stable_sigmoid(float(o["reward_score"])) for o in peer.outputs]  # verl's disrm returns the logit
    worst = max(abs(a - b) for a, b in zip(mine, theirs))
    assert worst < 1e-4, f"served reward model: scores differ from verl's by up to {worst:.2e}"
    lines = [f"served reward model, {args.n} responses at concurrency {concurrency} (scores agree within {worst:.1e}):"]
    for side in (ours, peer):
        lines.append(f"  {side.name}: {describe(side.metrics)}")
    lines.append(ratio_line(f"RM c={concurrency}: served_reward_model / verl's per-sample /classify", ours, peer, 0.8))
    close_worker(ours_w)  # verl's own disrm path posts through aiohttp sessions of its own, opened and closed per call
    return lines


NO_RS = ["reward.tars.reasoning_safety=false"]
RS_FRACTION = TarsConfig().reasoning_safety_fraction  # the default a user gets
RS_DEFAULT = ["reward.tars.reasoning_safety=true", f"reward.tars.reasoning_safety_fraction={RS_FRACTION}"]
RS_ALL = ["reward.tars.reasoning_safety=true", "reward.tars.reasoning_safety_fraction=1.0"]


def close_worker(worker) -> None:
    """Close what a worker's reward manager opened (ours: its scorers; the peer: its module's session on this loop)."""
    manager = worker.reward_manager
    if hasattr(manager, "aclose"):
        worker.loop.run_until_complete(manager.aclose())
        return
    raw = manager.compute_score.args[0]  # verl's partial(_call_with_kwargs_async, the user's function, reward_kwargs)
    worker.loop.run_until_complete(raw.__globals__["close_sessions"]())


def default_models_dir() -> str:
    """``$TARS_CACHE_DIR/bench_peer_reward-<hash>`` (default ``~/.cache/tars_verl``): the guard takes 20-80 s to train
    here, so it is trained once; the hash of the files that build the models names the folder, so a change to them
    trains afresh."""
    import hashlib

    from tars_verl.downloads import cache_root
    from tars_verl.testing import served_models, tiny_models, verdict_guard

    h = hashlib.blake2b(digest_size=6)
    for module in (served_models, tiny_models, verdict_guard):
        with open(module.__file__, "rb") as f:
            h.update(f.read())
    return cache_root(f"bench_peer_reward-{h.hexdigest()}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=512, help="responses per batch")
    ap.add_argument("--concurrency", default="16,64", help="requests in flight, comma-separated values")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--models",
        default=default_models_dir(),
        help="a folder to build the tiny models in once and reuse (default: %(default)s, named by a hash of the code "
        "that trains them)",
    )
    ap.add_argument("--skip-rm", action="store_true", help="only the guard")
    ap.add_argument("--quick", action="store_true", help="CI: 32 responses, concurrency 16, one repeat")
    args = ap.parse_args()
    if args.quick:
        args.n, args.concurrency, args.repeats = 32, "16", 1
    levels = [int(c) for c in args.concurrency.split(",")]

    from tars_verl.testing.served_models import build_reward_model
    from tars_verl.testing.tiny_models import build_folder_once, ensure_tiny_models
    from tars_verl.testing.verdict_guard import ensure_verdict_guard
    from tars_verl.testing.vllm_server import VLLMServer, vllm_python

    if vllm_python() is None:
        raise SystemExit("no vLLM environment (.venv-vllm): run bash scripts/setup_vllm_venv.sh first")
    root = args.models
    t0 = time.time()
    guard = ensure_verdict_guard(os.path.join(root, "verdict_guard"), log=lambda m: None)
    rm_dir = build_folder_once(
        os.path.join(root, "rm"), lambda d: build_reward_model(os.path.join(d, "reward_model")), ".tars_rm_"
    )
    rm_path = os.path.join(rm_dir, "reward_model")
    tiny_dir = ensure_tiny_models(os.path.join(root, "tiny"))  # the tiny_cpu preset's other scorer
    print(f"models ready in {time.time() - t0:.0f} s", flush=True)
    load, ratios = os.getloadavg()[0], []
    servers = [VLLMServer(guard, ["tiny-guard"])]
    if not args.skip_rm:
        servers.append(VLLMServer(rm_path, [rm_path]))  # verl's disrm path asks for model=model_path
    try:
        for srv in servers:
            srv.launch()
        for srv in servers:
            srv.wait_ready()
        print(f"vLLM servers up in {max(s.startup_s for s in servers):.0f} s", flush=True)

        def report(lines: list[str]) -> None:  # the details as each part ends, the ratios all together last
            ratios.extend(ln for ln in lines if re.search(r"\d\.\d+x", ln))
            print("\n".join(ln for ln in lines if ln not in ratios), flush=True)

        for c in levels:
            report(bench_guard(args, guard, tiny_dir, servers[0].url, c))
        if not args.skip_rm:
            for c in levels:
                report(bench_rm(args, guard, tiny_dir, rm_path, servers[1].url, c))
    finally:
        for srv in servers:
            srv.__exit__(None, None, None)
        # Also when a later part failed: the ratios measured so far are not lost.
        print(f"load average at the start {load:.1f}, at the end {os.getloadavg()[0]:.1f} (2 cores shared)")
        print("\n".join(ratios))


if __name__ == "__main__":
    main()
