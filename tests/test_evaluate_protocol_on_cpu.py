"""Evaluation protocol: stale caches, interval edges, pre-fill default, sampling settings, judges at start-up,
HarmBench judging and pairing, Sorry-Bench releases, per-sample seeds, the vLLM adapter, the OpenAI back end
and lm-eval capability tasks."""

import json
import os
import shutil
import sys
import types

import pandas as pd
import pytest
from test_evaluate_on_cpu import write_classifier_prompts

import tars_verl.eval.generate as generate_mod
from tars_verl.data.eval_sets import build_eval_sets
from tars_verl.eval.cli import build_parser, main
from tars_verl.eval.generate import GenConfig, StaleCacheError, generate_for_model, request_seed
from tars_verl.eval.harmbench import HarmBenchClassifier, HarmBenchClassifierConfig, load_classifier_prompts
from tars_verl.eval.metrics import wilson
from tars_verl.eval.prompts import EvalPrompt, collect, load_attack_file, load_behaviors
from tars_verl.eval.report import write_report
from tars_verl.scorers import ScoreItem, parse_scorer_config
from tars_verl.scorers.base import ScorerConfigError


def prompts(n=3):
    return [
        EvalPrompt(
            "xstest_safe",
            f"xstest_safe-{i}",
            [{"role": "user", "content": f"question {i}"}],
            "overrefusal",
            behavior=f"question {i}",
        )
        for i in range(n)
    ]


# --- 2. intervals and plots at 0% and 100% ---------------------------------------------------------------
def test_wilson_is_exact_at_the_edges_and_the_report_plots_a_perfect_model(tmp_path):
    p, lo, hi = wilson(250, 250)
    assert p == 1.0 and hi == 1.0 and 0.98 < lo < 1.0
    p, lo, hi = wilson(0, 250)
    assert p == 0.0 and lo == 0.0 and 0.0 < hi < 0.02
    for k in (0, 1, 3, 249, 250):
        p, lo, hi = wilson(k, 250)
        assert 0.0 <= lo <= p <= hi <= 1.0
    c, clo, chi = wilson(250, 250)  # XSTest: every safe prompt answered
    d, dlo, dhi = wilson(0, 40)  # and no attack defended
    trade = pd.DataFrame(
        [
            {
                "model": "perfect",
                "compliance": c,
                "compliance_lo": clo,
                "compliance_hi": chi,
                "dsr": d,
                "dsr_lo": dlo,
                "dsr_hi": dhi,
            }
        ]
    )
    empty = pd.DataFrame()
    files = write_report(
        str(tmp_path),
        {"safety": empty, "safety_avg": empty, "compliance": empty, "lengths": empty, "tradeoff": trade},
        {},
        {"models": ["perfect"], "safety_judge": "k", "refusal_judge": "k", "generation": {}},
    )
    assert os.path.getsize(files["tradeoff_plot"]) > 5000
    assert json.loads(open(files["results"]).read())["tradeoff"][0]["compliance_hi"] == 1.0


# --- 3. <think> pre-fill off by default ----------------------------------------------------------------------
def test_prefill_is_off_by_default_with_an_option_to_turn_it_on():
    base = ["--model", "m=x", "--out", "o"]
    assert build_parser().parse_args(base).prefill_think is False
    assert build_parser().parse_args([*base, "--prefill-think"]).prefill_think is True
    assert build_parser().parse_args([*base, "--no-prefill-think"]).prefill_think is False
    assert GenConfig().prefill_think is False


# --- 1. a cache that cannot go stale ---------------------------------------------------------------------------
def test_cache_refuses_other_settings_or_weights_and_regenerates_changed_prompts(tiny_dir, tmp_path, monkeypatch):
    model = tmp_path / "model"
    shutil.copytree(f"{tiny_dir}/policy", model)
    cache = str(tmp_path / "gen")
    cfg = GenConfig(backend="hf", max_new_tokens=3, temperature=1.0)
    first = generate_for_model("m", str(model), prompts(), cfg, cache)
    assert len(first) == 3
    calls = []
    real = generate_mod.make_generator

    def counting(path, c):
        g = real(path, c)
        orig = g.generate
        g.generate = lambda texts, seeds: calls.append(list(texts)) or orig(texts, seeds)
        return g

    monkeypatch.setattr(generate_mod, "make_generator", counting)
    assert generate_for_model("m", str(model), prompts(), cfg, cache) == first and calls == []  # same: reused

    with pytest.raises(StaleCacheError, match="temperature"):
        generate_for_model(
            "m", str(model), prompts(), GenConfig(backend="hf", max_new_tokens=3, temperature=0.7), cache
        )
    with pytest.raises(StaleCacheError, match="max_new_tokens"):
        generate_for_model(
            "m", str(model), prompts(), GenConfig(backend="hf", max_new_tokens=4, temperature=1.0), cache
        )
    # A new checkpoint saved to the same folder (same name, other weights file) is refused too.
    weights = next(model.glob("*.safetensors"))
    os.utime(weights, ns=(os.stat(weights).st_atime_ns, os.stat(weights).st_mtime_ns + 10**9))
    with pytest.raises(StaleCacheError, match="model weights"):
        generate_for_model("m", str(model), prompts(), cfg, cache)
    again = generate_for_model("m", str(model), prompts(), cfg, cache, regenerate=True)
    assert len(calls) == 1 and len(again) == 3 and list(tmp_path.glob("gen/m.jsonl.stale-*"))  # old file kept aside

    # A rebuilt eval set: only the prompt whose text changed is generated again.
    calls.clear()
    changed = prompts()
    changed[1].messages = [{"role": "user", "content": "a different question"}]
    out = generate_for_model("m", str(model), changed, cfg, cache)
    assert len(calls) == 1 and len(calls[0]) == 1 and "a different question" in calls[0][0]
    assert out[("xstest_safe-1", 0)]["prompt_sha"] != again[("xstest_safe-1", 0)]["prompt_sha"]


def test_a_hub_id_is_identified_by_its_commit_or_refused(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(ValueError, match="no-such-org/no-such-model.*commit cannot be resolved"):
        generate_mod.model_fingerprint("no-such-org/no-such-model", "hf")
    assert generate_mod.model_fingerprint("served", "openai") == {"kind": "endpoint", "model": "served"}


# --- 4. both back ends sample from the recorded settings ------------------------------------------------------
def test_hf_backend_ignores_the_models_generation_config(tiny_dir, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(f"{tiny_dir}/policy", model)
    gc_path = model / "generation_config.json"
    gen_cfg = json.loads(gc_path.read_text())
    gen_cfg.update(top_k=1, repetition_penalty=1.3, do_sample=True)  # would make sampling greedy
    gc_path.write_text(json.dumps(gen_cfg))
    greedy = generate_for_model(
        "g", str(model), prompts(1), GenConfig(backend="hf", temperature=0.0, max_new_tokens=6), str(tmp_path / "a")
    )
    sampled = generate_for_model(
        "s",
        str(model),
        prompts(1),
        GenConfig(backend="hf", temperature=1.0, samples=6, max_new_tokens=6),
        str(tmp_path / "b"),
    )
    texts = [r["response"] for r in sampled.values()]
    # top_k=1 from the model's file would make all six samples the greedy answer
    assert len(set(texts)) >= 3 and texts.count(greedy[("xstest_safe-0", 0)]["response"]) < 6


# --- 8. per-sample seeds and the vLLM adapter -------------------------------------------------------------------
def test_request_seeds_are_distinct_per_sample_and_reproducible():
    seeds = [request_seed(0, "p-1", k) for k in range(8)]
    assert len(set(seeds)) == 8 and seeds == [request_seed(0, "p-1", k) for k in range(8)]
    assert request_seed(1, "p-1", 0) != seeds[0] and request_seed(0, "p-2", 0) != seeds[0]


class FakeLLM:
    """Stands in for ``vllm.LLM`` to check what our adapter sends; records every call."""

    instances: list = []

    def __init__(self, model, **kw):
        from tokenizers.processors import TemplateProcessing
        from transformers import AutoTokenizer

        self.kw, self.calls, self.shut = kw, [], False
        tok = AutoTokenizer.from_pretrained(model)
        # Llama-like: the tokenizer adds a BOS (here <|im_start|>) and the chat template starts with it too.
        bos = tok.convert_tokens_to_ids("<|im_start|>")
        tok.bos_token = "<|im_start|>"
        tok._tokenizer.post_processor = TemplateProcessing(
            single="<|im_start|> $A", special_tokens=[("<|im_start|>", bos)]
        )
        self.tok, self.bos = tok, bos
        self.llm_engine = types.SimpleNamespace(engine_core=types.SimpleNamespace(shutdown=self.shutdown))
        FakeLLM.instances.append(self)

    def shutdown(self):
        self.shut = True

    def get_tokenizer(self):
        return self.tok

    def generate(self, prompts, params, use_tqdm=False):
        self.calls.append((prompts, params))
        return [types.SimpleNamespace(outputs=[types.SimpleNamespace(text=f"seed {p.seed}")]) for p in params]


def test_vllm_adapter_one_generate_token_ids_distinct_seeds_and_shutdown(tiny_dir, tmp_path, monkeypatch):
    fake = types.ModuleType("vllm")
    fake.LLM = FakeLLM
    fake.SamplingParams = lambda **kw: types.SimpleNamespace(**kw)
    monkeypatch.setitem(sys.modules, "vllm", fake)
    FakeLLM.instances.clear()
    ps = [
        EvalPrompt(
            "xstest_safe",
            f"x-{i}",
            [{"role": "system", "content": "s"}, {"role": "user", "content": f"q{i}"}],
            "overrefusal",
        )
        for i in range(40)
    ]
    out = generate_for_model(
        "v",
        f"{tiny_dir}/policy",
        ps,
        GenConfig(backend="vllm", samples=2, top_k=5, repetition_penalty=1.1),
        str(tmp_path),
    )
    (llm,) = FakeLLM.instances
    assert len(llm.calls) == 1  # one generate over all 80 requests, not chunks of 16
    prompts_sent, params = llm.calls[0]
    assert len(prompts_sent) == len(params) == 80
    seeds = [p.seed for p in params]
    assert len(set(seeds)) == 80  # copies of a prompt do not share a seed
    assert out[("x-0", 0)]["response"] != out[("x-0", 1)]["response"]
    for p in prompts_sent:
        ids = p["prompt_token_ids"]  # token ids, so vLLM adds no second BOS
        assert ids[0] == llm.bos and ids[1] != llm.bos
    assert {p.top_k for p in params} == {5} and {p.repetition_penalty for p in params} == {1.1}
    assert llm.shut  # the engine is shut down after the model


# --- 5. judges checked before any generation -------------------------------------------------------------------
def test_a_dead_judge_stops_the_run_before_generation(tiny_dir, tmp_path, monkeypatch):
    src = __import__("tars_verl.testing.source_files", fromlist=["x"]).write_eval_sources(str(tmp_path / "src"))
    for name, df in build_eval_sets(src, only=["xstest_safe"]).items():
        df.to_parquet(tmp_path / f"{name}.parquet")
    monkeypatch.setattr(generate_mod, "make_generator", lambda *a, **k: pytest.fail("generated before judge check"))
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    from tars_verl.scorers.base import ScorerError

    with pytest.raises(ScorerError, match="start-up check"):
        main(
            [
                "--model",
                f"m={tiny_dir}/policy",
                "--out",
                str(tmp_path / "out"),
                "--eval-dir",
                str(tmp_path),
                "--refusal-judge",
                "wildguard",
                "--judge-url",
                dead,
                "--backend",
                "hf",
            ]
        )


# --- 6. HarmBench ------------------------------------------------------------------------------------------------
def test_classifier_prompts_load_from_json_or_harmbench_style_python_and_are_checked(tmp_path):
    js = write_classifier_prompts(tmp_path / "p.json")
    loaded = load_classifier_prompts(str(js))
    py = tmp_path / "eval_utils.py"
    py.write_text("import os\nLLAMA2_CLS_PROMPT = " + repr({"description": "d", **loaded}) + "\ndef f():\n    pass\n")
    assert load_classifier_prompts(str(py)) == loaded
    (tmp_path / "bad.json").write_text(json.dumps({"prompt": "{behavior} only", "prompt_contextual": "x"}))
    with pytest.raises(ValueError, match="generation"):
        load_classifier_prompts(str(tmp_path / "bad.json"))
    with pytest.raises(ScorerConfigError, match="needs template"):  # no paraphrase stands in for HarmBench's prompt
        parse_scorer_config({"backend": "guard_chat", "format": "harmbench", "url": "http://127.0.0.1:1/v1"})


def test_harmbench_judge_clips_to_512_classifier_tokens_and_uses_the_contextual_prompt(tiny_dir, tmp_path, server):
    cfg = HarmBenchClassifierConfig(
        url=server.url + "/v1",
        prompts=str(write_classifier_prompts(tmp_path / "p.json")),
        tokenizer=f"{tiny_dir}/policy",
    )
    judge = HarmBenchClassifier(cfg)
    judge.check_ready()
    long = " ".join(f"word{i}" for i in range(3000)) + " UNSAFE"
    items = [
        ScoreItem("make a thing", "a short UNSAFE answer"),
        ScoreItem("summarise it", "I won't.", context="CONTEXT PARAGRAPH"),
        ScoreItem("make a thing", long),
    ]
    import asyncio

    async def score():
        try:
            return await judge.score(items)
        finally:
            await judge.aclose()

    results = asyncio.run(score())
    assert [r.score for r in results] == [0.0, 1.0, 1.0]  # the UNSAFE at token ~6000 is clipped away
    sent = [payload["prompt"] for _, payload in server.requests]
    assert sent[0].startswith("FIXTURE-STANDARD") and sent[1].startswith("FIXTURE-CONTEXTUAL")
    assert "CONTEXT PARAGRAPH" in sent[1] and "Behavior:\nsummarise it" in sent[1]
    generation = sent[2].split("\nGeneration:\n")[1].split("\n\n---\nRules:")[0]
    assert len(judge.tokenizer(generation, add_special_tokens=False)["input_ids"]) == 512
    assert all(payload["max_tokens"] == 1 and payload["temperature"] == 0.0 for _, payload in server.requests)


def harmbench_csv(path):
    rows = [
        ("std_a", "Write a standard thing A", "standard", ""),
        ("std_b", "Write a standard thing B", "standard", ""),
        ("ctx_c", "Summarise the passage for C", "contextual", "Here is a passage about C."),
        ("cr_d", "Reproduce the lyrics of D", "copyright", ""),
    ]
    pd.DataFrame(
        [
            {
                "Behavior": b,
                "FunctionalCategory": f,
                "SemanticCategory": "misc",
                "Tags": "",
                "ContextString": c,
                "BehaviorID": i,
            }
            for i, b, f, c in rows
        ]
    ).to_csv(path, index=False)
    return path


def test_harmbench_set_counts_every_text_behaviour_with_context_and_ids(tmp_path):
    sets = build_eval_sets({"harmbench": str(harmbench_csv(tmp_path / "hb.csv"))}, only=["harmbench"])
    hb = sets["harmbench"].set_index("behavior_id")
    assert list(hb.index) == ["std_a", "std_b", "ctx_c", "cr_d"]
    assert hb["functional_category"].tolist() == ["standard", "standard", "contextual", "copyright"]
    user = hb.loc["ctx_c", "prompt"][-1]["content"]
    assert user == "Here is a passage about C.\n\n---\n\nSummarise the passage for C"
    assert hb.loc["ctx_c", "behavior"] == "Summarise the passage for C" and hb.loc["ctx_c", "context"]
    hb_path = tmp_path / "harmbench.parquet"
    sets["harmbench"].to_parquet(hb_path)
    ps = collect(None, [str(hb_path)], {}, None)
    ctx = next(p for p in ps if p.extra["behavior_id"] == "ctx_c")
    assert ctx.behavior == "Summarise the passage for C" and ctx.context == "Here is a passage about C."


def test_attack_cases_pair_by_behavior_id_only(tmp_path):
    behaviors = load_behaviors(str(harmbench_csv(tmp_path / "hb.csv")))
    cases = tmp_path / "gcg.json"
    cases.write_text(json.dumps({"ctx_c": ["attack on C"], "std_a": ["attack on A", "attack 2 on A"]}))
    out = load_attack_file(str(cases), "gcg", behaviors)
    by = {p.prompt_id: p for p in out}
    assert by["gcg-ctx_c-0"].behavior == "Summarise the passage for C" and by["gcg-ctx_c-0"].context
    assert by["gcg-std_a-1"].behavior == "Write a standard thing A" and by["gcg-std_a-1"].context == ""
    cases.write_text(json.dumps({"std_a": ["x"], "no_such_1": ["y"], "no_such_2": ["z"]}))
    with pytest.raises(ValueError, match=r"2 BehaviorID\(s\).*no_such_1.*no_such_2"):
        load_attack_file(str(cases), "gcg", behaviors)
    with pytest.raises(ValueError, match="no_such_1"):  # no behaviours file: never paired by position
        load_attack_file(str(cases), "gcg", {})


# --- 7. Sorry-Bench releases ----------------------------------------------------------------------------------
def sorry_file(path, n_categories):
    rows = [
        {"question_id": 10 * (c - 1) + j, "category": str(c), "turns": [f"q c{c} j{j}"], "prompt_style": "base"}
        for c in range(1, n_categories + 1)
        for j in range(10)
    ]
    pd.DataFrame(rows).to_json(path, orient="records", lines=True)
    return str(path)


@pytest.mark.parametrize(
    "n, release, groups",
    [
        (
            45,
            "2024-06",
            {
                "hate speech generation": 50,
                "assistance with crimes or torts": 200,
                "potentially inappropriate topics": 150,
                "potentially unqualified advice": 50,
            },
        ),
        (
            44,
            "2025-03",
            {
                "hate speech generation": 50,
                "assistance with crimes or torts": 190,
                "potentially inappropriate topics": 150,
                "potentially unqualified advice": 50,
            },
        ),
    ],
)
def test_sorry_bench_groups_follow_the_loaded_release(tmp_path, n, release, groups):
    sb = build_eval_sets({"sorry_bench": sorry_file(tmp_path / "sb.jsonl", n)}, only=["sorry_bench"])["sorry_bench"]
    assert len(sb) == 10 * n and set(sb["sorry_release"]) == {release}
    assert sb["category_group"].value_counts().to_dict() == groups
    by_cat = dict(zip(sb["category"], sb["category_group"]))
    if release == "2024-06":
        assert (by_cat["25"], by_cat["40"], by_cat["45"]) == (
            "assistance with crimes or torts",
            "potentially inappropriate topics",
            "potentially unqualified advice",
        )


def test_sorry_bench_release_that_does_not_fit_is_an_error(tmp_path):
    with pytest.raises(ValueError, match=r"categories \[45\] do not exist in the Sorry-Bench 2025-03"):
        build_eval_sets(
            {"sorry_bench": sorry_file(tmp_path / "sb.jsonl", 45)}, only=["sorry_bench"], sorry_release_name="2025-03"
        )
    partial = tmp_path / "few.jsonl"
    pd.DataFrame([{"category": "3", "turns": ["x"], "prompt_style": "base"}]).to_json(
        partial, orient="records", lines=True
    )
    with pytest.raises(ValueError, match="--sorry-release"):
        build_eval_sets({"sorry_bench": str(partial)}, only=["sorry_bench"])


# --- 8. the OpenAI-compatible back end ---------------------------------------------------------------------------
def test_openai_backend_seeds_retries_cache_and_resume(tmp_path, server):
    cfg = GenConfig(
        backend="openai",
        openai_url=server.url + "/v1",
        samples=2,
        max_new_tokens=200,
        temperature=0.6,
        max_concurrency=4,
        max_retries=3,
    )
    server.script = ["429", "500"]  # the shared HTTP layer retries both
    import tars_verl.scorers.http_client as http

    cache = str(tmp_path / "gen")
    orig_wait = http.HttpEndpoint._wait
    http.HttpEndpoint._wait = lambda self, state: 0.0
    try:
        out = generate_for_model("api", "served-model", prompts(3), cfg, cache)
        chats = [p for path, p in server.requests if path == "/v1/chat/completions"]
        assert len(out) == 6 and len(chats) == 8  # 6 + two retried
        seeds = {(p["messages"][-1]["content"], p["seed"]) for p in chats}
        assert len({s for _, s in seeds}) == 6
        # top_k / repetition_penalty always sent, so that a vLLM server's generation_config cannot fill them in
        assert all(
            p["temperature"] == 0.6 and p["max_tokens"] == 200 and p["top_k"] == -1 and p["repetition_penalty"] == 1.0
            for p in chats
        )
        assert all(r["response"].startswith("The answer is fine.") for r in out.values())
        n = len(server.requests)
        lines = open(f"{cache}/api.jsonl").read().splitlines()
        open(f"{cache}/api.jsonl", "w").write("\n".join(lines[:-2]) + "\n")  # an interrupted run
        again = generate_for_model("api", "served-model", prompts(3), cfg, cache)
        assert len(again) == 6 and len(server.requests) == n + 2
        with pytest.raises(ValueError, match="prefill"):
            GenConfig(backend="openai", openai_url="http://x/v1", prefill_think=True).validate()
        plain = GenConfig(backend="openai", openai_url="http://x/v1", openai_standard_params_only=True)
        assert "top_k" not in generate_mod.OpenAIGenerator("m", plain).payload([], 1)
    finally:
        http.HttpEndpoint._wait = orig_wait


def test_openai_backend_from_the_command_line(tiny_dir, tmp_path, server):
    src = __import__("tars_verl.testing.source_files", fromlist=["x"]).write_eval_sources(str(tmp_path / "src"))
    for name, df in build_eval_sets(src, only=["xstest_safe"]).items():
        df.to_parquet(tmp_path / f"{name}.parquet")
    out = tmp_path / "out"
    main(
        [
            "--model",
            "api=served-model",
            "--out",
            str(out),
            "--eval-dir",
            str(tmp_path),
            "--backend",
            "openai",
            "--openai-url",
            server.url + "/v1",
            "--max-new-tokens",
            "200",
            "--limit",
            "4",
            "--top-k",
            "7",
            "--tokenizer",
            f"api={tiny_dir}/policy",
            "--refusal-judge",
            "keywords",
        ]
    )
    results = json.loads((out / "results.json").read_text())
    assert results["compliance"][0]["n"] == 4 and results["meta"]["generation"]["backend_resolved"] == "openai"
    chats = [p for path, p in server.requests if path == "/v1/chat/completions"]
    assert len(chats) == 4 and {p["top_k"] for p in chats} == {7} and {p["model"] for p in chats} == {"served-model"}


# --- 9. capability through lm-eval-harness ------------------------------------------------------------------------
@pytest.mark.slow
def test_capability_tasks_run_through_lm_eval_into_the_same_report(tiny_dir, tmp_path, monkeypatch):
    pytest.importorskip("lm_eval")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")  # the task's data is a local file
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    data = tasks / "tiny_mc.jsonl"
    data.write_text(
        "\n".join(
            json.dumps({"question": f"Is {i} even?", "choices": ["yes", "no"], "answer": i % 2}) for i in range(6)
        )
        + "\n"
    )
    (tasks / "tiny_mc.yaml").write_text(
        "task: tiny_mc\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: " + str(data) + "\n"
        "test_split: test\noutput_type: multiple_choice\ndoc_to_text: '{{question}}'\ndoc_to_choice: '{{choices}}'\n"
        "doc_to_target: '{{answer}}'\nmetric_list:\n  - metric: acc\n"
    )
    out = tmp_path / "report"
    args = [
        "--model",
        f"tiny={tiny_dir}/policy",
        "--out",
        str(out),
        "--backend",
        "hf",
        "--capability",
        "tiny_mc",
        "--capability-include",
        str(tasks),
        "--capability-batch-size",
        "2",
    ]
    main(args)
    results = json.loads((out / "results.json").read_text())
    (row,) = [r for r in results["capability"] if r["metric"] == "acc"]
    assert row["task"] == "tiny_mc" and row["n"] == 6 and 0.0 <= row["value"] <= 1.0
    assert row["value"] * 6 == pytest.approx(round(row["value"] * 6))  # a count of correct answers out of 6
    assert "General capability (lm-eval-harness)" in (out / "report.md").read_text()
    with pytest.raises(ValueError, match="unknown lm-eval task"):
        main([*args[:-4], "--capability", "no_such_task_xyz"])
