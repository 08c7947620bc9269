"""Import the TARS authors' released RL data (danielkty/tars ``data/``) into this project's verl schema.

    python data_prep/import_tars_release.py --train train_lambda_0.5.parquet --val test.parquet \\
        --out data/tars_release \\
        [--match ultrafeedback=uf_train_prefs.parquet --match orbench=or-bench-80k.csv] [--no-position] \\
        [--unresolved error|harmless|ambiguous]

The released files have verl's columns but not what the ``tars`` reward manager needs:
``data_source`` is ``""`` in the training files, and the prompt type lives in ``ability``:
``wildjailbreak`` / ``rainbow`` / ``aegis`` for harmful prompts and ``refusal`` for harmless
(UltraFeedback) and ambiguous (OR-Bench) prompts alike. ``test.parquet`` holds the 60 StrongREJECT-small
prompts (``data_source="custom"``, ``ability`` = the StrongREJECT category).

Each output row gets ``data_source`` = its source name (never empty), ``reward_model.ground_truth`` and
``extra_info.prompt_type`` = its type, and ``extra_info.{source, index, source_index, category, split,
think_prefilled, release_ability, release_split, type_evidence, reference_response}`` (``source_index`` is
the authors' ``extra_info.index``; ``reference_response`` their ``reward_model.ground_truth``, the
WildJailbreak completion where they kept one). Prompts are kept exactly as released (no filtering: the
stats count the ones over 1000 characters that the authors' length filter let through).

Harmless vs ambiguous for ``refusal`` rows, in this order of evidence (``type_evidence``):

1. ``match:<source>``: the prompt (normalised) is found in the UltraFeedback (``--match ultrafeedback``)
   or OR-Bench 80k (``--match orbench``) copy you pass (NAME=PATH for a local copy, NAME alone for the
   hub). A prompt found in both is not decided by matching.
2. ``position``: the authors' script writes harmful rows, then the UltraFeedback rows, then as many
   OR-Bench rows, without shuffling (``scripts/data/create_safety_dataset.py``); when the file has that
   layout (every ``refusal`` row after every harmful row, an even number of them) the first half is
   harmless and the second ambiguous. Checked against ``match`` evidence when both exist (the count of
   disagreements is in the stats). ``--no-position`` turns this off.
3. ``unresolved``: nothing above decides the row. By default that is an error; ``--unresolved harmless``
   (or ``ambiguous``) imports such rows with that type, ``data_source=tars_release_refusal`` and
   ``type_evidence=unresolved``, counted in the stats. In the paper's ``decoupled`` reward both types get
   the same helpfulness reward, so the choice changes only per-type metrics (and ``mode=weighted``).

Writes ``train.parquet``, ``val.parquet`` (with ``--val``) and ``stats.json`` into ``--out`` after every row has
been checked, as one folder that replaces the old one whole (:func:`tars_verl.data.files.write_folder`): a failure
leaves the old folder as it was, and a rerun without ``--val`` leaves no ``val.parquet`` of an earlier run. ``--out``
holds this command's files only (any other file in it is an error, nothing is deleted).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
from typing import Any

import numpy as np
import pandas as pd

from tars_verl.chat import chat_messages, last_user_text
from tars_verl.data.files import read_table, require_columns, write_folder
from tars_verl.data.sources import load_source
from tars_verl.data.text import normalise
from tars_verl.data.verl_rows import VERL_RL_COLUMNS, verl_rl_row
from tars_verl.redaction import entry_point

logger = logging.getLogger(__name__)

# The authors' `ability` for harmful rows -> this project's source names.
HARMFUL_ABILITIES = {"wildjailbreak": "wildjailbreak", "rainbow": "rainbow_teaming", "aegis": "aegis2"}
REFUSAL_ABILITY = "refusal"
# StrongREJECT's six categories (test.parquet's `ability`), compared case-insensitively.
STRONGREJECT_CATEGORIES = (
    "disinformation and deception",
    "hate, harassment and discrimination",
    "illegal goods and services",
    "non-violent crimes",
    "sexual content",
    "violence",
)
MATCH_SOURCES = {"ultrafeedback": "harmless", "orbench": "ambiguous"}
UNRESOLVED_SOURCE = "tars_release_refusal"
UNRESOLVED_CHOICES = ("error", "harmless", "ambiguous")
AUTHORS_MAX_CHARS = 1000
OUTPUT_FILES = ("train.parquet", "val.parquet", "stats.json")


def _user_text(prompt: Any, where: str) -> tuple[list[dict[str, str]], str]:
    """The released chat messages as plain dicts, and the last user turn's text."""
    messages = chat_messages(prompt, f"{where}: column 'prompt'")
    text = last_user_text(messages, f"{where}: column 'prompt'")
    if not text.strip():
        raise ValueError(f"{where}: column 'prompt': the last user turn is empty")
    return messages, text


def _source_index(extra_info: Any, row: int, where: str) -> int:
    """The authors' ``extra_info.index`` as an integer (the row number when absent); 3.7, "3" or true is an error,
    never silently truncated."""
    value = _field(extra_info, "index", None)
    if value is None or (isinstance(value, float) and value != value):
        return row
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return int(value)
    raise ValueError(f"{where}: column 'extra_info.index' is {value!r} ({type(value).__name__}), not an integer")


def _field(value: Any, key: str, default: Any = None) -> Any:
    return value.get(key, default) if isinstance(value, dict) else default


def read_release(path: str) -> pd.DataFrame:
    """One released parquet, checked: columns, messages, and a known ``ability`` on every row."""
    df = read_table(path)
    require_columns(df, VERL_RL_COLUMNS, f"TARS release file {path}")
    rows = []
    for i, r in enumerate(df.itertuples(index=False)):
        where = f"{path} row {i}"
        messages, text = _user_text(r.prompt, where)
        ability = str(r.ability).strip() if r.ability is not None else ""
        key = ability.lower()
        if key in HARMFUL_ABILITIES:
            kind, source, category = "harmful", HARMFUL_ABILITIES[key], ""
        elif key == REFUSAL_ABILITY:
            kind, source, category = "refusal", "", ""
        elif key in STRONGREJECT_CATEGORIES:
            kind, source, category = "harmful", "strongreject_small", ability
        else:
            raise ValueError(
                f"{where}: column 'ability' is {ability!r}; expected one of "
                f"{sorted(HARMFUL_ABILITIES) + [REFUSAL_ABILITY]} or a StrongREJECT category "
                f"{list(STRONGREJECT_CATEGORIES)}"
            )
        rows.append(
            {
                "row": i,
                "messages": messages,
                "text": text,
                "ability": ability,
                "kind": kind,
                "source": source,
                "category": category,
                "source_index": _source_index(r.extra_info, i, where),
                "release_split": str(_field(r.extra_info, "split", "") or ""),
                "release_data_source": str(r.data_source or ""),
                "reference": str(_field(r.reward_model, "ground_truth", "") or ""),
            }
        )
    if not rows:
        raise ValueError(f"TARS release file {path} has no rows")
    out = pd.DataFrame(rows)
    out.attrs["path"] = path
    return out


def load_match_sets(specs: dict[str, str | None]) -> dict[str, set[str]]:
    """Normalised prompts of each ``--match`` source (a local copy, or the hub when the path is None)."""
    sets = {}
    for name, path in specs.items():
        if name not in MATCH_SOURCES:
            raise ValueError(f"--match {name}: unknown; choose from {sorted(MATCH_SOURCES)} (NAME=PATH or NAME)")
        sets[name] = set(load_source(name, path)["text"].map(normalise))
    return sets


def position_layout(rows: pd.DataFrame) -> tuple[np.ndarray | None, str]:
    """Types by the authors' file layout, or None and the reason the file does not have it."""
    refusal = np.flatnonzero(rows["kind"].to_numpy() == "refusal")
    harmful = np.flatnonzero(rows["kind"].to_numpy() == "harmful")
    if len(refusal) == 0:
        return None, "no refusal rows"
    if len(harmful) and harmful.max() > refusal.min():
        return None, "refusal rows are not all after the harmful rows"
    if len(refusal) % 2:
        return None, f"odd number of refusal rows ({len(refusal)})"
    types = np.array(["harmless"] * (len(refusal) // 2) + ["ambiguous"] * (len(refusal) // 2), dtype=object)
    return types, "refusal rows form one block after the harmful rows: first half UltraFeedback, second OR-Bench"


def resolve_refusal_types(
    rows: pd.DataFrame, match_sets: dict[str, set[str]], use_position: bool, unresolved: str
) -> tuple[pd.DataFrame, dict]:
    """Fill ``prompt_type`` / ``type_evidence`` / ``source`` of every row; stats of how refusal rows were decided."""
    rows = rows.copy()
    rows["prompt_type"] = np.where(rows["kind"] == "harmful", "harmful", "")
    rows["type_evidence"] = np.where(rows["kind"] == "harmful", "ability", "")
    is_ref = (rows["kind"] == "refusal").to_numpy()
    stats: dict[str, Any] = {"refusal_rows": int(is_ref.sum()), "matched": {}, "in_several_match_sources": 0}
    if not is_ref.any():
        return rows, stats
    norm = rows.loc[is_ref, "text"].map(normalise)
    hits = {name: norm.isin(s).to_numpy() for name, s in match_sets.items()}
    n_hits = sum(hits.values()) if hits else np.zeros(int(is_ref.sum()), dtype=int)
    ref_idx = np.flatnonzero(is_ref)
    for name, hit in hits.items():
        only = hit & (n_hits == 1)
        stats["matched"][name] = int(only.sum())
        rows.loc[ref_idx[only], "prompt_type"] = MATCH_SOURCES[name]
        rows.loc[ref_idx[only], "type_evidence"] = f"match:{name}"
        rows.loc[ref_idx[only], "source"] = name
    stats["in_several_match_sources"] = int((np.asarray(n_hits) > 1).sum())
    if use_position:
        by_pos, why = position_layout(rows)
        stats["position"] = {"usable": by_pos is not None, "why": why}
        if by_pos is not None:
            matched = rows.loc[ref_idx, "type_evidence"].str.startswith("match:").to_numpy()
            disagree = matched & (rows.loc[ref_idx, "prompt_type"].to_numpy() != by_pos)
            stats["position"]["checked_against_match"] = int(matched.sum())
            stats["position"]["disagreements"] = int(disagree.sum())
            if disagree.any():
                logger.warning(
                    "%d refusal rows: the position rule disagrees with the matched source (the match "
                    "is kept); the file may not have the authors' layout",
                    int(disagree.sum()),
                )
            todo = ~matched
            rows.loc[ref_idx[todo], "prompt_type"] = by_pos[todo]
            rows.loc[ref_idx[todo], "type_evidence"] = "position"
            rows.loc[ref_idx[todo], "source"] = np.where(by_pos[todo] == "harmless", "ultrafeedback", "orbench")
    else:
        stats["position"] = {"usable": False, "why": "--no-position"}
    left = is_ref & (rows["prompt_type"] == "").to_numpy()
    stats["unresolved"] = int(left.sum())
    stats["unresolved_as"] = unresolved if left.any() else None
    if left.any():
        if unresolved == "error":
            raise ValueError(
                f"{rows.attrs.get('path', 'release file')}: {int(left.sum())} 'refusal' rows could not be told "
                f"harmless or ambiguous (first at row {int(np.flatnonzero(left)[0])}; position rule: "
                f"{stats['position']['why']}). Pass the sources to match against (--match ultrafeedback=PATH "
                "--match orbench=PATH, or the names alone for the hub), or label them explicitly with "
                "--unresolved harmless|ambiguous (counted in stats.json as unresolved)."
            )
        rows.loc[left, "prompt_type"] = unresolved
        rows.loc[left, "type_evidence"] = "unresolved"
        rows.loc[left, "source"] = UNRESOLVED_SOURCE
    return rows, stats


def to_verl_release_rows(rows: pd.DataFrame, split: str) -> pd.DataFrame:
    records = [
        verl_rl_row(
            source=r.source,
            messages=r.messages,
            prompt_type=r.prompt_type,
            index=i,
            source_index=r.source_index,
            category=r.category,
            split=split,
            think_prefilled=False,
            release_ability=r.ability,
            release_split=r.release_split,
            type_evidence=r.type_evidence,
            reference_response=r.reference,
        )
        for i, r in enumerate(rows.itertuples(index=False))
    ]
    df = pd.DataFrame.from_records(records, columns=VERL_RL_COLUMNS)
    if (df["data_source"] == "").any():  # every branch above sets one; guard the invariant
        raise AssertionError("an imported row has an empty data_source")
    return df


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_stats(path: str, rows: pd.DataFrame, resolution: dict) -> dict:
    n = len(rows)
    harmful = int((rows["prompt_type"] == "harmful").sum())
    return {
        "file": path,
        "sha256": _sha256(path),
        "rows": n,
        "harmful_share": round(harmful / n, 4),
        "by_type": rows["prompt_type"].value_counts().sort_index().to_dict(),
        "by_source": rows.groupby(["prompt_type", "source"]).size().rename("n").reset_index().to_dict("records"),
        "by_release_ability": rows["ability"].value_counts().sort_index().to_dict(),
        "type_evidence": rows["type_evidence"].value_counts().sort_index().to_dict(),
        "refusal_resolution": resolution,
        f"over_{AUTHORS_MAX_CHARS}_chars": int((rows["text"].str.len() >= AUTHORS_MAX_CHARS).sum()),
        "duplicate_prompts": int(rows["text"].map(normalise).duplicated().sum()),
    }


def import_release(
    train: str,
    val: str | None = None,
    match: dict[str, str | None] | None = None,
    use_position: bool = True,
    unresolved: str = "error",
) -> dict[str, tuple[pd.DataFrame, dict]]:
    """{"train": (rows, stats), "val": (rows, stats)}; nothing is written."""
    if unresolved not in UNRESOLVED_CHOICES:
        raise ValueError(f"--unresolved must be one of {UNRESOLVED_CHOICES}, got {unresolved!r}")
    match_sets = load_match_sets(match or {})
    out = {}
    for split, path in (("train", train), ("val", val)):
        if path is None:
            continue
        rows = read_release(path)
        rows, resolution = resolve_refusal_types(rows, match_sets, use_position, unresolved)
        out[split] = (to_verl_release_rows(rows, split), file_stats(path, rows, resolution))
    return out


@entry_point
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", required=True, help="a released train_lambda_<x>.parquet")
    ap.add_argument("--val", help="the released test.parquet (StrongREJECT-small), or another release file")
    ap.add_argument("--out", required=True, help="output folder (train.parquet, val.parquet, stats.json)")
    ap.add_argument(
        "--match",
        action="append",
        default=[],
        help="ultrafeedback[=PATH] or orbench[=PATH]: tell "
        "harmless from ambiguous 'refusal' rows by finding the prompt in that source (repeatable)",
    )
    ap.add_argument("--no-position", action="store_true", help="do not use the authors' row order as evidence")
    ap.add_argument(
        "--unresolved",
        default="error",
        choices=UNRESOLVED_CHOICES,
        help="what to do with 'refusal' rows no evidence decides (default: stop with an error)",
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    match = {}
    for item in args.match:
        name, _, path = item.partition("=")
        match[name] = path or None
    result = import_release(args.train, args.val, match, not args.no_position, args.unresolved)
    stats = {
        "origin": "TARS authors' release (github.com/danielkty/tars, data/)",
        "match_sources": match,
        "position_rule": not args.no_position,
        "unresolved_policy": args.unresolved,
        **{split: s for split, (_, s) in result.items()},
    }
    # One folder, replaced whole: never a new train.parquet beside an old val.parquet.
    write_folder(
        args.out,
        {**{f"{split}.parquet": df for split, (df, _) in result.items()}, "stats.json": stats},
        owned=OUTPUT_FILES,
    )
    for split, (df, s) in result.items():
        print(f"{split}: {len(df)} rows from {s['file']}  by type {s['by_type']}  evidence {s['type_evidence']}")
    print(f"wrote {', '.join(f'{k}.parquet' for k in result)} and stats.json to {args.out}")


if __name__ == "__main__":
    main()
