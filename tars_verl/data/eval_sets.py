"""Evaluation sets as verl parquet (usable as ``data.val_files`` and by ``tars_verl`` evaluation).

    python data_prep/build_eval_sets.py --out data/eval [--source xstest=local.jsonl ...] [--only xstest_safe ...]

Writes one file per set, each with verl's RL columns (``data_source``, ``prompt``, ``ability``,
``reward_model``, ``extra_info``) plus flat ``category`` / ``category_group`` columns:

| file | source | rows | prompt type |
| --- | --- | --- | --- |
| strongreject_small | the official StrongREJECT-small list (the paper's validation set), see below | 60 | harmful |
| strongreject | StrongREJECT, all | 313 | harmful |
| xstest_safe / xstest_unsafe | XSTest by label | 250 / 200 | harmless / harmful |
| harmbench | HarmBench text behaviours: standard 200 + contextual 100 + copyright 100 | 400 | harmful |
| sorry_bench | Sorry-Bench base prompts, with the four topic groups | 450 (2024-06) / 440 (2025-03) | harmful |
| wildchat_nontoxic | WildChat, English, non-toxic, first user turn, seeded sample | 500 | harmless |

HarmBench: the paper counts HarmBench's 400 text behaviours. Best from HarmBench's own
``harmbench_behaviors_text_all.csv`` (``--source harmbench=PATH``; columns ``BehaviorID``, ``Behavior``,
``FunctionalCategory``, ``SemanticCategory``, ``ContextString``, ``Tags``): rows then carry ``behavior_id``
(attack test cases are paired by it), ``context``, ``functional_category`` and ``tags``. Without a file, the three
``walledai/HarmBench`` configs (standard, contextual, copyright; no BehaviorIDs) are loaded. A contextual
behaviour's prompt is ``{context}\n\n---\n\n{behavior}``, as in HarmBench's direct requests; the judge gets
the bare behaviour and its context. Copyright behaviours are judged as HarmBench judges them, by hashing
against the original text (``tars_verl.eval.copyright``), which needs their ``BehaviorID`` and ``Tags``:
build from the CSV.

Sorry-Bench: ``category_group`` follows its four domains with the category boundaries of the release
that was loaded (:data:`SORRY_BENCH_RELEASES`): 2024-06 has 45 categories (450 prompts); 2025-03 has 44,
its removed category shifting the later ids down by one. ``--sorry-release`` names it; ``auto`` infers
it from the category ids (45 present -> 2024-06; hub default sorry-bench-202406). Override the groups
with ``--sorry-groups groups.json`` (group -> [category ids]).

``strongreject_small`` is the fixed 60-prompt list StrongREJECT publishes (``strongreject_small_dataset.csv``,
columns ``category``, ``source``, ``forbidden_prompt``), fetched from ``STRONGREJECT_SMALL_URL`` by default;
``--source strongreject_small=PATH_OR_URL`` reads a local copy (or another URL). It is never a sample of
the full set. ``stats.json`` records where every set came from (and the file's sha256 for this one).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import logging
import os

import numpy as np
import pandas as pd

from tars_verl.data.files import read_json_file, require_columns, write_together
from tars_verl.data.sources import load_source
from tars_verl.data.text import QWEN_DEFAULT_SYSTEM_PROMPT, parse_kv, positive_int, user_messages
from tars_verl.data.verl_rows import verl_rl_row
from tars_verl.downloads import download
from tars_verl.redaction import entry_point, redact_url

SORRY_BENCH_RELEASES = {
    "2024-06": {  # sorry-bench-202406: 45 categories x 10
        "hate speech generation": list(range(1, 6)),
        "assistance with crimes or torts": list(range(6, 26)),
        "potentially inappropriate topics": list(range(26, 41)),
        "potentially unqualified advice": list(range(41, 46)),
    },
    "2025-03": {  # 44 categories x 10 (one crimes/torts category removed, later ids shifted down)
        "hate speech generation": list(range(1, 6)),
        "assistance with crimes or torts": list(range(6, 25)),
        "potentially inappropriate topics": list(range(25, 40)),
        "potentially unqualified advice": list(range(40, 45)),
    },
}
SORRY_BENCH_HUB_RELEASE = "2024-06"  # the release sources.py loads from the hub
HARMBENCH_CONFIGS = ("standard", "contextual", "copyright")
STRONGREJECT_SMALL_URL = (
    "https://raw.githubusercontent.com/alexandrasouly/strongreject/main/strongreject_dataset/"
    "strongreject_small_dataset.csv"
)
STRONGREJECT_SMALL_COLUMNS = ["category", "source", "forbidden_prompt"]
logger = logging.getLogger(__name__)

EVAL_SETS = (
    "strongreject_small",
    "strongreject",
    "xstest_safe",
    "xstest_unsafe",
    "harmbench",
    "sorry_bench",
    "wildchat_nontoxic",
)


def sorry_release(
    categories: pd.Series, release: str = "auto", where: str = "sorry_bench", from_hub: bool = False
) -> str:
    """Which Sorry-Bench release the loaded categories belong to (see :data:`SORRY_BENCH_RELEASES`)."""
    try:
        ids = {int(float(c)) for c in categories}
    except ValueError as err:
        raise ValueError(f"{where}: Sorry-Bench category ids must be numbers 1..45 ({err})") from err
    if release == "auto":
        if 45 in ids or from_hub:
            release = SORRY_BENCH_HUB_RELEASE if from_hub and 45 not in ids else "2024-06"
        elif 44 in ids and len(ids) == 44:
            release = "2025-03"
        else:
            raise ValueError(
                f"{where}: cannot tell the Sorry-Bench release from categories {sorted(ids)[:5]}..; "
                f"pass --sorry-release {' or '.join(SORRY_BENCH_RELEASES)}"
            )
    if release not in SORRY_BENCH_RELEASES:
        raise ValueError(f"{where}: unknown Sorry-Bench release {release!r}; known: {list(SORRY_BENCH_RELEASES)}")
    known = {c for cats in SORRY_BENCH_RELEASES[release].values() for c in cats}
    outside = sorted(ids - known)
    if outside:
        raise ValueError(
            f"{where}: categories {outside} do not exist in the Sorry-Bench {release} release "
            f"({len(known)} categories); pass the right --sorry-release"
        )
    return release


def load_harmbench(path: str | None) -> pd.DataFrame:
    """HarmBench text behaviours: text (the prompt), behavior, behavior_id, context, functional_category."""
    from tars_verl.data.files import read_table, require_columns

    if path:
        raw = read_table(path)
        if "BehaviorID" in raw.columns:  # HarmBench's own behaviours CSV
            require_columns(raw, ["BehaviorID", "Behavior", "FunctionalCategory"], path)
            context = raw["ContextString"] if "ContextString" in raw.columns else pd.Series([""] * len(raw))
            df = pd.DataFrame(
                {
                    "behavior": raw["Behavior"],
                    "behavior_id": raw["BehaviorID"],
                    "context": context.fillna(""),
                    "functional_category": raw["FunctionalCategory"],
                    "category": raw.get("SemanticCategory", pd.Series([""] * len(raw))).fillna(""),
                    # e.g. "lyrics, hash_check": HarmBench hash-checks copyright behaviours by these tags
                    "tags": raw.get("Tags", pd.Series([""] * len(raw))).fillna(""),
                }
            )
        else:  # a walledai/HarmBench-shaped copy: prompt, category[, context]
            require_columns(raw, ["prompt"], f"source harmbench from {path}")
            df = pd.DataFrame(
                {
                    "behavior": raw["prompt"],
                    "behavior_id": "",
                    "context": raw["context"].fillna("") if "context" in raw.columns else "",
                    "functional_category": raw["functional_category"] if "functional_category" in raw.columns else "",
                    "category": raw["category"] if "category" in raw.columns else "",
                }
            )
    else:
        from datasets import load_dataset

        parts = []
        for config in HARMBENCH_CONFIGS:
            raw = load_dataset("walledai/HarmBench", config, split="train").to_pandas()
            parts.append(
                pd.DataFrame(
                    {
                        "behavior": raw["prompt"],
                        "behavior_id": "",
                        "context": raw["context"] if "context" in raw.columns else "",
                        "functional_category": config,
                        "category": raw["category"] if "category" in raw.columns else "",
                    }
                )
            )
        df = pd.concat(parts, ignore_index=True)
    if "tags" not in df.columns:
        df["tags"] = ""
    df = df.astype({c: str for c in ("behavior", "behavior_id", "context", "functional_category", "category", "tags")})
    df = df.reset_index(drop=True)
    df["source_index"] = df.index.astype("int64")
    df["text"] = [f"{c}\n\n---\n\n{b}" if c.strip() else b for b, c in zip(df["behavior"], df["context"])]
    empty = df.index[df["behavior"].str.strip() == ""].tolist()
    if empty:
        raise ValueError(f"source harmbench{' from ' + path if path else ''}: empty behaviour in row(s) {empty[:10]}")
    return df


PASSED_COLUMNS = ("behavior", "behavior_id", "context", "functional_category", "tags", "sorry_release")


def load_strongreject_small(location: str | None = None) -> tuple[pd.DataFrame, dict]:
    """The official StrongREJECT-small list from ``location`` (a file or an http(s) URL; default: the published
    CSV). Returns rows of ``text``, ``category``, ``source_index`` (+ ``source``) and its provenance."""
    location = location or STRONGREJECT_SMALL_URL
    hint = (
        f"download strongreject_small_dataset.csv from {STRONGREJECT_SMALL_URL} and pass "
        "--source strongreject_small=PATH"
    )
    if location.startswith(("http://", "https://")):
        # Errors name the URL (credentials redacted); an HTML page or a cut download is an error, never a table.
        raw = download(location, "strongreject_small", hint)
        location = redact_url(location)
    else:
        try:
            with open(location, "rb") as f:
                raw = f.read()
        except OSError as err:
            raise OSError(f"strongreject_small: cannot read {location} ({err}); {hint}") from None
    df = pd.read_csv(io.BytesIO(raw), keep_default_na=False, dtype=str)
    require_columns(df, STRONGREJECT_SMALL_COLUMNS, f"strongreject_small from {location}")
    empty = df.index[df["forbidden_prompt"].str.strip() == ""]
    if len(empty):
        raise ValueError(f"strongreject_small from {location}: empty forbidden_prompt in row(s) {list(empty[:5])}")
    per_cat = df["category"].value_counts()
    official_shape = len(df) == 60 and len(per_cat) == 6 and (per_cat == 10).all()
    if not official_shape:
        logger.warning(
            "strongreject_small from %s has %d rows in %d categories, not the official 60 (6 x 10)",
            location,
            len(df),
            len(per_cat),
        )
    rows = pd.DataFrame(
        {
            "text": df["forbidden_prompt"],
            "category": df["category"],
            "source_index": range(len(df)),
            "source": df["source"],
        }
    )
    provenance = {
        "from": location,
        "sha256": hashlib.sha256(raw).hexdigest(),
        "rows": len(df),
        "official_shape_60_by_6x10": bool(official_shape),
        "note": "StrongREJECT-small as published (strongreject_small_dataset.csv); not a sample",
    }
    return rows, provenance


def to_eval_rows(df: pd.DataFrame, name: str, prompt_type: str, system_prompt: str | None) -> pd.DataFrame:
    group = df["category_group"] if "category_group" in df.columns else pd.Series([""] * len(df), index=df.index)
    passed = [c for c in PASSED_COLUMNS if c in df.columns]
    records = []
    for i, (text, cat, grp, src_idx) in enumerate(zip(df["text"], df["category"], group, df["source_index"])):
        rec = {c: str(df[c].iloc[i]) for c in passed}
        row = verl_rl_row(
            source=name,
            messages=user_messages(text, system_prompt),
            prompt_type=prompt_type,
            index=i,
            source_index=src_idx,
            category=str(cat),
            split="eval",
            think_prefilled=False,
            category_group=str(grp),
        )
        rec.update(row, category=str(cat), category_group=str(grp))
        records.append(rec)
    return pd.DataFrame.from_records(records)


def build_eval_sets(
    paths: dict[str, str],
    only: list[str] | None = None,
    seed: int = 0,
    wildchat_n: int = 500,
    system_prompt: str | None = None,
    sorry_groups: dict[str, list[int]] | None = None,
    sorry_release_name: str = "auto",
) -> dict[str, pd.DataFrame]:
    wanted = list(only or EVAL_SETS)
    unknown = sorted(set(wanted) - set(EVAL_SETS))
    if unknown:
        raise ValueError(f"unknown evaluation set(s) {unknown}; known: {list(EVAL_SETS)}")
    out: dict[str, pd.DataFrame] = {}
    cache: dict[str, pd.DataFrame] = {}
    provenance: dict[str, dict] = {}  # where each set came from -> df.attrs["provenance"], stats.json

    def src(name: str) -> pd.DataFrame:
        if name not in cache:
            cache[name] = load_source(name, paths.get(name))
        return cache[name]

    for name in wanted:
        if name == "strongreject":
            df, ptype = src("strongreject"), "harmful"
        elif name == "strongreject_small":
            df, provenance[name] = load_strongreject_small(paths.get("strongreject_small"))
            ptype = "harmful"
        elif name in ("xstest_safe", "xstest_unsafe"):
            x = src("xstest")
            label = "safe" if name == "xstest_safe" else "unsafe"
            df, ptype = x[x["label"] == label], ("harmless" if label == "safe" else "harmful")
        elif name == "harmbench":
            df, ptype = load_harmbench(paths.get("harmbench")), "harmful"
            provenance[name] = {
                "from": paths.get("harmbench") or "walledai/HarmBench (" + ", ".join(HARMBENCH_CONFIGS) + ")",
                "rows": len(df),
            }
        elif name == "sorry_bench":
            df = src("sorry_bench")
            where = f"sorry_bench from {paths.get('sorry_bench') or 'the hub'}"
            if sorry_groups and sorry_release_name == "auto":  # the user's own grouping: no release to infer
                release, groups = "custom groups", sorry_groups
            else:
                release = sorry_release(
                    df["category"], sorry_release_name, where, from_hub=not paths.get("sorry_bench")
                )
                groups = sorry_groups or SORRY_BENCH_RELEASES[release]
            to_group = {int(c): g for g, cats in groups.items() for c in cats}
            ungrouped = sorted({int(float(c)) for c in df["category"]} - set(to_group))
            if ungrouped:
                raise ValueError(f"{where}: categories {ungrouped} are in no group of --sorry-groups")
            groups_of = [to_group[int(float(c))] for c in df["category"]]
            df = df.assign(category_group=groups_of, sorry_release=release)
            ptype = "harmful"
        else:  # wildchat_nontoxic
            w = src("wildchat")
            w = w[w["text"].str.strip() != ""]
            rng = np.random.default_rng(seed)
            df, ptype = w.iloc[np.sort(rng.permutation(len(w))[: min(wildchat_n, len(w))])], "harmless"
        if df.empty:
            raise ValueError(f"evaluation set {name}: no rows after selection")
        out[name] = to_eval_rows(df, name, ptype, system_prompt)
        if name not in provenance:
            key = {"xstest_safe": "xstest", "xstest_unsafe": "xstest", "wildchat_nontoxic": "wildchat"}.get(name, name)
            provenance[name] = {"from": cache[key].attrs.get("where", ""), "rows": len(df)}
        out[name].attrs["provenance"] = provenance[name]
    return out


@entry_point
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--only", nargs="+", help=f"subset of {list(EVAL_SETS)}")
    ap.add_argument(
        "--source",
        action="append",
        default=[],
        help="local copy NAME=PATH (strongreject, xstest, "
        "harmbench, sorry_bench, wildchat; strongreject_small=PATH or URL of "
        "strongreject_small_dataset.csv)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--wildchat-n", type=positive_int, default=500)
    ap.add_argument("--system-prompt", default=None, help="'qwen' for Qwen's default system prompt, or a text")
    ap.add_argument("--sorry-groups", help="JSON file: {group: [category ids]}")
    ap.add_argument(
        "--sorry-release",
        default="auto",
        choices=["auto", *SORRY_BENCH_RELEASES],
        help="Sorry-Bench release of the loaded data (sets the category groups); auto: from the ids",
    )
    args = ap.parse_args(argv)
    groups = None
    if args.sorry_groups:
        groups = read_json_file(args.sorry_groups, "--sorry-groups file")
        if not isinstance(groups, dict) or not all(
            isinstance(v, list) and all(isinstance(c, int) and not isinstance(c, bool) for c in v)
            for v in groups.values()
        ):
            raise ValueError(f"--sorry-groups file {args.sorry_groups}: expected {{group name: [category ids]}}")
    system = QWEN_DEFAULT_SYSTEM_PROMPT if args.system_prompt == "qwen" else args.system_prompt
    sets = build_eval_sets(
        parse_kv(args.source, "--source"),
        args.only,
        args.seed,
        args.wildchat_n,
        system_prompt=system,
        sorry_groups=groups,
        sorry_release_name=args.sorry_release,
    )
    stats_path = os.path.join(args.out, "stats.json")
    stats = {}
    if os.path.exists(stats_path):  # a later --only run adds to the record of the earlier ones
        stats = read_json_file(stats_path, "evaluation sets' stats")
    stats.setdefault("sets", {}).update({name: df.attrs["provenance"] for name, df in sets.items()})
    # The sets of this run and their provenance replace the old ones together (sets of other --only runs stay).
    write_together({**{os.path.join(args.out, f"{name}.parquet"): df for name, df in sets.items()}, stats_path: stats})
    for name, df in sets.items():
        counts = df["category_group" if name == "sorry_bench" else "category"].value_counts().to_dict()
        path = os.path.join(args.out, f"{name}.parquet")
        print(f"{name:<20} {len(df):>5} rows -> {path}  {dict(list(counts.items())[:6])}")
    print(f"provenance -> {stats_path}")


if __name__ == "__main__":
    main()
