"""Build the TARS RL prompt mix: harmful / harmless / ambiguous prompts at a ratio lambda, as verl parquet.

    python data_prep/build_rl_mix.py --out data/tars --lam 0.5 \\
        --source rainbow_teaming=rainbow_archives/ [--source wildjailbreak=local.tsv ...] \\
        [--eval-dir data/eval] [--tokenizer Qwen/Qwen2.5-7B-Instruct --max-prompt-tokens 512]
    python data_prep/build_rl_mix.py --out data/tars --lam 0.1 0.3 0.5 0.7 0.9   # sweep: lambda_<x>/ folders

The paper's arithmetic for N prompts: harmful = round(N * lambda), drawn from a harmful pool of
WildJailbreak 800 + Rainbow-Teaming 800 + Aegis 2.0 400; harmless (UltraFeedback) and ambiguous
(OR-Bench 80k minus hard-1k) split the rest evenly. Filters, in order: empty, prompt length in
characters, duplicates on normalised text (within and across sources), prompts that appear in an
evaluation set, and (with ``--tokenizer``) prompt length in tokens after the chat template.
The same seed gives byte-identical files. Each output folder gets ``train.parquet``,
``val.parquet`` and ``stats.json``.

Rows follow verl's RL schema: ``data_source`` (the source name), ``prompt`` (chat messages),
``ability``, ``reward_model`` ({"style": "tars", "ground_truth": prompt type}) and ``extra_info``
({prompt_type, source, index, source_index, category, split, think_prefilled}), which the ``tars``
reward manager reads.
"""

from __future__ import annotations

import argparse
import copy
import glob
import logging
import os
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from tars_verl.data.files import check_text_column, describe_value, read_table, write_folder
from tars_verl.data.sources import SOURCES, expand_archive_paths, load_source
from tars_verl.data.text import QWEN_DEFAULT_SYSTEM_PROMPT, normalise, parse_kv, user_messages
from tars_verl.data.verl_rows import VERL_RL_COLUMNS, verl_rl_row
from tars_verl.redaction import entry_point

logger = logging.getLogger(__name__)

HARMFUL_POOLS = {"wildjailbreak": 800, "rainbow_teaming": 800, "aegis2": 400}


@dataclass
class MixConfig:
    lams: list[float] = field(default_factory=lambda: [0.5])
    total: int = 2000
    val_size: int = 100
    pools: dict[str, int] = field(default_factory=lambda: dict(HARMFUL_POOLS))
    harmless_source: str = "ultrafeedback"
    ambiguous_source: str = "orbench"
    ambiguous_exclude_source: str | None = "orbench_hard"
    paths: dict[str, str] = field(default_factory=dict)
    seed: int = 0
    max_chars: int = 1000
    max_prompt_tokens: int | None = None
    tokenizer: str | None = None
    eval_files: list[str] = field(default_factory=list)
    system_prompt: str | None = None
    prefill_think: bool = False
    allow_small_pools: bool = False

    def validate(self) -> None:
        for lam in self.lams:
            if not 0.0 <= lam <= 1.0:
                raise ValueError(f"--lam {lam} is outside [0, 1]")
        if self.total < 1 or self.val_size < 0:
            raise ValueError(f"--total must be >= 1 and --val-size >= 0 (got {self.total}, {self.val_size})")
        for name in [*self.pools, self.harmless_source, self.ambiguous_source]:
            if name not in SOURCES:
                raise ValueError(f"unknown source {name!r}; known: {sorted(SOURCES)}")
        for name, path in self.paths.items():
            if name not in SOURCES:
                raise ValueError(f"--source {name}=...: unknown source; known: {sorted(SOURCES)}")
            if name == "rainbow_teaming" and (os.path.isdir(path) or glob.has_magic(path)):
                expand_archive_paths(path)  # a folder or glob of archives: raises when it names no file
            elif not os.path.exists(path):
                raise FileNotFoundError(f"--source {name}={path}: file not found")
        for path in self.eval_files:
            if not os.path.exists(path):
                raise FileNotFoundError(f"evaluation file not found: {path}")
        if self.max_prompt_tokens is not None and not self.tokenizer:
            raise ValueError("--max-prompt-tokens needs --tokenizer (the policy's tokenizer)")


def type_counts(total: int, lam: float) -> dict[str, int]:
    """The paper's arithmetic: harmful = N*lambda, harmless = ambiguous = N*(1-lambda)/2.

    An odd remainder goes to ambiguous."""
    harmful = int(round(total * lam))
    harmless = (total - harmful) // 2
    return {"harmful": harmful, "harmless": harmless, "ambiguous": total - harmful - harmless}


def _rng(seed: int, *names: object) -> np.random.Generator:
    # Stable across runs and Python versions (no hash randomisation).
    return np.random.default_rng([seed, zlib.crc32("/".join(map(str, names)).encode())])


def eval_prompt_set(files: list[str]) -> set[str]:
    """Normalised prompts of evaluation files.

    eval_sets parquet with `prompt` messages, or a `text`/`prompt` column."""
    seen: set[str] = set()
    for path in files:
        df = read_table(path)
        if "text" in df.columns:
            check_text_column(df, "text", path)
            texts = df["text"]
        elif "prompt" in df.columns:
            texts = pd.Series([_last_user_content(p, path, i) for i, p in df["prompt"].items()], dtype=object)
        else:
            raise ValueError(f"{path}: evaluation file needs a 'prompt' or 'text' column; it has {list(df.columns)}")
        seen.update(normalise(t) for t in texts)
    return seen


def _last_user_content(prompt: Any, path: str, row: Any) -> str:
    """The text of an evaluation row's prompt (a string, or chat messages: the last user turn)."""
    if isinstance(prompt, str):
        return prompt
    try:
        content = [m for m in prompt if m["role"] == "user"][-1]["content"]
    except (TypeError, KeyError, IndexError):
        content = None
    if not isinstance(content, str):
        raise ValueError(
            f"{path}: column 'prompt' row {row}: expected text or chat messages with a user turn of "
            f"text, got {describe_value(prompt)}"
        )
    return content


class PromptBuilder:
    """Chat messages for a prompt, and (optionally) its token length under the policy's chat template."""

    def __init__(self, cfg: MixConfig):
        self.system_prompt = cfg.system_prompt
        self.max_tokens = cfg.max_prompt_tokens
        self.tokenizer = None
        if cfg.tokenizer:
            from transformers import AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(cfg.tokenizer)

    def messages(self, text: str) -> list[dict[str, str]]:
        return user_messages(text, self.system_prompt)

    def n_tokens(self, text: str) -> int:
        # Render, then tokenise: apply_chat_template(tokenize=True) returns different types across versions.
        rendered = self.tokenizer.apply_chat_template(self.messages(text), add_generation_prompt=True, tokenize=False)
        return len(self.tokenizer(rendered, add_special_tokens=False)["input_ids"])

    def fits(self, text: str) -> bool:
        return self.tokenizer is None or self.max_tokens is None or self.n_tokens(text) <= self.max_tokens


def filter_candidates(cfg: MixConfig, eval_set: set[str]) -> tuple[dict[str, pd.DataFrame], dict[str, dict]]:
    """Load each source and apply the cheap filters; returns candidates per source and what each filter dropped."""
    names = [n for n, size in cfg.pools.items() if size > 0] + [cfg.harmless_source, cfg.ambiguous_source]
    excluded: set[str] = set()
    if cfg.ambiguous_exclude_source:
        hard = load_source(cfg.ambiguous_exclude_source, cfg.paths.get(cfg.ambiguous_exclude_source))
        excluded = set(hard["text"].map(normalise))
    seen: set[str] = set()
    candidates, drops = {}, {}
    for name in tqdm(names, desc="loading sources", disable=None):
        df = load_source(name, cfg.paths.get(name))
        stats = {"loaded": len(df), "from": df.attrs.get("where", "")}
        too_long = df["text"].str.len() > cfg.max_chars
        stats["too_many_chars"] = int(too_long.sum())
        df = df[~too_long].copy()
        df["norm"] = df["text"].map(normalise)
        dup = df["norm"].duplicated() | df["norm"].isin(seen)
        stats["duplicates"] = int(dup.sum())
        df = df[~dup]
        leak = df["norm"].isin(eval_set)
        stats["in_eval_sets"] = int(leak.sum())
        df = df[~leak]
        if name == cfg.ambiguous_source and excluded:
            hard_rows = df["norm"].isin(excluded)
            stats["in_" + cfg.ambiguous_exclude_source] = int(hard_rows.sum())
            df = df[~hard_rows]
        seen.update(df["norm"])
        candidates[name], drops[name] = df.drop(columns="norm"), stats
    return candidates, drops


def take(
    df: pd.DataFrame,
    n: int,
    rng: np.random.Generator,
    builder: PromptBuilder | None,
    name: str,
    allow_small: bool,
    drops: dict,
) -> pd.DataFrame:
    """n rows in a seeded random order, skipping prompts over the token limit (checked lazily; no
    check when ``builder`` is None)."""
    order = rng.permutation(len(df))
    picked, too_long = [], 0
    for i in tqdm(
        order, desc=f"{name}: token filter", disable=None if builder and builder.tokenizer else True, leave=False
    ):
        if len(picked) == n:
            break
        if builder is None or builder.fits(df["text"].iat[i]):
            picked.append(i)
        else:
            too_long += 1
    drops["too_many_tokens"] = drops.get("too_many_tokens", 0) + too_long
    if len(picked) < n:
        msg = f"source {name}: only {len(picked)} usable prompts after filtering, {n} requested"
        if not allow_small:
            raise ValueError(msg + " (lower the count, add data, or pass --allow-small-pools)")
        logger.warning("%s; using all of them (--allow-small-pools)", msg)
    return df.iloc[picked]


def build_mixes(cfg: MixConfig) -> dict[float, tuple[pd.DataFrame, pd.DataFrame, dict]]:
    """{lambda: (train, val, stats)}; nothing is written."""
    cfg.validate()
    builder = PromptBuilder(cfg)
    eval_set = eval_prompt_set(cfg.eval_files)
    candidates, drops = filter_candidates(cfg, eval_set)
    n_needed = cfg.total + cfg.val_size
    harmful_pool = pd.concat(
        [
            take(candidates[n], size, _rng(cfg.seed, "pool", n), builder, n, cfg.allow_small_pools, drops[n]).assign(
                source=n
            )
            for n, size in cfg.pools.items()
            if size > 0
        ]
        or [pd.DataFrame(columns=["text", "category", "source_index", "source"])],
        ignore_index=True,
    )
    out = {}
    for lam in cfg.lams:
        counts = type_counts(n_needed, lam)
        lam_drops = copy.deepcopy(drops)
        parts = []
        for ptype, n, pool, name in [
            ("harmful", counts["harmful"], harmful_pool, "harmful pool"),
            (
                "harmless",
                counts["harmless"],
                candidates[cfg.harmless_source].assign(source=cfg.harmless_source),
                cfg.harmless_source,
            ),
            (
                "ambiguous",
                counts["ambiguous"],
                candidates[cfg.ambiguous_source].assign(source=cfg.ambiguous_source),
                cfg.ambiguous_source,
            ),
        ]:
            # The harmful pool was token-filtered when it was built.
            chosen = take(
                pool,
                n,
                _rng(cfg.seed, lam, ptype),
                None if ptype == "harmful" else builder,
                name,
                cfg.allow_small_pools,
                lam_drops.setdefault(name, {}),
            )
            parts.append(chosen.assign(prompt_type=ptype))
        rows = pd.concat(parts, ignore_index=True)
        if rows.empty:
            raise ValueError(f"lambda={lam}: no prompts left after filtering; nothing written")
        val_counts = type_counts(min(cfg.val_size, len(rows)), lam)
        is_val = np.zeros(len(rows), dtype=bool)
        for ptype, n in val_counts.items():
            idx = np.flatnonzero(rows["prompt_type"].to_numpy() == ptype)
            is_val[_rng(cfg.seed, lam, "val", ptype).permutation(idx)[:n]] = True
        train = rows[~is_val].sample(frac=1.0, random_state=_rng(cfg.seed, lam, "shuffle"))
        val = rows[is_val]
        train_df, val_df = to_verl_rows(train, "train", builder, cfg), to_verl_rows(val, "val", builder, cfg)
        out[lam] = (train_df, val_df, mix_stats(cfg, lam, train, val, lam_drops, builder))
    return out


def to_verl_rows(rows: pd.DataFrame, split: str, builder: PromptBuilder, cfg: MixConfig) -> pd.DataFrame:
    records = [
        verl_rl_row(
            source=r.source,
            messages=builder.messages(r.text),
            prompt_type=r.prompt_type,
            index=i,
            source_index=r.source_index,
            category=str(r.category),
            split=split,
            think_prefilled=cfg.prefill_think,
        )
        for i, r in enumerate(rows.itertuples(index=False))
    ]
    return pd.DataFrame.from_records(records, columns=VERL_RL_COLUMNS)


def mix_stats(
    cfg: MixConfig, lam: float, train: pd.DataFrame, val: pd.DataFrame, drops: dict, builder: PromptBuilder
) -> dict:
    def quantiles(values) -> dict:
        q = np.quantile(np.asarray(values, dtype=float), [0.0, 0.5, 0.9, 0.99, 1.0]) if len(values) else [0] * 5
        return dict(zip(["min", "p50", "p90", "p99", "max"], [round(float(v), 1) for v in q]))

    stats = {
        "lambda": lam,
        "seed": cfg.seed,
        "total": len(train),
        "val": len(val),
        "by_type": train["prompt_type"].value_counts().sort_index().to_dict(),
        "by_source": train.groupby(["prompt_type", "source"]).size().rename("n").reset_index().to_dict("records"),
        "val_by_type": val["prompt_type"].value_counts().sort_index().to_dict(),
        "chars": {t: quantiles(g["text"].str.len()) for t, g in train.groupby("prompt_type")},
        "filters": drops,
        "system_prompt": cfg.system_prompt,
        "think_prefilled": cfg.prefill_think,
        "max_chars": cfg.max_chars,
        "max_prompt_tokens": cfg.max_prompt_tokens,
    }
    if builder.tokenizer is not None:
        stats["tokens"] = {
            t: quantiles([builder.n_tokens(x) for x in g["text"]]) for t, g in train.groupby("prompt_type")
        }
    return stats


def format_stats(stats: dict) -> str:
    lines = [
        f"lambda={stats['lambda']}  train={stats['total']}  val={stats['val']}  seed={stats['seed']}",
        f"{'type':<10} {'source':<16} {'n':>6}",
    ]
    lines += [f"{r['prompt_type']:<10} {r['source']:<16} {r['n']:>6}" for r in stats["by_source"]]
    lines.append(f"\n{'type':<10} chars min/p50/p90/p99/max")
    for t, q in stats["chars"].items():
        lines.append(f"{t:<10} " + "/".join(f"{q[k]:g}" for k in ("min", "p50", "p90", "p99", "max")))
    keys = ("loaded", "too_many_chars", "duplicates", "in_eval_sets", "in_orbench_hard", "too_many_tokens")
    lines.append(f"\n{'dropped, by source':<18} " + " ".join(f"{k:>15}" for k in keys))
    for name, d in stats["filters"].items():
        lines.append(f"{name:<18} " + " ".join(f"{d.get(k, 0):>15}" for k in keys))
    return "\n".join(lines)


def write_mixes(cfg: MixConfig, out_dir: str) -> dict[float, str]:
    """Build every lambda, then write; a sweep writes ``out_dir/lambda_<x>/``."""
    mixes = build_mixes(cfg)  # everything is checked before the first file is written
    folders = {}
    for lam, (train, val, stats) in mixes.items():
        folder = out_dir if len(mixes) == 1 else os.path.join(out_dir, f"lambda_{lam:g}")
        # The folder is replaced whole: it never mixes two runs (a sweep's lambda folders are folders of their own).
        write_folder(folder, {"train.parquet": train, "val.parquet": val, "stats.json": stats})
        print(format_stats(stats) + f"\nwrote {folder}/train.parquet, val.parquet, stats.json\n")
        folders[lam] = folder
    written = {os.path.abspath(f) for f in folders.values()}
    stale = sorted(
        d
        for d in (os.listdir(out_dir) if os.path.isdir(out_dir) else [])
        if d.startswith("lambda_") and os.path.abspath(os.path.join(out_dir, d)) not in written
    )
    if stale:
        logger.warning(
            "%s also holds %s from an earlier run (not rewritten now): its files may come from other "
            "settings; remove them or write this run to a new --out",
            out_dir,
            stale,
        )
    return folders


def eval_dir_files(folder: str, flag: str) -> list[str]:
    """The parquet files of an evaluation folder; a missing folder or one without parquet is an error (the
    leakage filter would otherwise be skipped without a word)."""
    if not os.path.isdir(folder):
        raise ValueError(f"{flag} {folder}: not a folder")
    files = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".parquet"))
    if not files:
        raise ValueError(
            f"{flag} {folder} holds no .parquet file, so no evaluation prompt would be kept out of "
            f"training (leakage filter not checked). Build the sets first (data_prep/build_eval_sets.py) "
            f"or point {flag} at their folder."
        )
    return files


@entry_point
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--lam", type=float, nargs="+", default=[0.5], help="share of harmful prompts (several = sweep)")
    ap.add_argument("--total", type=int, default=2000, help="training prompts (paper: 2000)")
    ap.add_argument("--val-size", type=int, default=100, help="held-out prompts from the same mix")
    ap.add_argument(
        "--pool",
        action="append",
        default=[],
        help="harmful pool size NAME=N (default wildjailbreak=800 rainbow_teaming=800 aegis2=400; 0 drops a source)",
    )
    ap.add_argument(
        "--source",
        action="append",
        default=[],
        help="local copy NAME=PATH (jsonl/json/csv/tsv/parquet); "
        "rainbow_teaming also takes Rainbow-Teaming archive JSON: a file, a folder or a quoted glob",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-chars", type=int, default=1000)
    ap.add_argument("--tokenizer", help="policy tokenizer (path or hub id) for the token-length filter and stats")
    ap.add_argument("--max-prompt-tokens", type=int, help="drop prompts longer than this after the chat template")
    ap.add_argument("--eval-dir", help="folder of evaluation parquet files whose prompts must not enter training")
    ap.add_argument("--eval-file", action="append", default=[], help="an evaluation file to exclude (repeatable)")
    ap.add_argument("--system-prompt", default=None, help="'qwen' for Qwen's default system prompt, or a text")
    ap.add_argument(
        "--prefill-think",
        action="store_true",
        help="mark rows as <think>-pre-filled (set "
        "reward.tars.think_prefilled and a pre-filling chat template in the launch script)",
    )
    ap.add_argument("--allow-small-pools", action="store_true", help="use fewer prompts than asked, with a warning")
    args = ap.parse_args(argv)
    pools = dict(HARMFUL_POOLS)
    pools.update(parse_kv(args.pool, "--pool", int))
    eval_files = list(args.eval_file)
    if args.eval_dir:
        eval_files += eval_dir_files(args.eval_dir, "--eval-dir")
    system = QWEN_DEFAULT_SYSTEM_PROMPT if args.system_prompt == "qwen" else args.system_prompt
    cfg = MixConfig(
        lams=args.lam,
        total=args.total,
        val_size=args.val_size,
        pools=pools,
        paths=parse_kv(args.source, "--source"),
        seed=args.seed,
        max_chars=args.max_chars,
        tokenizer=args.tokenizer,
        max_prompt_tokens=args.max_prompt_tokens,
        eval_files=eval_files,
        system_prompt=system,
        prefill_think=args.prefill_think,
        allow_small_pools=args.allow_small_pools,
    )
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    write_mixes(cfg, args.out)


if __name__ == "__main__":
    main()
