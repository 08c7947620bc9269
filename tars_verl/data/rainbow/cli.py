"""``python data_prep/build_rainbow_archive.py``: Rainbow-Teaming archives against your own warm start.

    # the warm start, a mutator and a judge (any OpenAI-compatible servers), and Llama Guard for the fitness
    vllm serve data/sft_ckpt --served-model-name warmstart --port 8000
    vllm serve meta-llama/Llama-3.1-70B-Instruct --port 8001 --tensor-parallel-size 4
    vllm serve meta-llama/Llama-Guard-3-8B --port 8002
    python data_prep/build_rainbow_archive.py \\
        --target http://127.0.0.1:8000/v1 --mutator http://127.0.0.1:8001/v1 --judge http://127.0.0.1:8001/v1 \\
        --fitness http://127.0.0.1:8002/v1 --out data/rainbow --seed 1 --seed 2 --seed 3
    python data_prep/build_rl_mix.py --source rainbow_teaming=data/rainbow ...

Several ``--seed`` and/or ``--target`` values make a sweep (one archive per pair, ``--ray-address auto`` schedules
them on a Ray cluster). Run the same command again to resume; ``--dry-run`` checks the settings and every endpoint
and stops. Settings, defaults and their sources: ``docs/rainbow_teaming.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import sys

from tars_verl.data.rainbow.descriptors import PAPER_RISK_CATEGORIES, TARS_ATTACK_STYLES, load_names
from tars_verl.data.rainbow.search import (
    ModelEndpoint,
    RainbowConfig,
    RainbowError,
    RainbowSearch,
    default_target,
    serve_hint,
)
from tars_verl.data.rainbow.sweep import run_sweep
from tars_verl.data.text import parse_kv

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--target",
        action="append",
        required=True,
        metavar="[LABEL=]URL",
        help="the model under attack (your warm start) behind an OpenAI-compatible server; repeat for a sweep over "
        "checkpoints (LABEL names its archives). A local path is refused with the command that serves it.",
    )
    ap.add_argument("--mutator", required=True, metavar="URL", help="the mutator LLM's server")
    ap.add_argument("--judge", required=True, metavar="URL", help="the pairwise judge LLM's server")
    fit = ap.add_mutually_exclusive_group(required=True)
    fit.add_argument("--fitness", metavar="URL", help="a served safety guard (guard_chat scorer) for the fitness")
    fit.add_argument(
        "--fitness-config", metavar="FILE", help="any tars_verl scorer config (JSON/YAML mapping with `backend`)"
    )
    ap.add_argument("--fitness-model", default="meta-llama/Llama-Guard-3-8B")
    ap.add_argument("--fitness-format", default="llama_guard", help="guard_chat format (llama_guard, qwen3guard...)")
    for role in ("target", "mutator", "judge"):
        ap.add_argument(f"--{role}-model", default="", help=f"model name at the {role} server (default: its first)")
        ap.add_argument(f"--{role}-temperature", type=float)
        ap.add_argument(f"--{role}-top-p", type=float)
        ap.add_argument(f"--{role}-max-tokens", type=int)
    ap.add_argument(
        "--api-key-env",
        action="append",
        default=[],
        metavar="ROLE=VAR",
        help="read ROLE's API key (target, mutator, judge) from environment variable VAR",
    )
    ap.add_argument("--out", required=True, help="folder for <name>.json (the archive) and <name>.run/")
    ap.add_argument("--name", default="", help="archive name (default archive_seed<seed>; one run only)")
    ap.add_argument("--seed", type=int, action="append", help="repeat for a sweep over seeds (default 0)")
    ap.add_argument("--iterations", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--checkpoint-every", type=int, default=50)
    ap.add_argument("--bleu-threshold", type=float, default=0.6)
    ap.add_argument("--sampling-temperature", type=float, default=0.1)
    ap.add_argument("--judge-evaluations-per-order", type=int, default=2)
    ap.add_argument("--risk-categories", metavar="FILE", help="one name a line (.txt) or a JSON list")
    ap.add_argument("--attack-styles", metavar="FILE", help="one name a line (.txt) or a JSON list")
    ap.add_argument(
        "--prompts", metavar="FILE", help="JSON/YAML with generate / mutate_category / mutate_style / judge"
    )
    ap.add_argument("--init-archive", metavar="FILE", help="start from an archive in the authors' format")
    ap.add_argument("--seed-prompts", metavar="FILE", help="a table with a `prompt` column: the first parents")
    ap.add_argument("--judge-text", choices=["answer", "full"], default="answer")
    ap.add_argument("--target-system-prompt", default=None)
    ap.add_argument("--max-concurrency", type=int, default=32, help="requests in flight per endpoint")
    ap.add_argument("--ray-address", default=None, help="run the sweep on Ray: auto, HOST:PORT or local")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--dry-run", action="store_true", help="check settings and endpoints, then stop")
    return ap


def _endpoint(args, role: str, url: str, keys: dict[str, str]) -> ModelEndpoint:
    ep = default_target(url) if role == "target" else ModelEndpoint(url)
    ep.model = getattr(args, f"{role}_model")
    ep.api_key_env = keys.get(role)
    for name in ("temperature", "top_p", "max_tokens"):
        value = getattr(args, f"{role}_{name}")
        if value is not None:
            setattr(ep, name, value)
    return ep


def _fitness(args) -> dict:
    if args.fitness_config:
        path = args.fitness_config
        with open(path, encoding="utf-8") as f:
            text = f.read()
        import yaml

        data = yaml.safe_load(text)  # YAML reads JSON too
        if not isinstance(data, dict):
            raise ValueError(f"--fitness-config {path}: expected a mapping with `backend`, got {type(data).__name__}")
        return data
    return {"backend": "guard_chat", "url": args.fitness, "model": args.fitness_model, "format": args.fitness_format}


def configs_from_args(args) -> list[RainbowConfig]:
    """One config per (target, seed); names get the target's label when there are several targets."""
    keys = parse_kv(args.api_key_env, "--api-key-env")
    unknown = sorted(set(keys) - {"target", "mutator", "judge"})
    if unknown:
        raise ValueError(f"--api-key-env: unknown role(s) {unknown}; use target, mutator or judge")
    targets = []
    for i, item in enumerate(args.target):
        label, url = item.split("=", 1) if re.match(r"^[A-Za-z0-9_.-]+=", item) else (f"t{i}", item)
        if not url.startswith(("http://", "https://")) and os.path.exists(url):
            raise ValueError(serve_hint("target", url))
        targets.append((label, url))
    seeds = args.seed or [0]
    several = len(targets) * len(seeds) > 1
    if several and args.name:
        raise ValueError("--name names one run; a sweep names its archives archive_[<label>_]seed<seed>")
    cats = load_names(args.risk_categories, "risk categories") if args.risk_categories else PAPER_RISK_CATEGORIES
    styles = load_names(args.attack_styles, "attack styles") if args.attack_styles else TARS_ATTACK_STYLES
    configs = []
    for label, url in targets:
        for seed in seeds:
            name = args.name or (f"archive_{label}_seed{seed}" if len(targets) > 1 else f"archive_seed{seed}")
            configs.append(
                RainbowConfig(
                    out=args.out,
                    name=name,
                    seed=seed,
                    target=_endpoint(args, "target", url, keys),
                    mutator=_endpoint(args, "mutator", args.mutator, keys),
                    judge=_endpoint(args, "judge", args.judge, keys),
                    fitness=_fitness(args),
                    iterations=args.iterations,
                    batch_size=args.batch_size,
                    checkpoint_every=args.checkpoint_every,
                    bleu_threshold=args.bleu_threshold,
                    sampling_temperature=args.sampling_temperature,
                    judge_evaluations_per_order=args.judge_evaluations_per_order,
                    risk_categories=tuple(cats),
                    attack_styles=tuple(styles),
                    prompts_file=args.prompts,
                    init_archive=args.init_archive,
                    seed_prompts=args.seed_prompts,
                    judge_text=args.judge_text,
                    target_system_prompt=args.target_system_prompt,
                    max_concurrency=args.max_concurrency,
                    progress_bar=not args.no_progress and args.ray_address is None,
                )
            )
    return configs


async def _dry_run(cfg: RainbowConfig) -> dict:
    search = RainbowSearch(cfg)
    await search.start()
    try:
        search.check_settings(write=False)
    finally:
        await search.aclose()
    return {"name": cfg.run_name, "archive": cfg.archive_path, "models": search.models, "cells": search.archive.size}


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        configs = configs_from_args(args)
        for cfg in configs:
            cfg.validate()
        if args.dry_run:
            for cfg in configs:
                print(json.dumps(asyncio.run(_dry_run(cfg)), indent=1))
            print("dry run: settings and endpoints are fine; nothing was generated")
            return 0
        summaries = run_sweep(configs, args.ray_address)
    except (ValueError, FileNotFoundError, RainbowError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for s in summaries:
        print(
            f"{s.archive_path}: {s.cells_filled}/{s.cells} cells, mean fitness {s.mean_fitness:.3f}, "
            f"{s.iterations} iterations ({s.iterations_per_s:.2f}/s); counts {json.dumps(s.counters)}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
