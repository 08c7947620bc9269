"""Evaluation prompts: the eval parquet files from ``data_prep/build_eval_sets.py`` plus attack files.

Every prompt is an :class:`EvalPrompt` with the ``suite`` it counts for:

- ``safety``: HarmBench / StrongREJECT behaviours, directly (``attack="direct"``) or as attack prompts
  (``gcg``, ``pair``, ``autodan``, ``pap``: HarmBench test-case files, e.g. from ``python -m tars_verl.eval.attack``).
  The judge sees the original ``behavior``, never the attack prompt.
- ``overrefusal``: XSTest safe prompts and the non-toxic WildChat sample.
- ``adaptive``: Sorry-Bench, with its category groups.

HarmBench test-case files are JSON ``{behavior_id: [test case, ...]}``. Each test case is paired with
its behaviour by ``BehaviorID`` only: from a HarmBench behaviours file (``--behaviors``: csv/jsonl with
``BehaviorID``, ``Behavior``, for contextual behaviours ``ContextString``, and ``Tags`` (copyright
behaviours are hash-checked by their ``book`` / ``lyrics`` tag); HarmBench's
``harmbench_behaviors_text_all.csv``) or from the harmbench eval set when it was built from that file.
IDs found in neither are an error that names them; nothing is paired by position.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from tars_verl.chat import chat_messages, last_user_text
from tars_verl.data.files import check_text_column, describe_value, read_json_file, read_table, require_columns
from tars_verl.data.text import user_messages

SUITES = {
    "harmbench": "safety",
    "strongreject": "safety",
    "strongreject_small": "safety",
    "xstest_safe": "overrefusal",
    "wildchat_nontoxic": "overrefusal",
    "sorry_bench": "adaptive",
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
    # HarmBench: the behaviour's context (contextual behaviours; judged with the contextual prompt).
    context: str = ""
    extra: dict = field(default_factory=dict)


def _text(value) -> str:
    return "" if value is None or (isinstance(value, float) and value != value) else str(value)


def _check_limit(limit: int | None) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a whole number >= 1 (or None for every prompt), got {limit!r}")


def load_eval_set(path: str, name: str | None = None, limit: int | None = None) -> list[EvalPrompt]:
    """The prompts of one eval parquet (``limit``: the first N). The ``prompt`` column holds chat messages (content
    parts are joined into text) or plain text (one user turn); anything else is an error naming the file and row."""
    _check_limit(limit)
    name = name or os.path.splitext(os.path.basename(path))[0]
    if name not in SUITES:
        raise ValueError(f"{path}: unknown evaluation set {name!r}; known: {sorted(SUITES)}")
    df = read_table(path)
    require_columns(df, ["prompt"], path)
    out = []
    for i, row in enumerate(df.head(limit).to_dict("records") if limit else df.to_dict("records")):
        where = f"{path}: column 'prompt' row {i}"
        messages = chat_messages(row["prompt"], where, allow_text=True)
        user = last_user_text(messages, where)
        # HarmBench rows carry the bare behaviour (the user turn may hold its context too).
        behavior = _text(row.get("behavior")) or user
        extra = {
            k: _text(row.get(k))
            for k in ("behavior_id", "functional_category", "tags", "sorry_release")
            if _text(row.get(k))
        }
        out.append(
            EvalPrompt(
                name,
                f"{name}-{i}",
                messages,
                SUITES[name],
                behavior=behavior,
                category=_text(row.get("category")),
                category_group=_text(row.get("category_group")),
                context=_text(row.get("context")),
                extra=extra,
            )
        )
    return out


def load_attack_file(path: str, attack: str, behaviors: dict[str, dict]) -> list[EvalPrompt]:
    """Attack prompts from a HarmBench-style test-case JSON, each tied to its behaviour by ``BehaviorID``."""
    cases = read_json_file(path, f"--attack {attack} test-case file")
    if not isinstance(cases, dict):
        raise ValueError(f"{path}: expected a JSON object {{behavior_id: [test cases]}}")
    missing = sorted(str(bid) for bid in cases if str(bid) not in behaviors)
    if missing:
        raise ValueError(
            f"{path}: {len(missing)} BehaviorID(s) not found in the behaviours file (--behaviors) nor in the "
            f"harmbench eval set: {missing[:20]}{' ...' if len(missing) > 20 else ''}. Pass HarmBench's behaviours "
            f"file (BehaviorID, Behavior, ContextString) that these test cases were made from."
        )
    out = []
    for bid, tests in cases.items():
        b = behaviors[str(bid)]
        for k, test in enumerate(tests if isinstance(tests, list) else [tests]):
            if not isinstance(test, str):  # never str() a dict or list into an attack prompt
                raise ValueError(f"{path}: behavior {bid!r} test case {k} is {describe_value(test)}, not text")
            out.append(
                EvalPrompt(
                    "harmbench",
                    f"{attack}-{bid}-{k}",
                    user_messages(test),
                    "safety",
                    behavior=b["behavior"],
                    attack=attack,
                    context=b.get("context", ""),
                    extra={
                        "behavior_id": str(bid),
                        "functional_category": b.get("functional_category", ""),
                        "tags": b.get("tags", ""),
                    },
                )
            )
    return out


def load_behaviors(path: str | None) -> dict[str, dict]:
    """HarmBench behaviours file -> {BehaviorID: {behavior, context, functional_category, tags}}."""
    if not path:
        return {}
    df = read_table(path)
    require_columns(df, ["BehaviorID", "Behavior"], path)
    check_text_column(df, "Behavior", path)
    out = {}
    for row in df.to_dict("records"):
        out[_text(row["BehaviorID"])] = {
            "behavior": _text(row["Behavior"]),
            "context": _text(row.get("ContextString")),
            "functional_category": _text(row.get("FunctionalCategory")),
            "tags": _text(row.get("Tags")),
        }
    return out


def collect(
    eval_dir: str | None,
    eval_files: list[str],
    attacks: dict[str, str],
    behaviors_file: str | None,
    limit: int | None = None,
    allow_empty: bool = False,
) -> list[EvalPrompt]:
    _check_limit(limit)
    files = list(eval_files)
    if eval_dir:
        files += sorted(
            os.path.join(eval_dir, f)
            for f in os.listdir(eval_dir)
            if f.endswith(".parquet") and f[: -len(".parquet")] in SUITES
        )
    if not files and not attacks:
        if allow_empty:
            return []
        raise ValueError("nothing to evaluate: give --eval-dir, --eval-file or --attack")
    prompts: list[EvalPrompt] = []
    for path in files:
        prompts += load_eval_set(path, limit=limit)
    # Behaviours of the harmbench eval set, by BehaviorID and by the set's own prompt id.
    behaviors = {
        key: {
            "behavior": p.behavior,
            "context": p.context,
            "functional_category": p.extra.get("functional_category", ""),
            "tags": p.extra.get("tags", ""),
        }
        for p in prompts
        if p.dataset == "harmbench"
        for key in filter(None, (p.extra.get("behavior_id"), p.prompt_id))
    }
    behaviors.update(load_behaviors(behaviors_file))
    for attack, path in attacks.items():
        prompts += load_attack_file(path, attack, behaviors)[: limit * 4 if limit else None]
    return prompts
