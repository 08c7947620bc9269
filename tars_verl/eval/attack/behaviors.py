"""HarmBench's behaviours (``harmbench_behaviors_text_all.csv``) and optimizer targets (``harmbench_targets_text.json``)
as :class:`~tars_verl.eval.attack.base.Behavior` objects.

The behaviours file has HarmBench's columns: ``BehaviorID`` and ``Behavior`` (required), ``ContextString``,
``FunctionalCategory``, ``SemanticCategory``, ``Tags``. Every problem (a missing column, an empty or duplicate
BehaviorID, an empty behaviour, a non-text cell) is an error naming the file, the column and the rows (counted
from 0, header not counted).

The targets (``"Sure, here's ..."`` per BehaviorID, what GCG, AutoDAN and PAIR steer the model towards) are read
from HarmBench's repository at run time (cached) or from a file the user names; a behaviour without one is an
error at start-up that names its BehaviorID.
"""

from __future__ import annotations

import json
import os

from tars_verl.data.files import check_text_column, read_table, require_columns
from tars_verl.eval.attack.base import Behavior
from tars_verl.eval.attack.published import is_url, read_published, read_text

TARGETS_PATH = "data/optimizer_targets/harmbench_targets_text.json"
OPTIONAL_COLUMNS = {
    "ContextString": "context",
    "FunctionalCategory": "functional_category",
    "SemanticCategory": "semantic_category",
    "Tags": "tags",
}


def load_behaviors(path: str) -> list[Behavior]:
    """Every row of a HarmBench behaviours file, in file order."""
    df = read_table(path)
    require_columns(df, ["BehaviorID", "Behavior"], path)
    for column in ["BehaviorID", "Behavior", *[c for c in OPTIONAL_COLUMNS if c in df.columns]]:
        check_text_column(df, column, path, allow_null=column in OPTIONAL_COLUMNS)
    ids = [str(v).strip() for v in df["BehaviorID"]]
    empty = [i for i, v in enumerate(ids) if not v]
    if empty:
        raise ValueError(f"{path}: column 'BehaviorID' is empty in row(s) {empty[:10]} (rows counted from 0)")
    seen: dict[str, int] = {}
    dups = []
    for i, bid in enumerate(ids):
        if bid in seen:
            dups.append(f"{bid!r} (rows {seen[bid]} and {i})")
        seen.setdefault(bid, i)
    if dups:
        raise ValueError(f"{path}: column 'BehaviorID' repeats {len(dups)} id(s): {', '.join(dups[:10])}")
    blank = [ids[i] for i, v in enumerate(df["Behavior"]) if not str(v).strip()]
    if blank:
        raise ValueError(f"{path}: column 'Behavior' is empty for BehaviorID(s) {blank[:10]}")
    out = []
    for i, row in enumerate(df.to_dict("records")):
        extra = {
            field: ("" if row.get(column) is None else str(row.get(column)))
            for column, field in OPTIONAL_COLUMNS.items()
        }
        out.append(Behavior(ids[i], str(row["Behavior"]), **extra))
    return out


def load_targets(source: str | None = None, cache_dir: str | None = None) -> tuple[dict[str, str], str]:
    """``{BehaviorID: target}`` from a JSON file or URL, or HarmBench's ``harmbench_targets_text.json`` when
    ``source`` is None; returns it with the place it was read from."""
    hint = (
        "download HarmBench's data/optimizer_targets/harmbench_targets_text.json and pass it with --targets FILE "
        "(or point $TARS_HARMBENCH_URL at a copy of HarmBench's repository)"
    )
    if source and (is_url(source) or os.path.isfile(source)):
        where = source
        text = read_text(source, "HarmBench optimizer targets", hint, cache_dir)
    elif source:
        raise FileNotFoundError(f"--targets {source}: no such file; {hint}")
    else:
        from tars_verl.eval.harmbench import HARMBENCH_BASE_URL

        where = f"{HARMBENCH_BASE_URL}/{TARGETS_PATH}"
        text = read_published(None, TARGETS_PATH, "HarmBench optimizer targets", hint, cache_dir)
    try:
        targets = json.loads(text)
    except ValueError as err:
        raise ValueError(f"{where}: not valid JSON ({err})") from err
    if not isinstance(targets, dict):
        raise ValueError(f"{where}: expected a JSON object {{BehaviorID: target string}}")
    bad = [k for k, v in targets.items() if not isinstance(v, str) or not v.strip()]
    if bad:
        raise ValueError(f"{where}: the target of BehaviorID(s) {bad[:10]} is not a non-empty string")
    return targets, where


def with_targets(behaviors: list[Behavior], targets: dict[str, str], where: str) -> list[Behavior]:
    """The behaviours with their target strings; any behaviour without one is an error naming its BehaviorID."""
    missing = [b.behavior_id for b in behaviors if b.behavior_id not in targets]
    if missing:
        raise ValueError(
            f"{where}: no target string for {len(missing)} BehaviorID(s): {missing[:20]}"
            f"{' ...' if len(missing) > 20 else ''}. This method needs one per behaviour (HarmBench's "
            "harmbench_targets_text.json covers its own behaviours); add them to a targets JSON and pass --targets."
        )
    return [
        Behavior(
            b.behavior_id,
            b.behavior,
            b.context,
            b.functional_category,
            b.semantic_category,
            b.tags,
            targets[b.behavior_id],
        )
        for b in behaviors
    ]
