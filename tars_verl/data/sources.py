"""Prompt sources: each is an adapter from a hub dataset (or a local file with the same columns) to
rows of ``text`` (the user prompt), ``category`` and ``source_index`` (row number in the source).

Pass a local copy as ``--source NAME=PATH`` (jsonl, json, csv, tsv, parquet); otherwise the hub id
is loaded with ``datasets.load_dataset``. Gated datasets need ``huggingface-cli login`` and the
dataset's terms accepted on its hub page first: WildJailbreak (allenai/wildjailbreak), Aegis 2.0
(nvidia/Aegis-AI-Content-Safety-Dataset-2.0), Sorry-Bench (sorry-bench/sorry-bench-202406),
WildChat (allenai/WildChat-1M). Rainbow-Teaming archives have no hub copy: they are generated
against your SFT model, so that source is local-only; ``--source rainbow_teaming=`` takes a table
with a ``prompt`` column, or Rainbow-Teaming archive JSON files (one file, a folder of ``*.json``, or a
glob; see :func:`read_rainbow_archives`).

Example:
    >>> df = load_source("ultrafeedback", path="my_ultrafeedback.jsonl")   # doctest: +SKIP
    >>> list(df.columns)                                                    # doctest: +SKIP
    ['text', 'category', 'source_index']
"""

from __future__ import annotations

import glob
import logging
import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import pandas as pd

from tars_verl.data.files import check_text_column, read_json_file, read_table, require_columns

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceSpec:
    name: str
    prompt_type: str  # harmful | harmless | ambiguous (eval sets: the type used for validation rows)
    hub_id: str | None
    columns: tuple[str, ...]  # what the source (hub or local file) must have
    extract: Callable[[pd.DataFrame], pd.DataFrame]  # -> text, category (rows may be dropped)
    config: str | None = None
    split: str = "train"
    load_kwargs: dict = field(default_factory=dict)
    note: str = ""
    # Other names the same column has in known copies (e.g. the official StrongREJECT CSV).
    aliases: dict = field(default_factory=dict)


def _simple(text_col: str, category_col: str | None = None, keep: Callable[[pd.DataFrame], pd.Series] | None = None):
    def extract(df: pd.DataFrame) -> pd.DataFrame:
        if keep is not None:
            df = df[keep(df)]
        cat = df[category_col].astype(str) if category_col else pd.Series([""] * len(df), index=df.index)
        return pd.DataFrame({"text": df[text_col], "category": cat}, index=df.index)

    extract.text_column = text_col  # named in errors about the text
    return extract


def _wildjailbreak(df: pd.DataFrame) -> pd.DataFrame:
    df = df[df["data_type"].isin(["vanilla_harmful", "adversarial_harmful"])]
    adversarial = df["data_type"] == "adversarial_harmful"
    text = df["vanilla"].where(~adversarial, df["adversarial"])
    return pd.DataFrame({"text": text, "category": df["data_type"]}, index=df.index)


def _rainbow(df: pd.DataFrame) -> pd.DataFrame:
    # Archives (read_rainbow_archives) carry the grid position; a plain table may have risk_category.
    if "attack_style" in df.columns:
        cat = df["risk_category"].astype(str) + "/" + df["attack_style"].astype(str)
    elif "risk_category" in df.columns:
        cat = df["risk_category"].astype(str)
    else:
        cat = pd.Series([""] * len(df), index=df.index)
    return pd.DataFrame({"text": df["prompt"], "category": cat}, index=df.index)


def _aegis(df: pd.DataFrame) -> pd.DataFrame:
    keep = (df["prompt_label"].astype(str).str.lower() == "unsafe") & (
        df["prompt"].astype(str).str.strip() != "REDACTED"
    )
    df = df[keep]
    cats = df["violated_categories"].astype(str) if "violated_categories" in df.columns else ""
    return pd.DataFrame({"text": df["prompt"], "category": cats}, index=df.index)


def _wildchat(df: pd.DataFrame) -> pd.DataFrame:
    keep = (~df["toxic"].astype(bool)) & (df["language"].astype(str) == "English")
    df = df[keep]
    first_user = df["conversation"].map(
        lambda turns: next((t["content"] for t in turns if t.get("role") == "user"), "") if len(turns) else ""
    )
    return pd.DataFrame({"text": first_user, "category": ""}, index=df.index)


def _xstest(df: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {"text": df["prompt"], "category": df["type"].astype(str), "label": df["label"].astype(str).str.lower()},
        index=df.index,
    )


def _sorry_bench(df: pd.DataFrame) -> pd.DataFrame:
    if "prompt_style" in df.columns:
        df = df[df["prompt_style"].astype(str) == "base"]
    text = df["turns"].map(lambda t: t[0] if not isinstance(t, str) else t)
    return pd.DataFrame({"text": text, "category": df["category"].astype(str)}, index=df.index)


# The source column each adapter reads the prompt text from (named in errors about it).
_wildjailbreak.text_column = "vanilla/adversarial"
_aegis.text_column = "prompt"
_wildchat.text_column = "conversation (first user turn)"
_xstest.text_column = "prompt"
_sorry_bench.text_column = "turns"

SOURCES: dict[str, SourceSpec] = {
    # --- RL harmful -------------------------------------------------------------------------
    "wildjailbreak": SourceSpec(
        "wildjailbreak",
        "harmful",
        "allenai/wildjailbreak",
        ("vanilla", "adversarial", "data_type"),
        _wildjailbreak,
        config="train",
        load_kwargs={"delimiter": "\t", "keep_default_na": False},
        note="gated; vanilla_harmful + adversarial_harmful",
    ),
    "rainbow_teaming": SourceSpec(
        "rainbow_teaming",
        "harmful",
        None,
        ("prompt",),
        _rainbow,
        note="local only: archives generated against the SFT model (Rainbow-Teaming archive JSON: a file, folder "
        "or glob; or a table with columns prompt, optional risk_category)",
    ),
    "aegis2": SourceSpec(
        "aegis2",
        "harmful",
        "nvidia/Aegis-AI-Content-Safety-Dataset-2.0",
        ("prompt", "prompt_label"),
        _aegis,
        note="gated; prompt_label == unsafe, REDACTED prompts dropped",
    ),
    # --- RL harmless / ambiguous -------------------------------------------------------------
    "ultrafeedback": SourceSpec(
        "ultrafeedback",
        "harmless",
        "HuggingFaceH4/ultrafeedback_binarized",
        ("prompt",),
        _simple("prompt"),
        split="train_prefs",
    ),
    "orbench": SourceSpec(
        "orbench",
        "ambiguous",
        "bench-llm/or-bench",
        ("prompt", "category"),
        _simple("prompt", "category"),
        config="or-bench-80k",
        note="or-bench-80k; or-bench-hard-1k prompts are removed (source orbench_hard)",
    ),
    "orbench_hard": SourceSpec(
        "orbench_hard",
        "ambiguous",
        "bench-llm/or-bench",
        ("prompt", "category"),
        _simple("prompt", "category"),
        config="or-bench-hard-1k",
    ),
    # --- evaluation --------------------------------------------------------------------------
    "strongreject": SourceSpec(
        "strongreject",
        "harmful",
        "walledai/StrongREJECT",
        ("prompt", "category"),
        _simple("prompt", "category"),
        aliases={"forbidden_prompt": "prompt"},
        note="the official CSVs (forbidden_prompt column) work as local copies",
    ),
    # --- SFT warm-start prompts (harmful; kept disjoint from the RL mix) ----------------------
    "safeedit": SourceSpec(
        "safeedit",
        "harmful",
        "zjunlp/SafeEdit",
        ("question",),
        _simple("question"),
        aliases={"adversarial prompt": "question"},
        note="SafeEdit questions",
    ),
    "xstest": SourceSpec(
        "xstest",
        "harmless",
        "walledai/XSTest",
        ("prompt", "type", "label"),
        _xstest,
        split="test",
        note="label safe -> harmless prompts (over-refusal), unsafe -> harmful",
    ),
    "harmbench": SourceSpec(
        "harmbench",
        "harmful",
        "walledai/HarmBench",
        ("prompt", "category"),
        _simple("prompt", "category"),
        config="standard",
    ),
    "sorry_bench": SourceSpec(
        "sorry_bench",
        "harmful",
        "sorry-bench/sorry-bench-202406",
        ("turns", "category"),
        _sorry_bench,
        note="gated; base prompt style only",
    ),
    "wildchat": SourceSpec(
        "wildchat",
        "harmless",
        "allenai/WildChat-1M",
        ("conversation", "toxic", "language"),
        _wildchat,
        note="gated; English, non-toxic, first user turn",
    ),
}


def load_raw(spec: SourceSpec, path: str | None = None) -> tuple[pd.DataFrame, str]:
    """The source's table (local file or hub) and a description of where it came from."""
    if path and spec.name == "rainbow_teaming" and is_rainbow_archive_path(path):
        df = read_rainbow_archives(path)
        where = f"{path} ({df.attrs['archives']} Rainbow-Teaming archive(s))"
    elif path:
        df = read_table(path)
        where = path
    else:
        if spec.hub_id is None:
            raise ValueError(f"source {spec.name!r} has no hub copy ({spec.note}); pass --source {spec.name}=PATH")
        from datasets import load_dataset

        ds = load_dataset(spec.hub_id, spec.config, split=spec.split, **spec.load_kwargs)
        df = ds.to_pandas()
        where = f"{spec.hub_id}" + (f" ({spec.config})" if spec.config else "") + f" split {spec.split}"
    df = df.rename(columns={a: c for a, c in spec.aliases.items() if a in df.columns and c not in df.columns})
    require_columns(df, list(spec.columns), f"source {spec.name} from {where}")
    return df.reset_index(drop=True), where


def load_source(name: str, path: str | None = None) -> pd.DataFrame:
    """Rows of ``text``, ``category``, ``source_index`` (+ source-specific columns); empty texts dropped."""
    if name not in SOURCES:
        raise ValueError(f"unknown source {name!r}; known: {sorted(SOURCES)}")
    spec = SOURCES[name]
    raw, where = load_raw(spec, path)
    try:
        out = spec.extract(raw)
    except (TypeError, KeyError, IndexError, AttributeError, ValueError) as err:
        raise ValueError(
            f"source {name} from {where}: a row does not have the expected shape "
            f"({type(err).__name__}: {err}); expected columns {list(spec.columns)}"
        ) from err
    column = getattr(spec.extract, "text_column", "text")
    if not path:  # a hub copy cannot be fixed by the user: null prompts are dropped, and counted
        nulls = out["text"].map(lambda v: v is None or (isinstance(v, float) and v != v))
        if nulls.any():
            logger.warning("source %s from %s: dropped %d row(s) with a null %s", name, where, int(nulls.sum()), column)
            out = out[~nulls]
    # Never astype(str): a list of messages, a dict, a number or a null is an error naming file, column, row.
    check_text_column(out, "text", f"source {name} from {where}", column)
    out = out.assign(source_index=out.index.astype("int64"))
    out = out[out["text"].str.strip() != ""]
    out.attrs["where"] = where
    return out.reset_index(drop=True)


# --- Rainbow-Teaming archives --------------------------------------------------------------------
RAINBOW_COLUMNS = ["prompt", "score", "risk_category", "attack_style", "archive"]


def expand_archive_paths(paths: str | Iterable[str]) -> list[str]:
    """Files named by ``paths``: each a JSON file, a folder (its ``*.json``, sorted) or a glob (sorted)."""
    files: list[str] = []
    for p in [paths] if isinstance(paths, str) else list(paths):
        # A real file or folder first: "archive[1].json" is a file name, not a pattern.
        if os.path.isdir(p):
            found = sorted(glob.glob(os.path.join(glob.escape(p), "*.json")))
            if not found:
                raise FileNotFoundError(f"Rainbow-Teaming archives: folder {p} has no *.json files")
        elif os.path.isfile(p):
            found = [p]
        elif glob.has_magic(p):
            found = sorted(f for f in glob.glob(p) if os.path.isfile(f))
            if not found:
                raise FileNotFoundError(f"Rainbow-Teaming archives: no file matches {p!r}")
        else:
            raise FileNotFoundError(f"Rainbow-Teaming archive not found: {p}")
        files += [f for f in found if f not in files]
    return files


def is_rainbow_archive_path(path: str) -> bool:
    """True for a folder, a glob, or a ``.json`` file whose top level is a list of lists (the archive shape)."""
    if os.path.isdir(path) or (glob.has_magic(path) and not os.path.exists(path)):
        return True
    if not (path.lower().endswith(".json") and os.path.isfile(path)):
        return False
    data = read_json_file(path, "Rainbow-Teaming archive")
    return isinstance(data, list) and bool(data) and all(isinstance(row, list) for row in data)


def _is_empty_cell(cell) -> bool:
    return cell is None or cell == {} or cell == []


def read_rainbow_archives(paths: str | Iterable[str]) -> pd.DataFrame:
    """Rows of every prompt in Rainbow-Teaming archive JSON files.

    An archive (the shape the TARS authors release, ``archive_<k>.json``) is a list of risk categories,
    each a list of attack-style cells; a cell holds ``{"prompt": str, "score": float}`` or is empty
    (``{}`` / ``null``: the search never filled it). ``paths`` is a file, a folder of ``*.json`` files,
    a glob, or a list of those. Returns columns ``prompt``, ``score``, ``risk_category`` and
    ``attack_style`` (0-based grid position) and ``archive`` (file name), one row per filled cell, in
    file / category / style order; ``df.attrs`` holds ``archives``, ``cells`` and ``empty_cells``.
    Anything else (not a list of lists, a cell without a string prompt or a numeric score) is an error
    naming the file and the cell.

        >>> df = read_rainbow_archives("rainbow_archives/")          # doctest: +SKIP
        >>> df[["prompt", "risk_category", "attack_style"]].head()   # doctest: +SKIP
    """
    files = expand_archive_paths(paths)
    rows, cells, empty = [], 0, 0
    for path in files:
        data = read_json_file(path, "Rainbow-Teaming archive")  # a truncated or non-UTF-8 file names itself
        if not isinstance(data, list) or not all(isinstance(row, list) for row in data):
            raise ValueError(
                f"Rainbow-Teaming archive {path}: expected a list of risk categories, each a list of "
                f"attack-style cells; got {type(data).__name__} at the top level or in a category"
            )
        for i, row in enumerate(data):
            for j, cell in enumerate(row):
                cells += 1
                where = f"Rainbow-Teaming archive {path}, risk category {i}, attack style {j}"
                if _is_empty_cell(cell):
                    empty += 1
                    continue
                if not isinstance(cell, dict) or "prompt" not in cell:
                    raise ValueError(
                        f"{where}: expected {{'prompt': str, 'score': float}} or an empty cell, got {str(cell)[:120]!r}"
                    )
                prompt, score = cell["prompt"], cell.get("score")
                if not isinstance(prompt, str):
                    raise ValueError(f"{where}: 'prompt' must be a string, got {type(prompt).__name__}")
                if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
                    raise ValueError(f"{where}: 'score' must be a finite number, got {score!r}")
                rows.append((prompt, float(score), i, j, os.path.basename(path)))
    df = pd.DataFrame(rows, columns=RAINBOW_COLUMNS)
    df.attrs.update(archives=len(files), cells=cells, empty_cells=empty)
    return df
