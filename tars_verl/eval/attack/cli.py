"""Generate HarmBench test cases against the model under test: GCG, PAIR, AutoDAN or PAP, as HarmBench runs them.

    python -m tars_verl.eval.attack --method gcg --model checkpoints/tars/tars_qwen7b/hf \\
        --behaviors harmbench_behaviors_text_all.csv --out cases/gcg.json
    python -m tars_verl.eval.attack --method pair --model http://127.0.0.1:8000/v1 --model-name tars \\
        --attacker-url http://127.0.0.1:8001/v1 --attacker-model mistralai/Mixtral-8x7B-Instruct-v0.1 \\
        --behaviors harmbench_behaviors_text_all.csv --out cases/pair.json
    python -m tars_verl.eval.attack --method pap --attacker-url http://127.0.0.1:8001/v1 \\
        --attacker-model mistralai/Mixtral-8x7B-Instruct-v0.1 --behaviors ... --out cases/pap.json

Writes HarmBench's test-case file (``{BehaviorID: [test case, ...]}``) that ``python -m tars_verl.eval --attack
gcg=cases/gcg.json`` reads, ``cases/gcg.logs.json`` (per behaviour: steps, losses or judge scores, time) and
``cases/gcg.meta.json``; the work folder ``cases/gcg/`` holds one file per behaviour, so a rerun resumes, a changed
setting is refused (``--restart`` sets the old folder aside), and ``--shard i/n`` processes (or ``--ray`` on a cluster)
share the work. Every start-up check (behaviours file, optimizer targets, endpoints, the model) runs before any
behaviour; ``--dry-run`` stops after them. Method settings: ``--set KEY=VALUE`` (JSON values) or ``--config FILE``
(YAML/JSON); docs/attacks.md lists them with their published sources. Downloads of HarmBench's files are cached in
``$TARS_CACHE_DIR/harmbench`` (default ``~/.cache/tars_verl/harmbench``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from tars_verl.eval.attack.base import ATTACKS
from tars_verl.redaction import entry_point

# Named flags -> the method option they set (only when given: a method that has no such option refuses it).
OPTION_FLAGS = {
    "attacker_url": "attacker_url",
    "attacker_model": "attacker_model",
    "attacker_api_key_env": "attacker_api_key_env",
    "judge_url": "judge_url",
    "judge_model": "judge_model",
    "judge_api_key_env": "judge_api_key_env",
    "model_name": "target_model_name",
    "api_key_env": "target_api_key_env",
    "pair_prompts": "pair_prompts",
    "pap_templates": "pap_templates",
    "mutator_url": "mutator_url",
    "mutator_model": "mutator_model",
    "mutator_api_key_env": "api_key_env",
}


def parse_value(text: str) -> Any:
    """A ``--set`` value: JSON when it parses (numbers, true/false, lists), else the text itself.

    >>> parse_value("8"), parse_value("true"), parse_value('["}"]'), parse_value("mistralai/Mixtral")
    (8, True, ['}'], 'mistralai/Mixtral')
    """
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_sets(items: list[str], flag: str = "--set") -> dict[str, Any]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{flag} {item!r}: expected KEY=VALUE")
        out[key.strip()] = parse_value(value)
    return out


def read_config(path: str, method: str) -> dict[str, Any]:
    """Options from a YAML/JSON file: a flat mapping, or one section per method (``pair: {...}``)."""
    import yaml

    try:
        with open(path) as f:
            data = yaml.safe_load(f)
    except OSError as err:
        raise ValueError(f"--config {path}: cannot be read ({err})") from err
    except yaml.YAMLError as err:
        raise ValueError(f"--config {path}: not valid YAML/JSON ({err})") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"--config {path}: expected a mapping of option: value")
    if isinstance(data.get(method), dict):
        return dict(data[method])
    if any(k in ATTACKS for k in data):
        return {}  # sections for other methods only
    return data


def options_from_args(args) -> dict[str, Any]:
    options = read_config(args.config, args.method) if args.config else {}
    for flag, key in OPTION_FLAGS.items():
        value = getattr(args, flag, None)
        if value is not None:
            options[key] = value
    options.update(parse_sets(args.set))
    return options


def add_run_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--attacker-url", help="the attacker's OpenAI-compatible endpoint (pair, pap)")
    ap.add_argument("--attacker-model", help="the attacker's served model name (pair, pap)")
    ap.add_argument("--attacker-api-key-env", help="environment variable holding the attacker endpoint's API key")
    ap.add_argument("--judge-url", help="pair: the judge's endpoint (default: the attacker's)")
    ap.add_argument("--judge-model", help="pair: the judge's served model name (default: the attacker's)")
    ap.add_argument("--judge-api-key-env", help="pair: environment variable holding the judge endpoint's API key")
    ap.add_argument("--mutator-url", help="autodan: the mutation LLM's endpoint (HarmBench: Mistral-7B-Instruct-v0.2)")
    ap.add_argument("--mutator-model", help="autodan: the mutation LLM's served model name")
    ap.add_argument("--mutator-api-key-env", help="autodan: environment variable holding the mutator's API key")
    ap.add_argument(
        "--pair-prompts",
        help="pair: HarmBench's repository (raw base URL or local clone; default: its GitHub repository) or a JSON "
        "file of PAIR's prompts (docs/attacks.md)",
    )
    ap.add_argument(
        "--pap-templates",
        help="pap: HarmBench's repository (raw base URL or local clone) or a JSON file {persuasion_taxonomy, "
        "one_shot_kd, one_shot_kd_contexual}",
    )
    ap.add_argument(
        "--targets",
        help="optimizer targets JSON {BehaviorID: target} (file or URL; default: HarmBench's "
        "data/optimizer_targets/harmbench_targets_text.json) for gcg, autodan and pair",
    )
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a method setting (repeatable)")
    ap.add_argument("--config", help="YAML/JSON file of method settings (flat, or one section per method)")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m tars_verl.eval.attack",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--method", required=True, help=f"{', '.join(ATTACKS)} (or package.module:Class)")
    ap.add_argument(
        "--model",
        default="",
        help="the model under test: local folder or hub id (white box; black box through the hf/vllm back end) "
        "or an OpenAI-compatible endpoint URL (black box); not needed for pap",
    )
    ap.add_argument("--model-name", help="the served model name when --model is an endpoint URL")
    ap.add_argument("--api-key-env", help="environment variable holding the --model endpoint's API key")
    ap.add_argument("--behaviors", required=True, help="HarmBench behaviours CSV (BehaviorID, Behavior, ...)")
    ap.add_argument("--out", required=True, help="test-case file to write, e.g. cases/gcg.json")
    add_run_args(ap)
    ap.add_argument(
        "--shard", default="0/1", help="i/n: this process attacks every n-th behaviour from the i-th (counted from 0)"
    )
    ap.add_argument(
        "--concurrency", type=int, help="behaviours at once per process (default: 1 white box, 8 black box)"
    )
    ap.add_argument("--limit", type=int, help="only the first N behaviours of the file")
    ap.add_argument("--behavior-id", action="append", default=[], help="only this BehaviorID (repeatable)")
    ap.add_argument("--restart", action="store_true", help="set a work folder made with other settings aside")
    ap.add_argument("--dry-run", action="store_true", help="run every start-up check, then stop")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    ap.add_argument(
        "--ray", nargs="?", const="auto", help="spread the behaviours over a Ray cluster (address; default auto)"
    )
    ap.add_argument("--workers", type=int, help="--ray: workers (default: one per GPU for white box, 1 for black box)")
    ap.add_argument("--gpus-per-worker", type=float, default=1.0, help="--ray, white box: GPUs per worker")
    ap.add_argument("--cpus-per-worker", type=float, default=1.0, help="--ray: CPUs per worker")
    return ap


def run(args) -> dict[str, Any]:
    from tars_verl.eval.attack.runner import RunConfig, parse_shard, run_attack

    cfg = RunConfig(
        method=args.method,
        model=args.model,
        behaviors=args.behaviors,
        out=args.out,
        options=options_from_args(args),
        targets=args.targets,
        shard=parse_shard(args.shard),
        concurrency=args.concurrency,
        limit=args.limit,
        behavior_ids=args.behavior_id or None,
        restart=args.restart,
        progress=not args.no_progress,
        dry_run=args.dry_run,
    )
    if args.ray:
        from tars_verl.eval.attack.cluster import run_attack_on_ray

        return run_attack_on_ray(cfg, args.ray, args.workers, args.gpus_per_worker, args.cpus_per_worker)
    return run_attack(cfg)


@entry_point
def main(argv: list[str] | None = None) -> None:
    from tars_verl.eval.attack.runner import AttackRunError

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    args = build_parser().parse_args(argv)
    try:
        summary = run(args)
    except AttackRunError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(1) from None
    print(json.dumps(summary, indent=1))
