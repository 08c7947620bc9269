"""Attacks inside the evaluation: ``python -m tars_verl.eval --attack gcg=generate`` generates the test cases against
each evaluated model before evaluating them, and every attack of the report is labelled adaptive or transfer.

- ``--attack NAME=generate``: for every ``--model NAME=PATH``, :func:`~tars_verl.eval.attack.runner.run_attack` writes
  ``<out>/attacks/<model>/<NAME>.json`` (resumable: a rerun of the evaluation skips what is done), then those test
  cases join that model's prompts. A method whose test cases do not depend on the model (PAP) is generated once, in
  ``<out>/attacks/<NAME>.json``. Method settings: ``--attack-option NAME.KEY=VALUE`` or ``--attack-config FILE``
  (``{NAME: {KEY: VALUE}}``); optimizer targets: ``--attack-targets``. With ``--backend openai`` the model under test
  is the endpoint (``--openai-url``) and its served name.
- :func:`attack_kind`: ``adaptive`` (generated against this model), ``transfer`` (imported, or generated against
  another model), ``model-agnostic`` (PAP: the same cases for every model) or ``unknown`` (a file without the
  ``.meta.json`` the runner and the importers write).
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from tars_verl.data.text import positive_int
from tars_verl.eval.attack.base import ATTACKS
from tars_verl.eval.attack.cli import parse_value, read_config
from tars_verl.eval.attack.runner import RunConfig, attack_class, model_identity, prepare, run_attack, sidecar
from tars_verl.eval.generate import GenConfig

GENERATE = "generate"


def add_eval_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument(
        "--attack-option",
        action="append",
        default=[],
        metavar="NAME.KEY=VALUE",
        help="a setting of a generated attack (--attack NAME=generate), e.g. pair.attacker_url=http://host:8001/v1",
    )
    ap.add_argument("--attack-config", help="YAML/JSON {NAME: {KEY: VALUE}} of generated attacks' settings")
    ap.add_argument("--attack-targets", help="optimizer targets JSON for generated attacks (default: HarmBench's)")
    ap.add_argument("--attack-concurrency", type=positive_int, help="behaviours attacked at once per generated attack")


def attack_options(name: str, args) -> dict[str, Any]:
    options = read_config(args.attack_config, name) if getattr(args, "attack_config", None) else {}
    for item in getattr(args, "attack_option", []) or []:
        key, sep, value = item.partition("=")
        method, dot, option = key.partition(".")
        if not sep or not dot or not option:
            raise ValueError(f"--attack-option {item!r}: expected NAME.KEY=VALUE (e.g. pair.n_streams=20)")
        if method not in ATTACKS:
            raise ValueError(f"--attack-option {item!r}: unknown attack {method!r}; known: {sorted(ATTACKS)}")
        if method == name:
            options[option] = parse_value(value)
    return options


def run_configs(
    specs: dict[str, str], models: dict[str, str], args, gen: GenConfig
) -> dict[tuple[str, str], RunConfig]:
    """One runner config per (attack, model) for ``--attack NAME=generate``; a model-agnostic attack gets one shared
    config (model key ``""``). ``gen``: the evaluation's generation settings (back end, endpoint, API key)."""
    if not args.behaviors:
        raise ValueError("--attack NAME=generate needs --behaviors (HarmBench's behaviours CSV)")
    out = {}
    for name in specs:
        cls = attack_class(name)
        options = attack_options(name, args)
        if not cls.adaptive:
            out[(name, "")] = RunConfig(
                method=name,
                model="",
                behaviors=args.behaviors,
                out=os.path.join(args.out, "attacks", f"{name}.json"),
                options=options,
                targets=args.attack_targets,
                limit=args.limit,
                concurrency=args.attack_concurrency,
            )
            continue
        for model, path in models.items():
            target, opts = path, dict(options)
            if gen.backend == "openai":
                if cls.white_box:
                    raise ValueError(
                        f"--attack {name}=generate is a white-box attack: it needs the model's weights, "
                        "not an endpoint (--backend openai)"
                    )
                target = gen.openai_url
                opts.setdefault("target_model_name", path)
                if gen.api_key_env:
                    opts.setdefault("target_api_key_env", gen.api_key_env)
            elif name == "pair":
                opts.setdefault("target_backend", gen.backend)
            out[(name, model)] = RunConfig(
                method=name,
                model=target,
                behaviors=args.behaviors,
                out=os.path.join(args.out, "attacks", model, f"{name}.json"),
                options=opts,
                targets=args.attack_targets,
                limit=args.limit,
                concurrency=args.attack_concurrency,
            )
    return out


def check_generation(configs: dict[tuple[str, str], RunConfig]) -> None:
    """Every start-up check that needs no server or model (behaviours, targets, options, settings), for every
    (attack, model), before any generation."""
    for cfg in configs.values():
        prepare(RunConfig(**{**cfg.__dict__, "dry_run": True}))


def generate_cases(configs: dict[tuple[str, str], RunConfig]) -> dict[tuple[str, str], str]:
    """Run every config (resuming); returns {(attack, model): test-case file}."""
    files = {}
    for key, cfg in configs.items():
        run_attack(cfg)
        files[key] = cfg.out
    return files


def _identity(path: str, backend: str) -> dict:
    if backend == "openai":
        return {"kind": "endpoint", "model": path}
    return model_identity(path)


def attack_kind(cases_file: str, model_path: str, backend: str) -> str:
    """adaptive / transfer / model-agnostic / unknown (see the module docstring) for ``model_path``."""
    meta_path = sidecar(cases_file, "meta") if cases_file.endswith(".json") else ""
    if not meta_path or not os.path.exists(meta_path):
        return "unknown"
    with open(meta_path) as f:
        meta = json.load(f)
    if meta.get("kind") == "imported":
        return "transfer"
    if not meta.get("adaptive", True):
        return "model-agnostic"
    made_for = dict(meta.get("model") or {})
    if made_for.get("kind") == "endpoint":
        made_for["model"] = (meta.get("settings") or {}).get("target_model_name", "")
    try:
        here = _identity(model_path, backend)
    except ValueError:
        return "unknown"
    if made_for.get("kind") == "endpoint" or here.get("kind") == "endpoint":
        same = made_for.get("kind") == here.get("kind") and made_for.get("model") == here.get("model")
    else:
        keys = ("files_sha256", "commit")
        same = any(made_for.get(k) and made_for.get(k) == here.get(k) for k in keys)
    return "adaptive" if same else "transfer"


def behavior_stubs(behaviors_file: str, limit: int | None = None) -> list:
    """One placeholder prompt per behaviour of the file (what the judges must be ready for before the generated test
    cases exist: HarmBench's judge loads the copyright hashes of the copyright behaviours among them)."""
    from tars_verl.eval.prompts import EvalPrompt, load_behaviors

    out = []
    for bid, b in list(load_behaviors(behaviors_file).items())[:limit]:
        out.append(
            EvalPrompt(
                "harmbench",
                f"stub-{bid}",
                [{"role": "user", "content": b["behavior"]}],
                "safety",
                behavior=b["behavior"],
                attack="stub",
                context=b.get("context", ""),
                extra={
                    "behavior_id": bid,
                    "functional_category": b.get("functional_category", ""),
                    "tags": b.get("tags", ""),
                },
            )
        )
    return out


def attack_kinds(specs: dict[str, str], models: dict[str, str], backend: str, out: str) -> dict[tuple[str, str], str]:
    """{(model name, attack): kind} for the report, from each test-case file's ``.meta.json``."""
    kinds = {}
    for attack, spec in specs.items():
        for name, path in models.items():
            if spec == GENERATE:
                shared = os.path.join(out, "attacks", f"{attack}.json")
                cases = shared if os.path.exists(shared) else os.path.join(out, "attacks", name, f"{attack}.json")
            else:
                cases = spec
            kinds[(name, attack)] = attack_kind(cases, path, backend)
    return kinds
