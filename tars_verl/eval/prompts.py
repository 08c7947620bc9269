"""Evaluation prompts: the eval parquet files from ``data_prep/build_eval_sets.py`` plus attack files.

Every prompt is an :class:`EvalPrompt` with the ``suite`` it counts for:

- ``safety``: HarmBench / StrongREJECT behaviours, directly (``attack="direct"``) or as attack prompts
  (``gcg``, ``pair``, ``autodan`` from HarmBench test-case files; ``pap`` from ``tars_verl.eval.pap``).
  The judge sees the original ``behavior``, never the attack prompt.
- ``overrefusal``: XSTest safe prompts and the non-toxic WildChat sample.
- ``adaptive``: Sorry-Bench, with its category groups.

HarmBench test-case files are JSON ``{behavior_id: [test case, ...]}``; the behaviour text comes from
a HarmBench behaviours file (csv/jsonl with ``BehaviorID`` and ``Behavior`` columns) or, when
``behavior_id`` matches none, from the harmbench eval set by position.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import pandas as pd

from ..data.io import check_text_column, describe_value, read_table, require_columns
from ..data.rl_mix import user_messages

SUITES = {
    "harmbench": "safety", "strongreject": "safety", "strongreject_small": "safety",
    "xstest_safe": "overrefusal", "wildchat_nontoxic": "overrefusal", "sorry_bench": "adaptive",
}


@dataclass
class EvalPrompt:
    dataset: str
    prompt_id: str
    messages: list[dict[str, str]]
    suite: str
    behavior: str = ""
    attack: str = "direct"
    category: str = ""
    category_group: str = ""
    extra: dict = field(default_factory=dict)


def load_eval_set(path: str, name: str | None = None, limit: int | None = None) -> list[EvalPrompt]:
    name = name or os.path.splitext(os.path.basename(path))[0]
    if name not in SUITES:
        raise ValueError(f"{path}: unknown evaluation set {name!r}; known: {sorted(SUITES)}")
    df = read_table(path)
    require_columns(df, ["prompt"], path)
    out = []
    for i, row in enumerate(df.head(limit).to_dict("records") if limit else df.to_dict("records")):
        messages = [dict(m) for m in row["prompt"]]
        user = [m for m in messages if m["role"] == "user"][-1]["content"]
        out.append(EvalPrompt(name, f"{name}-{i}", messages, SUITES[name], behavior=user,
                              category=str(row.get("category", "")), category_group=str(row.get("category_group", ""))))
    return out


def load_attack_file(path: str, attack: str, behaviors: dict[str, str], direct: list[EvalPrompt],
                     system_prompt: str | None = None) -> list[EvalPrompt]:
    """Attack prompts from a HarmBench-style test-case JSON; each is tied to its behaviour text."""
    with open(path) as f:
        cases = json.load(f)
    if not isinstance(cases, dict):
        raise ValueError(f"{path}: expected a JSON object {{behavior_id: [test cases]}}")
    by_position = [p.behavior for p in direct]
    by_id = {p.prompt_id: p.behavior for p in direct}
    out = []
    for j, (bid, tests) in enumerate(cases.items()):
        behavior = behaviors.get(bid) or by_id.get(bid) or (by_position[j] if j < len(by_position) else None)
        if behavior is None:
            raise ValueError(f"{path}: behavior {bid!r} is in no behaviours file and past the harmbench set")
        for k, test in enumerate(tests if isinstance(tests, list) else [tests]):
            if not isinstance(test, str):  # never str() a dict or list into an attack prompt
                raise ValueError(f"{path}: behavior {bid!r} test case {k} is {describe_value(test)}, not text")
            out.append(EvalPrompt("harmbench", f"{attack}-{bid}-{k}", user_messages(str(test), system_prompt), "safety", behavior=behavior,
                                  attack=attack, extra={"behavior_id": bid}))
    return out


def load_behaviors(path: str | None) -> dict[str, str]:
    if not path:
        return {}
    df = read_table(path)
    require_columns(df, ["BehaviorID", "Behavior"], path)
    check_text_column(df, "Behavior", path)
    return dict(zip(df["BehaviorID"].astype(str), df["Behavior"].astype(str)))


def collect(eval_dir: str | None, eval_files: list[str], attacks: dict[str, str], behaviors_file: str | None,
            limit: int | None = None) -> list[EvalPrompt]:
    files = list(eval_files)
    if eval_dir:
        files += sorted(os.path.join(eval_dir, f) for f in os.listdir(eval_dir)
                        if f.endswith(".parquet") and f[: -len(".parquet")] in SUITES)
    if not files and not attacks:
        raise ValueError("nothing to evaluate: give --eval-dir, --eval-file or --attack")
    prompts: list[EvalPrompt] = []
    for path in files:
        prompts += load_eval_set(path, limit=limit)
    direct = [p for p in prompts if p.dataset == "harmbench"]
    behaviors = load_behaviors(behaviors_file)
    for attack, path in attacks.items():
        prompts += load_attack_file(path, attack, behaviors, direct)[: limit * 4 if limit else None]
    return prompts


def to_frame(prompts: list[EvalPrompt]) -> pd.DataFrame:
    return pd.DataFrame([p.__dict__ for p in prompts])
