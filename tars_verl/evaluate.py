"""Evaluate one or more models on the TARS protocol and write a report.

    python -m tars_verl.evaluate --model tars=checkpoints/tars_qwen7b/hf --model base=Qwen/Qwen2.5-7B-Instruct \\
        --eval-dir data/eval --attack gcg=harmbench_gcg.json --attack pap=data/pap.json \\
        --safety-judge harmbench --refusal-judge wildguard --judge-url http://127.0.0.1:8004/v1 --out reports/tars

Writes ``<out>/results.json``, ``<out>/report.md``, ``tradeoff.png`` (compliance vs defense success,
95% CIs), ``reasoning_length.png`` (Sorry-Bench groups) and ``umap_<model>.png``; generations are
cached under ``<out>/generations/`` so a rerun resumes, and ``--safety-judge``/``--refusal-judge``
can be changed without generating again. Judges: a preset name (safety: harmbench, llama_guard3,
moderation, strongreject, keywords; refusal: keywords, wildguard, llm) or a JSON scorer config.
"""

from __future__ import annotations

import argparse
import json
import logging

from transformers import AutoTokenizer

from .data.rl_mix import parse_kv
from .eval.generate import GenConfig, generate_for_model
from .eval.judge import judge_presets, judge_records
from .eval.metrics import attack_average, compliance_table, length_table, safety_table, tradeoff
from .eval.prompts import collect
from .scorers import parse_scorer_config

ATTACK_ORDER = ("gcg", "pair", "autodan", "pap", "direct")


def resolve_judge(spec: str, url: str, role: str) -> dict:
    presets = judge_presets(url)
    cfg = presets.get(spec) or (json.loads(spec) if spec.strip().startswith("{") else None)
    if cfg is None:
        raise ValueError(f"--{role}-judge {spec!r}: not a preset ({sorted(presets)}) nor a JSON scorer config")
    parse_scorer_config(cfg, where=f"{role} judge")  # fail before any generation
    return cfg


def run(args) -> dict[str, str]:
    try:
        from .eval.report import write_report
    except ImportError as err:
        raise ImportError(f"the evaluation report needs its extra: pip install 'tars-verl[eval]' ({err})") from err
    models = parse_kv(args.model, "--model")
    if not models:
        raise ValueError("give at least one --model NAME=PATH")
    safety_cfg = resolve_judge(args.safety_judge, args.judge_url, "safety")
    refusal_cfg = resolve_judge(args.refusal_judge, args.judge_url, "refusal")
    prompts = collect(args.eval_dir, args.eval_file, parse_kv(args.attack, "--attack"), args.behaviors, args.limit)
    gen_cfg = GenConfig(backend=args.backend, temperature=args.temperature, max_new_tokens=args.max_new_tokens,
                        samples=args.samples, prefill_think=not args.no_prefill_think, batch_size=args.batch_size,
                        seed=args.seed, tensor_parallel_size=args.tensor_parallel_size)
    gens = {name: generate_for_model(name, path, prompts, gen_cfg, f"{args.out}/generations")
            for name, path in models.items()}
    tokenizers = {name: AutoTokenizer.from_pretrained(path) for name, path in models.items()}
    df = judge_records(prompts, gens, tokenizers, safety_cfg, refusal_cfg)
    safety = safety_table(df)
    avg = attack_average(safety) if not safety.empty else safety
    compliance = compliance_table(df)
    tables = {"safety": safety, "safety_avg": avg, "compliance": compliance, "lengths": length_table(df),
              "tradeoff": tradeoff(avg, compliance) if not avg.empty and not compliance.empty else compliance.iloc[0:0]}
    reps = {}
    if not args.no_representations:
        from .eval.representations import representation_margin

        safe = [p for p in prompts if p.dataset == "xstest_safe"][: args.repr_max]
        attack_name = next((a for a in ATTACK_ORDER if any(p.attack == a and p.suite == "safety" for p in prompts)), None)
        attack = [p for p in prompts if p.attack == attack_name and p.suite == "safety"][: args.repr_max]
        if len(safe) >= 3 and len(attack) >= 3:
            reps = {name: representation_margin(path, safe, attack, args.seed) for name, path in models.items()}
    df.to_parquet(f"{args.out}/judged.parquet", index=False)
    meta = {"models": list(models), "safety_judge": args.safety_judge, "refusal_judge": args.refusal_judge,
            "generation": {k: v for k, v in gen_cfg.__dict__.items()}, "n_prompts": len(prompts)}
    files = write_report(args.out, tables, reps, meta)
    print(f"report: {files['report']}")
    return files


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", default=[], help="NAME=PATH (local folder or hub id); repeatable")
    ap.add_argument("--out", required=True)
    ap.add_argument("--eval-dir", help="folder written by data_prep/build_eval_sets.py")
    ap.add_argument("--eval-file", action="append", default=[], help="one eval parquet (repeatable)")
    ap.add_argument("--attack", action="append", default=[], help="NAME=test_cases.json (gcg, pair, autodan, pap)")
    ap.add_argument("--behaviors", help="HarmBench behaviours file (BehaviorID, Behavior) for attack files")
    ap.add_argument("--safety-judge", default="harmbench")
    ap.add_argument("--refusal-judge", default="keywords")
    ap.add_argument("--judge-url", default=judge_presets()["harmbench"]["url"], help="judge server ($TARS_JUDGE_URL)")
    ap.add_argument("--backend", default="auto", choices=["auto", "hf", "vllm"])
    ap.add_argument("--samples", type=int, default=1)
    ap.add_argument("--temperature", type=float, default=0.6)
    ap.add_argument("--max-new-tokens", type=int, default=4096)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--tensor-parallel-size", type=int, default=1)
    ap.add_argument("--no-prefill-think", action="store_true", help="do not pre-fill <think> (the paper does)")
    ap.add_argument("--limit", type=int, help="first N prompts of each set (quick checks)")
    ap.add_argument("--no-representations", action="store_true")
    ap.add_argument("--repr-max", type=int, default=200, help="prompts per class for the UMAP/SVM margin")
    ap.add_argument("--seed", type=int, default=0)
    return ap


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    run(build_parser().parse_args(argv))


if __name__ == "__main__":
    main()
