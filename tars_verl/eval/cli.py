"""Evaluate one or more models on the TARS protocol and write a report.

    python -m tars_verl.eval --model tars=checkpoints/tars_qwen7b/hf --model base=Qwen/Qwen2.5-7B-Instruct \\
        --eval-dir data/eval --attack gcg=harmbench_gcg.json --attack pap=data/pap.json \\
        --behaviors harmbench_behaviors_text_all.csv \\
        --safety-judge harmbench --refusal-judge wildguard --judge-url http://127.0.0.1:8004/v1 --out reports/tars

Writes ``<out>/results.json``, ``<out>/report.md``, ``tradeoff.png`` (compliance vs defense success,
95% CIs), ``reasoning_length.png`` (Sorry-Bench groups) and ``umap_<model>.png``; generations are
cached under ``<out>/generations/`` keyed by the model's weights, the generation settings and the
prompt text, so a rerun resumes, ``--safety-judge``/``--refusal-judge`` can be changed without
generating again, and a changed setting or checkpoint is refused (``--regenerate`` to start anew),
never mixed. Judges are checked before any generation. Judges: a preset name (safety: harmbench,
llama_guard3, moderation, strongreject, keywords; refusal: xstest_strmatch (XSTest's string match, offline;
the default), xstest (XSTest's 3-class LLM judge with its own prompt), keywords, wildguard, llm) or a JSON
config. Decoding is greedy by default (HarmBench's setting); ``--temperature T`` samples. ``<think>`` is not
pre-filled unless ``--prefill-think``. ``--capability gsm8k,...`` adds lm-eval-harness tasks (general
capability) to the same report. The report's header lists, for each number, its protocol and source version.
See docs/evaluation.md.
"""

from __future__ import annotations

import argparse
import json
import logging

from transformers import AutoTokenizer, HfArgumentParser

from tars_verl.data.files import check_file_name
from tars_verl.data.text import count_flags, parse_kv, positive_int
from tars_verl.eval.generate import (
    GenConfig,
    decoding,
    generate_for_model,
    resolve_backend,
    settings_record,
)
from tars_verl.eval.judge import build_judge, judge_presets, judge_provenance, judge_records, refusal_reader
from tars_verl.eval.metrics import (
    attack_average,
    attack_table,
    compliance_table,
    length_table,
    per_behaviour,
    safety_table,
    tradeoff,
)
from tars_verl.eval.prompts import collect, load_attack_file, load_behaviors
from tars_verl.redaction import entry_point, register_env_secret, register_url
from tars_verl.scorers import parse_scorer_config

ATTACK_ORDER = ("gcg", "pair", "autodan", "pap", "direct")
SUITE_JUDGE = {"safety": "safety", "overrefusal": "refusal"}


def resolve_judge(
    spec: str,
    url: str,
    role: str,
    harmbench_prompts: str | None = None,
    harmbench_tokenizer: str | None = None,
    harmbench_url: str | None = None,
    harmbench_hashes: str | None = None,
) -> dict:
    presets = judge_presets(url)
    cfg = presets.get(spec) or (json.loads(spec) if spec.strip().startswith("{") else None)
    if cfg is None:
        raise ValueError(f"--{role}-judge {spec!r}: not a preset ({sorted(presets)}) nor a JSON judge config")
    if cfg.get("backend") == "harmbench_classifier":
        cfg = {
            **cfg,
            **({"prompts": harmbench_prompts} if harmbench_prompts else {}),
            **({"tokenizer": harmbench_tokenizer} if harmbench_tokenizer else {}),
            **({"base_url": harmbench_url} if harmbench_url else {}),
            **({"copyright_hashes": harmbench_hashes} if harmbench_hashes else {}),
        }
    parse_scorer_config(cfg, where=f"{role} judge")  # fail before any generation
    if role == "refusal":
        refusal_reader(cfg, where="--refusal-judge")  # a judge whose score is not a refusal verdict is refused
    return cfg


class _WordCounter:
    """Token counts for a model without a local tokenizer (an API model): whitespace words."""

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict:
        return {"input_ids": text.split()}


def _tokenizer(name: str, path: str, explicit: dict[str, str], backend: str, notes: dict[str, str]):
    if name in explicit:
        return AutoTokenizer.from_pretrained(explicit[name])
    try:
        return AutoTokenizer.from_pretrained(path)
    except Exception:  # noqa: BLE001
        if backend != "openai":
            raise
        notes[name] = "reasoning/answer lengths counted in words (no tokenizer; pass --tokenizer NAME=PATH)"
        return _WordCounter()


def run(args, gen_cfg: GenConfig) -> dict[str, str]:
    try:
        from tars_verl.eval.report import protocols, write_report
    except ImportError as err:
        raise ImportError(f"the evaluation report needs its extra: pip install 'tars-verl[eval]' ({err})") from err
    # Credentials in any URL given here, and the API key, are hidden from every message and file from now on.
    for value in (
        gen_cfg.openai_url,
        args.judge_url,
        args.harmbench_url,
        args.harmbench_prompts,
        args.harmbench_hashes,
    ):
        if value and "://" in value:
            register_url(value)
    register_env_secret(gen_cfg.api_key_env)
    models = parse_kv(args.model, "--model")
    if not models:
        raise ValueError("give at least one --model NAME=PATH")
    for name in models:  # the name becomes file names (generations/<name>.jsonl, umap_<name>.png)
        check_file_name(name, "--model name")
    judge_cfgs = {
        "safety": resolve_judge(
            args.safety_judge,
            args.judge_url,
            "safety",
            args.harmbench_prompts,
            args.harmbench_tokenizer,
            args.harmbench_url,
            args.harmbench_hashes,
        ),
        "overrefusal": resolve_judge(args.refusal_judge, args.judge_url, "refusal"),
    }
    capability = None
    if args.capability:
        from tars_verl.eval.capability import CapabilityConfig

        capability = CapabilityConfig.from_args(args)  # checks lm-eval and the tasks before any generation
    attack_specs = parse_kv(args.attack, "--attack")
    # --attack NAME=generate: test cases generated against each model (tars_verl.eval.attack.evaluation)
    generated = {k: v for k, v in attack_specs.items() if v == "generate"}
    prompts = collect(
        args.eval_dir,
        args.eval_file,
        {k: v for k, v in attack_specs.items() if k not in generated},
        args.behaviors,
        args.limit,
        allow_empty=capability is not None or bool(generated),
    )
    gen_cfg.validate()
    backend = resolve_backend(gen_cfg.backend)
    attack_runs, behavior_prompts = {}, []
    if generated:
        from tars_verl.eval.attack.evaluation import behavior_stubs, check_generation, run_configs

        attack_runs = run_configs(generated, models, args, gen_cfg)
        check_generation(attack_runs)  # behaviours, targets, options, settings: before any generation
        behavior_prompts = behavior_stubs(args.behaviors, args.limit)
    # Every judge the prompts need is built and reached now, before hours of generation.
    suites = {p.suite for p in prompts + behavior_prompts}
    judges = {}
    for suite, role in SUITE_JUDGE.items():
        if suite in suites:
            judges[suite] = build_judge(judge_cfgs[suite], where=f"{role} judge", prompts=prompts + behavior_prompts)
            judges[suite].check_ready()
    model_prompts = {name: list(prompts) for name in models}
    if attack_runs:
        from tars_verl.eval.attack.evaluation import generate_cases

        behaviors = load_behaviors(args.behaviors)
        for (attack, model), path in generate_cases(attack_runs).items():
            for name in [model] if model else list(models):
                model_prompts[name] += load_attack_file(path, attack, behaviors)
        prompts = list({p.prompt_id: p for ps in model_prompts.values() for p in ps}.values())
    tables: dict = {}
    judged = None
    meta_notes: dict[str, str] = {}
    if prompts:
        gens = {
            name: generate_for_model(
                name, path, model_prompts[name], gen_cfg, f"{args.out}/generations", args.regenerate
            )
            for name, path in models.items()
        }
        tokenizers = {
            name: _tokenizer(name, path, parse_kv(args.tokenizer, "--tokenizer"), backend, meta_notes)
            for name, path in models.items()
        }
        df = judge_records(prompts, gens, tokenizers, judges)
        safety = safety_table(df)
        avg = attack_average(safety) if not safety.empty else safety
        compliance = compliance_table(df)
        for table in (safety, compliance):  # every number says how its generations were decoded
            if not table.empty:
                table["decoding"] = decoding(gen_cfg)
        from tars_verl.eval.attack.evaluation import attack_kinds

        tables = {
            "safety": safety,
            "attacks": attack_table(
                safety, attack_kinds(attack_specs, models, backend, args.out) if not safety.empty else {}
            ),
            "safety_avg": avg,
            "safety_per_behavior": per_behaviour(df),
            "compliance": compliance,
            "lengths": length_table(df),
            "tradeoff": tradeoff(avg, compliance) if not avg.empty and not compliance.empty else compliance.iloc[0:0],
        }
        judged = df
    reps = {}
    if prompts and not args.no_representations and backend != "openai":
        from tars_verl.eval.representations import representation_margin

        safe = [p for p in prompts if p.dataset == "xstest_safe"][: args.repr_max]
        attack_name = next(
            (a for a in ATTACK_ORDER if any(p.attack == a and p.suite == "safety" for p in prompts)), None
        )
        attack = [p for p in prompts if p.attack == attack_name and p.suite == "safety"][: args.repr_max]
        if len(safe) >= 3 and len(attack) >= 3:
            reps = {name: representation_margin(path, safe, attack, gen_cfg.seed) for name, path in models.items()}
    if capability is not None:
        from tars_verl.eval.capability import run_capability

        tables["capability"], capability_settings = run_capability(
            models, capability, gen_cfg, f"{args.out}/capability"
        )
    else:
        capability_settings = None
    releases = sorted({p.extra["sorry_release"] for p in prompts if p.extra.get("sorry_release")})
    meta = {
        "models": models,
        "safety_judge": args.safety_judge,
        "refusal_judge": args.refusal_judge,
        "judges": judge_cfgs,
        "generation": settings_record(gen_cfg),
        "n_prompts": len(prompts),
        "prefill_think": gen_cfg.prefill_think,
        "sorry_bench_release": releases,
        "notes": meta_notes,
        "decoding": decoding(gen_cfg),
        **({"capability": capability_settings} if capability_settings else {}),
    }
    meta["generation"].pop("api_key_env", None)
    meta["protocols"] = protocols(
        tables,
        {suite: judge_provenance(j) for suite, j in judges.items()},
        {"safety": args.safety_judge, "overrefusal": args.refusal_judge},
        meta,
        capability_settings,
    )
    files = write_report(args.out, tables, reps, meta, judged)
    print(f"report: {files['report']}")
    return files


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The module docstring as written, and each flag's default."""


def build_parser() -> HfArgumentParser:
    """The flags of :class:`GenConfig` come from its fields (``HfArgumentParser``); the others are the run's own."""
    ap = HfArgumentParser(GenConfig, description=__doc__, formatter_class=_HelpFormatter)
    count_flags(ap, "samples", "max_new_tokens", "batch_size", "chunk_size", "tensor_parallel_size", "max_concurrency")
    ap.add_argument(
        "--model",
        action="append",
        default=[],
        help="NAME=PATH (local folder or hub id; with --backend openai: the served model name); repeatable",
    )
    ap.add_argument("--out", required=True)
    ap.add_argument("--eval-dir", help="folder written by data_prep/build_eval_sets.py")
    ap.add_argument("--eval-file", action="append", default=[], help="one eval parquet (repeatable)")
    ap.add_argument(
        "--attack",
        action="append",
        default=[],
        help="NAME=test_cases.json (gcg, pair, autodan, pap), or NAME=generate: generated against each --model "
        "(python -m tars_verl.eval.attack; settings: --attack-option, docs/attacks.md)",
    )
    ap.add_argument(
        "--behaviors",
        help="HarmBench behaviours file (BehaviorID, Behavior, ContextString): attack "
        "test cases are paired with behaviours by BehaviorID",
    )
    from tars_verl.eval.attack.evaluation import add_eval_args

    add_eval_args(ap)
    ap.add_argument("--safety-judge", default="harmbench")
    ap.add_argument(
        "--refusal-judge",
        default="xstest_strmatch",
        help="xstest_strmatch (XSTest's string match, offline; default), xstest (XSTest's LLM judge, its own prompt; "
        "GPT-4 via OPENAI_API_KEY, or a JSON config for any OpenAI-compatible judge), keywords, wildguard, llm",
    )
    ap.add_argument("--judge-url", default=judge_presets()["harmbench"]["url"], help="judge server ($TARS_JUDGE_URL)")
    ap.add_argument(
        "--harmbench-prompts",
        help="HarmBench classifier prompts: HarmBench's eval_utils.py (file or "
        "URL) or a JSON file {prompt, prompt_contextual}; default: downloaded from HarmBench's repository",
    )
    ap.add_argument(
        "--harmbench-url",
        help="base URL (or local clone) of HarmBench's published files: eval_utils.py and "
        "data/copyright_classifier_hashes/ (default: its GitHub repository, or $TARS_HARMBENCH_URL)",
    )
    ap.add_argument(
        "--harmbench-hashes",
        help="copyright reference hashes: a folder or URL of <BehaviorID>.pkl files (HarmBench's "
        "copyright_classifier_hashes); default: under --harmbench-url",
    )
    ap.add_argument(
        "--harmbench-tokenizer",
        help="tokenizer that clips generations to 512 tokens before the "
        "HarmBench classifier (default cais/HarmBench-Llama-2-13b-cls)",
    )
    ap.add_argument(
        "--tokenizer",
        action="append",
        default=[],
        help="NAME=PATH: tokenizer for a model's length counts (API models); repeatable",
    )
    ap.add_argument(
        "--no-prefill-think", dest="prefill_think", action="store_false", help="the default; kept for old command lines"
    )
    ap.add_argument(
        "--regenerate",
        action="store_true",
        help="when cached generations were made with other settings or weights, set them aside and "
        "generate again (default: refuse)",
    )
    ap.add_argument("--limit", type=positive_int, help="first N prompts of each set (quick checks)")
    ap.add_argument("--no-representations", action="store_true")
    ap.add_argument("--repr-max", type=positive_int, default=200, help="prompts per class for the UMAP/SVM margin")
    ap.add_argument(
        "--capability",
        help="comma-separated lm-eval-harness tasks; 'paper' = gsm8k,minerva_math500,"
        "gpqa_diamond_cot_zeroshot,mmlu_pro,squadv2 (needs tars-verl[eval])",
    )
    ap.add_argument("--capability-include", help="folder of extra lm-eval task YAMLs (lm-eval's --include_path)")
    ap.add_argument(
        "--capability-limit", type=positive_int, help="first N documents per capability task (quick checks)"
    )
    ap.add_argument("--capability-batch-size", default="auto", help="lm-eval batch size for the hf back end")
    return ap


@entry_point
def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    gen_cfg, args = build_parser().parse_args_into_dataclasses(argv)
    run(args, gen_cfg)


if __name__ == "__main__":
    main()
