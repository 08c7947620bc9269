"""Evaluation sets as verl parquet (usable as ``data.val_files`` and by ``tars_verl`` evaluation).

    python data_prep/build_eval_sets.py --out data/eval [--source xstest=local.jsonl ...] [--only xstest_safe ...]

Writes one file per set, each with verl's RL columns (``data_source``, ``prompt``, ``ability``,
``reward_model``, ``extra_info``) plus flat ``category`` / ``category_group`` columns:

| file | source | rows | prompt type |
| --- | --- | --- | --- |
| strongreject_small | the official StrongREJECT-small list (the paper's validation set), see below | 60 | harmful |
| strongreject | StrongREJECT, all | 313 | harmful |
| xstest_safe / xstest_unsafe | XSTest by label | 250 / 200 | harmless / harmful |
| harmbench | HarmBench standard behaviours | 200 (400 with contextual/copyright) | harmful |
| sorry_bench | Sorry-Bench base prompts, with the four topic groups | 440 | harmful |
| wildchat_nontoxic | WildChat, English, non-toxic, first user turn, seeded sample | 500 | harmless |

``category_group`` for Sorry-Bench follows its four domains (``SORRY_BENCH_GROUPS``; override with
``--sorry-groups groups.json`` mapping group -> [category ids]).

``strongreject_small`` is the fixed 60-prompt list StrongREJECT publishes (``strongreject_small_dataset.csv``,
columns ``category``, ``source``, ``forbidden_prompt``), fetched from ``STRONGREJECT_SMALL_URL`` by default;
``--source strongreject_small=PATH_OR_URL`` reads a local copy (or another URL). It is never a sample of
the full set. ``stats.json`` records where every set came from (and the file's sha256 for this one).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import os
import urllib.request

import numpy as np
import pandas as pd

from .io import require_columns, write_json_atomic, write_parquet_atomic
from .rl_mix import QWEN_DEFAULT_SYSTEM_PROMPT, parse_kv, user_messages
from .sources import load_source

SORRY_BENCH_GROUPS = {
    "hate speech generation": list(range(1, 6)),
    "assistance with crimes or torts": list(range(6, 25)),
    "potentially inappropriate topics": list(range(25, 40)),
    "potentially unqualified advice": list(range(40, 45)),
}
STRONGREJECT_SMALL_URL = ("https://raw.githubusercontent.com/alexandrasouly/strongreject/main/strongreject_dataset/"
                          "strongreject_small_dataset.csv")
STRONGREJECT_SMALL_COLUMNS = ["category", "source", "forbidden_prompt"]
logger = logging.getLogger(__name__)

EVAL_SETS = ("strongreject_small", "strongreject", "xstest_safe", "xstest_unsafe", "harmbench", "sorry_bench",
             "wildchat_nontoxic")


def load_strongreject_small(location: str | None = None) -> tuple[pd.DataFrame, dict]:
    """The official StrongREJECT-small list from ``location`` (a file or an http(s) URL; default: the published
    CSV). Returns rows of ``text``, ``category``, ``source_index`` (+ ``source``) and its provenance."""
    location = location or STRONGREJECT_SMALL_URL
    try:
        if location.startswith(("http://", "https://")):
            with urllib.request.urlopen(location, timeout=60) as resp:  # noqa: S310 - user-chosen URL
                raw = resp.read()
        else:
            with open(location, "rb") as f:
                raw = f.read()
    except OSError as err:
        raise OSError(f"strongreject_small: cannot read {location} ({err}); download strongreject_small_dataset.csv "
                      f"from {STRONGREJECT_SMALL_URL} and pass --source strongreject_small=PATH") from None
    df = pd.read_csv(io.BytesIO(raw), keep_default_na=False, dtype=str)
    require_columns(df, STRONGREJECT_SMALL_COLUMNS, f"strongreject_small from {location}")
    empty = df.index[df["forbidden_prompt"].str.strip() == ""]
    if len(empty):
        raise ValueError(f"strongreject_small from {location}: empty forbidden_prompt in row(s) {list(empty[:5])}")
    per_cat = df["category"].value_counts()
    official_shape = len(df) == 60 and len(per_cat) == 6 and (per_cat == 10).all()
    if not official_shape:
        logger.warning("strongreject_small from %s has %d rows in %d categories, not the official 60 (6 x 10)",
                       location, len(df), len(per_cat))
    rows = pd.DataFrame({"text": df["forbidden_prompt"], "category": df["category"],
                         "source_index": range(len(df)), "source": df["source"]})
    provenance = {"from": location, "sha256": hashlib.sha256(raw).hexdigest(), "rows": len(df),
                  "official_shape_60_by_6x10": bool(official_shape),
                  "note": "StrongREJECT-small as published (strongreject_small_dataset.csv); not a sample"}
    return rows, provenance


def to_eval_rows(df: pd.DataFrame, name: str, prompt_type: str, system_prompt: str | None) -> pd.DataFrame:
    group = df["category_group"] if "category_group" in df.columns else pd.Series([""] * len(df), index=df.index)
    records = []
    for i, (text, cat, grp, src_idx) in enumerate(zip(df["text"], df["category"], group, df["source_index"])):
        records.append({
            "data_source": name,
            "prompt": user_messages(text, system_prompt),
            "ability": "safety",
            "reward_model": {"style": "tars", "ground_truth": prompt_type},
            "extra_info": {"prompt_type": prompt_type, "source": name, "index": i, "source_index": int(src_idx),
                           "category": str(cat), "category_group": str(grp), "split": "eval",
                           "think_prefilled": False},
            "category": str(cat),
            "category_group": str(grp),
        })
    return pd.DataFrame.from_records(records)


def build_eval_sets(paths: dict[str, str], only: list[str] | None = None, seed: int = 0, wildchat_n: int = 500,
                    system_prompt: str | None = None,
                    sorry_groups: dict[str, list[int]] | None = None) -> dict[str, pd.DataFrame]:
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
            df, ptype = src("harmbench"), "harmful"
        elif name == "sorry_bench":
            groups = sorry_groups or SORRY_BENCH_GROUPS
            to_group = {str(c): g for g, cats in groups.items() for c in cats}
            df = src("sorry_bench")
            df, ptype = df.assign(category_group=df["category"].map(lambda c: to_group.get(str(c), "other"))), "harmful"
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


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--only", nargs="+", help=f"subset of {list(EVAL_SETS)}")
    ap.add_argument("--source", action="append", default=[], help="local copy NAME=PATH (strongreject, xstest, "
                    "harmbench, sorry_bench, wildchat; strongreject_small=PATH or URL of "
                    "strongreject_small_dataset.csv)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--wildchat-n", type=int, default=500)
    ap.add_argument("--system-prompt", default=None, help="'qwen' for Qwen's default system prompt, or a text")
    ap.add_argument("--sorry-groups", help="JSON file: {group: [category ids]}")
    args = ap.parse_args(argv)
    groups = None
    if args.sorry_groups:
        with open(args.sorry_groups) as f:
            groups = json.load(f)
    system = QWEN_DEFAULT_SYSTEM_PROMPT if args.system_prompt == "qwen" else args.system_prompt
    sets = build_eval_sets(parse_kv(args.source, "--source"), args.only, args.seed, args.wildchat_n,
                           system_prompt=system, sorry_groups=groups)
    for name, df in sets.items():
        path = os.path.join(args.out, f"{name}.parquet")
        write_parquet_atomic(df, path)
        counts = df["category_group" if name == "sorry_bench" else "category"].value_counts().to_dict()
        print(f"{name:<20} {len(df):>5} rows -> {path}  {dict(list(counts.items())[:6])}")
    stats_path = os.path.join(args.out, "stats.json")
    stats = {}
    if os.path.exists(stats_path):  # a later --only run adds to the record of the earlier ones
        with open(stats_path) as f:
            stats = json.load(f)
    stats.setdefault("sets", {}).update({name: df.attrs["provenance"] for name, df in sets.items()})
    write_json_atomic(stats, stats_path)
    print(f"provenance -> {stats_path}")


if __name__ == "__main__":
    main()
