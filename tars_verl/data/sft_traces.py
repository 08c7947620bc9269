"""SFT warm-start traces: ask a reasoning teacher for k samples per harmful prompt, write an SFT parquet.

    # generate (DeepSeek-R1's API, or a local `vllm serve ... --reasoning-parser deepseek_r1`)
    python data_prep/build_sft_traces.py generate --out data/sft \\
        --url https://api.deepseek.com/v1 --model deepseek-reasoner --api-key-env DEEPSEEK_API_KEY \\
        --source wildjailbreak=... --source aegis2=... --source safeedit=... \\
        --exclude data/tars/train.parquet --exclude-dir data/eval --samples 4
    # convert an existing traces file (jsonl with prompt + reasoning + answer, or + a <think> response)
    python data_prep/build_sft_traces.py convert --traces old.jsonl --out data/sft

Paper defaults: 1000 harmful prompts (WildJailbreak 400, Aegis 2.0 300, SafeEdit 300) disjoint from
the RL mix and the evaluation sets, DeepSeek-R1, 4 samples each, traces with empty reasoning dropped
(not filtered for safety). The assistant turn is exactly ``<think>\\n{reasoning}\\n</think>\\n\\n{answer}``.
The teacher gets the user turn only (DeepSeek advises no system prompt for R1; ``--teacher-system-prompt``
sends one); the SFT target carries Qwen's default system prompt (``--system-prompt``), as the paper describes.

Resume: every finished sample is appended (one JSON line, flushed) to ``<out>/traces.jsonl``. A run
started again reads it, skips what is done (a torn last line is discarded; a bad line elsewhere is an
error naming it, and nothing is deleted) and asks only for the rest; failed requests (also malformed
replies) are retried with back-off, then reported, and the command exits non-zero without writing the
parquet until every sample is done (or ``--allow-missing``). ``--retry-dropped`` asks again for samples
logged with empty reasoning or answer. One writer per ``--out`` (a second is refused), and one set of
settings per ``--out`` (``traces_settings.json``): a folder never mixes two runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass, field, fields

import numpy as np
import pandas as pd
from tqdm.auto import tqdm
from transformers import HfArgumentParser

from tars_verl.data.files import (
    append_jsonl,
    check_text_column,
    exclusive_writer,
    read_done,
    read_json_file,
    read_table,
    write_json_atomic,
    write_together,
)
from tars_verl.data.rl_mix import _rng, eval_dir_files, eval_prompt_set
from tars_verl.data.sources import load_source
from tars_verl.data.text import (
    QWEN_DEFAULT_SYSTEM_PROMPT,
    count_flags,
    normalise,
    parse_kv,
    user_messages,
)
from tars_verl.redaction import entry_point, scrub_known, scrub_obj

logger = logging.getLogger(__name__)
SFT_POOLS = {"wildjailbreak": 400, "aegis2": 300, "safeedit": 300}
THINK_RE = re.compile(r"^\s*<think>(.*?)</think>\s*(.*)$", re.DOTALL)


def sft_assistant_turn(reasoning: str, answer: str) -> str:
    return f"<think>\n{reasoning.strip()}\n</think>\n\n{answer.strip()}"


def split_teacher_reply(message: dict) -> tuple[str, str]:
    """(reasoning, answer) from a chat message: ``reasoning_content`` (DeepSeek API, vLLM reasoning
    parser) or ``reasoning`` fields, else ``<think>`` tags in the content."""
    if not isinstance(message, dict):
        raise ValueError(f"the reply's message is {type(message).__name__}, not an object")
    content = message.get("content") or ""
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    for name, value in (("content", content), ("reasoning", reasoning)):
        if value is not None and not isinstance(value, str):
            raise ValueError(f"the reply's {name} is {type(value).__name__}, not text")
    if reasoning is not None:
        return reasoning.strip(), content.strip()
    m = THINK_RE.match(content)
    if m:
        return m.group(1).strip(), m.group(2).strip()
    return "", content.strip()


@dataclass
class TraceSettings:
    """The settings of ``generate`` that are one flag each: ``build_sft_traces.py generate`` reads them from its
    flags with ``transformers.HfArgumentParser`` (``--max-tokens`` or ``--max_tokens`` for ``max_tokens``; the help
    is each field's)."""

    out: str = field(metadata={"help": "output folder: traces.jsonl (the resumable log) and the SFT parquet files"})
    url: str = field(
        default="", metadata={"required": True, "help": "OpenAI-compatible base URL, e.g. https://api.deepseek.com/v1"}
    )
    model: str = field(default="", metadata={"required": True, "help": "the teacher model's name at --url"})
    api_key_env: str | None = field(default=None, metadata={"help": "environment variable holding the API key"})
    samples: int = field(default=4, metadata={"help": "teacher samples per prompt"})
    seed: int = field(default=0, metadata={"help": "prompt selection and the train/val split"})
    max_chars: int = field(default=1000, metadata={"help": "prompts longer than this are not selected"})
    temperature: float = field(default=0.6, metadata={"help": "teacher sampling temperature"})
    max_tokens: int = field(default=8192, metadata={"help": "teacher tokens per reply (reasoning + answer)"})
    max_concurrency: int = field(default=16, metadata={"help": "requests in flight"})
    max_retries: int = field(default=5, metadata={"help": "retries of a failed request (with back-off)"})
    timeout_s: float = field(
        default=600.0,
        metadata={
            "aliases": ["--timeout"],
            "help": "seconds per teacher request before it counts as failed (and is retried)",
        },
    )
    allow_small_pools: bool = field(
        default=False, metadata={"help": "select fewer prompts than --pool asks when a source has too few"}
    )
    allow_missing: bool = field(default=False, metadata={"help": "write the parquet even if some requests failed"})
    # Ask again for samples the log holds with empty reasoning or answer (dropped from the SFT set).
    retry_dropped: bool = field(
        default=False,
        metadata={
            "help": "ask again for samples already logged with empty reasoning or answer (e.g. after fixing "
            "the teacher's reasoning parser); the new reply replaces the old one"
        },
    )


@dataclass
class TraceConfig(TraceSettings):
    """Everything a ``generate`` run needs: the one-flag settings, and what the other flags are turned into (the
    pools, the source files, the prompts to exclude, the two system prompts)."""

    pools: dict[str, int] = field(default_factory=lambda: dict(SFT_POOLS))
    paths: dict[str, str] = field(default_factory=dict)
    exclude_files: list[str] = field(default_factory=list)
    # The system prompt of the SFT target (the student's chat), not what the teacher is sent.
    system_prompt: str | None = QWEN_DEFAULT_SYSTEM_PROMPT
    # What the teacher is sent as a system turn; None: none (DeepSeek's advice for R1).
    teacher_system_prompt: str | None = None


def _text(value) -> str:
    return value if isinstance(value, str) else ""


def is_dropped(rec: dict) -> bool:
    """A logged sample that the SFT set drops (empty reasoning or empty answer)."""
    return not _text(rec.get("reasoning")).strip() or not _text(rec.get("answer")).strip()


# Settings that decide what a trace is: one --out never mixes two of them.
RUN_KEYS = ("model", "temperature", "max_tokens", "system_prompt", "teacher_system_prompt", "seed", "samples")


def check_same_run(cfg: TraceConfig, out: str) -> None:
    """Record the settings in ``<out>/traces_settings.json`` or refuse a folder written with other settings."""
    path = os.path.join(out, "traces_settings.json")
    # Compared as written: the file is scrubbed of anything that looks like a credential (tars_verl.redaction).
    mine = scrub_obj({k: getattr(cfg, k) for k in RUN_KEYS})
    if os.path.exists(path):
        theirs = read_json_file(path, "SFT traces settings")
        if not isinstance(theirs, dict):
            raise ValueError(f"{path}: expected a JSON object of settings; fix or remove the file")
        differ = {k: (theirs.get(k), mine[k]) for k in RUN_KEYS if k != "samples" and theirs.get(k) != mine[k]}
        if differ:
            shown = ", ".join(f"{k}: {a!r} there, {b!r} now" for k, (a, b) in differ.items())
            raise ValueError(
                f"{out} holds traces made with other settings ({shown}); one folder never mixes two "
                "runs. Use another --out, or the same settings to resume."
            )
    write_json_atomic(mine, path)


def select_prompts(cfg: TraceConfig) -> pd.DataFrame:
    """Seeded harmful prompts per pool, deduplicated, minus the RL mix and evaluation prompts."""
    excluded = eval_prompt_set(cfg.exclude_files)
    seen: set[str] = set()
    picked = []
    for name, n in cfg.pools.items():
        if n <= 0:
            continue
        df = load_source(name, cfg.paths.get(name))
        df = df[df["text"].str.len() <= cfg.max_chars]
        norm = df["text"].map(normalise)
        df = df[~norm.isin(excluded) & ~norm.duplicated() & ~norm.isin(seen)]
        if len(df) < n:
            msg = f"SFT source {name}: {len(df)} usable prompts, {n} requested"
            if not cfg.allow_small_pools:
                raise ValueError(msg + " (lower --pool, add data, or pass --allow-small-pools)")
            logger.warning("%s; using all of them", msg)
        take = df.iloc[np.sort(_rng(cfg.seed, "sft", name).permutation(len(df))[:n])]
        seen.update(take["text"].map(normalise))
        picked.append(take.assign(source=name))
    if not picked:
        raise ValueError("no SFT prompts selected (every --pool is 0)")
    prompts = pd.concat(picked, ignore_index=True)
    prompts["prompt_id"] = [f"{s}-{i}" for s, i in zip(prompts["source"], prompts["source_index"])]
    return prompts[["prompt_id", "source", "source_index", "text"]]


def check_same_texts(done: dict[tuple[str, int], dict], prompts: pd.DataFrame, log_path: str) -> None:
    """Every logged sample of a selected prompt id was made for the text that id names now. A ``--source NAME``
    pointing to other texts (the same row numbers, different prompts) would otherwise mix two datasets in one
    output: an error naming the ids, before any request."""
    texts = dict(zip(prompts["prompt_id"], prompts["text"]))
    stale = sorted(
        {pid for (pid, _), rec in done.items() if pid in texts and scrub_known(texts[pid]) != rec.get("prompt")}
    )
    if stale:
        pid = stale[0]
        logged = next(rec.get("prompt") for (p, _), rec in done.items() if p == pid)
        raise ValueError(
            f"{log_path}: {len(stale)} prompt id(s) were logged for other texts than their --source gives now, "
            f"e.g. {pid}: logged {str(logged)[:80]!r}, now {texts[pid][:80]!r}. A --source now points to different "
            "data; one folder never mixes two: use another --out, or the same source files to resume."
        )


async def generate_traces(cfg: TraceConfig, prompts: pd.DataFrame, lock: bool = True) -> tuple[int, int]:
    """Ask the teacher for every missing (prompt, sample); returns (new samples, failed requests).

    Holds an exclusive lock on ``<out>/traces.jsonl`` (a second writer is refused); ``lock=False`` when
    the caller holds it. A malformed teacher reply (``message: null``, no choices, non-text content) is a
    failed sample, logged with the endpoint; the run goes on.
    """
    log_path = os.path.join(cfg.out, "traces.jsonl")
    with exclusive_writer(log_path) if lock else contextlib.nullcontext():
        return await _generate_locked(cfg, prompts, log_path)


async def _generate_locked(cfg: TraceConfig, prompts: pd.DataFrame, log_path: str) -> tuple[int, int]:
    from tars_verl.scorers.base import ScorerError
    from tars_verl.scorers.http_client import HttpEndpoint, only_choice

    os.makedirs(cfg.out, exist_ok=True)
    done = read_done(log_path)
    check_same_run(cfg, cfg.out)
    check_same_texts(done, prompts, log_path)
    todo = [
        (r.prompt_id, k, r.text, r.source)
        for r in prompts.itertuples()
        for k in range(cfg.samples)
        if (r.prompt_id, k) not in done or (cfg.retry_dropped and is_dropped(done[(r.prompt_id, k)]))
    ]
    api_key = os.environ.get(cfg.api_key_env) if cfg.api_key_env else None
    if cfg.api_key_env and not api_key:
        raise ValueError(f"environment variable {cfg.api_key_env} is not set (the teacher's API key)")
    endpoint = HttpEndpoint(
        cfg.url,
        api_key=api_key,
        timeout_s=cfg.timeout_s,
        max_concurrency=cfg.max_concurrency,
        max_retries=cfg.max_retries,
    )
    where = endpoint.where("/chat/completions")
    failures = 0
    new = 0
    bar = tqdm(total=len(todo), desc="teacher samples", disable=None)
    with open(log_path, "a", encoding="utf-8") as log:

        async def one(prompt_id: str, k: int, text: str, source: str) -> None:
            nonlocal failures, new
            messages = user_messages(text, cfg.teacher_system_prompt)
            # A retried sample gets a new seed: a seeded teacher would repeat the dropped reply.
            attempt = int(done[(prompt_id, k)].get("attempt", 0)) + 1 if (prompt_id, k) in done else 0
            try:
                body = await endpoint.post_json(
                    "/chat/completions",
                    {
                        "model": cfg.model,
                        "messages": messages,
                        "temperature": cfg.temperature,
                        "max_tokens": cfg.max_tokens,
                        "seed": cfg.seed * 1000 + k + 1_000_000 * attempt,
                    },
                )
                choice = only_choice(body, where)
                reasoning, answer = split_teacher_reply(choice.get("message"))
            except (ScorerError, KeyError, IndexError, TypeError, ValueError, AttributeError) as err:
                failures += 1
                logger.warning(
                    "teacher %s: request for %s sample %d failed: %s: %s",
                    where,
                    prompt_id,
                    k,
                    type(err).__name__,
                    endpoint.scrub(str(err)),
                )
                return
            rec = {
                "prompt_id": prompt_id,
                "sample_idx": k,
                "source": source,
                "prompt": text,
                "reasoning": reasoning,
                "answer": answer,
                "model": cfg.model,
                "finish_reason": choice.get("finish_reason"),
                "attempt": attempt,
            }
            append_jsonl(log, rec)
            log.flush()
            new += 1
            bar.update(1)

        try:
            await asyncio.gather(*(one(*t) for t in todo))
        finally:
            bar.close()
            await endpoint.aclose()
    if failures:
        logger.warning("teacher %s: %d of %d requests failed (see above)", where, failures, len(todo))
    return new, failures


def traces_to_sft(records: list[dict], system_prompt: str | None) -> tuple[pd.DataFrame, dict]:
    """SFT rows (``messages``) from trace records; empty reasoning dropped (the paper's only filter)."""
    rows, dropped_empty, dropped_answer = [], 0, 0
    for rec in records:
        reasoning, answer = _text(rec.get("reasoning")), _text(rec.get("answer"))
        if not isinstance(rec.get("reasoning"), str) and "response" in rec:
            reasoning, answer = split_teacher_reply({"content": _text(rec["response"])})
        if not reasoning.strip():
            dropped_empty += 1
            continue
        if not answer.strip():
            dropped_answer += 1
            continue
        messages = user_messages(rec["prompt"], system_prompt) + [
            {"role": "assistant", "content": sft_assistant_turn(reasoning, answer)}
        ]
        rows.append(
            {
                "messages": messages,
                # Traces from elsewhere carry no id: the prompt text groups a prompt's samples instead (the split
                # keeps them together), never one shared "" that would put every trace in one split.
                "prompt_id": str(
                    rec.get("prompt_id") or f"prompt-{hashlib.sha256(rec['prompt'].encode()).hexdigest()[:16]}"
                ),
                "sample_idx": int(rec.get("sample_idx", 0)),
                "source": str(rec.get("source", "")),
            }
        )
    if not rows:
        raise ValueError("no usable traces: every one had empty reasoning or an empty answer")
    df = pd.DataFrame(rows).sort_values(["prompt_id", "sample_idx"], kind="stable").reset_index(drop=True)
    return df, {
        "traces": len(records),
        "kept": len(df),
        "dropped_empty_reasoning": dropped_empty,
        "dropped_empty_answer": dropped_answer,
    }


def write_sft(
    records: list[dict], out: str, system_prompt: str | None, val_fraction: float = 0.05, seed: int = 0
) -> dict:
    """``sft_train.parquet`` / ``sft_val.parquet`` (split by prompt, so samples of one prompt stay together).
    ``val_fraction`` must lie in [0, 1); a split that would leave no training rows is an error."""
    check_val_fraction(val_fraction)
    df, stats = traces_to_sft(records, system_prompt)
    ids = sorted(df["prompt_id"].unique())
    n_val = int(round(len(ids) * val_fraction)) if len(ids) > 1 else 0
    if n_val >= len(ids):
        raise ValueError(
            f"--val-fraction {val_fraction} puts all {len(ids)} prompts in the validation split and none in "
            "training; lower it"
        )
    val_ids = set(np.array(ids)[_rng(seed, "sft-val").permutation(len(ids))[:n_val]])
    is_val = df["prompt_id"].isin(val_ids)
    stats.update(train=int((~is_val).sum()), val=int(is_val.sum()), prompts=len(ids))
    write_together(
        {
            os.path.join(out, "sft_train.parquet"): df[~is_val].reset_index(drop=True),
            os.path.join(out, "sft_val.parquet"): df[is_val].reset_index(drop=True),
            os.path.join(out, "sft_stats.json"): stats,
        }
    )
    return stats


def check_val_fraction(value: float) -> float:
    """The share of prompts held out for validation: 0 (none) up to, not including, 1 (the training split would
    be empty)."""
    if not 0.0 <= value < 1.0:
        raise ValueError(
            f"--val-fraction must be in [0, 1), got {value}: the share of prompts held out for validation (0: none)"
        )
    return value


def named_system_prompt(value: str) -> str | None:
    """``qwen`` (Qwen's default system prompt), ``none`` (no system turn), or the text itself."""
    return {"qwen": QWEN_DEFAULT_SYSTEM_PROMPT, "none": None}.get(value, value)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True, parser_class=HfArgumentParser)
    # TraceSettings' flags come from its fields; the flags below are turned into TraceConfig's other fields.
    g = sub.add_parser(
        "generate", dataclass_types=TraceSettings, help="ask a teacher endpoint, then write the SFT parquet"
    )
    count_flags(g, "samples", "max_tokens", "max_concurrency")
    g.add_argument(
        "--pool", action="append", default=[], help="NAME=N (default wildjailbreak=400 aegis2=300 safeedit=300)"
    )
    g.add_argument("--source", action="append", default=[], help="local copy NAME=PATH")
    g.add_argument("--exclude", action="append", default=[], help="RL mix / eval parquet whose prompts to avoid")
    g.add_argument("--exclude-dir", action="append", default=[], help="folder of such parquet files")
    g.add_argument(
        "--teacher-system-prompt",
        default="none",
        help="system prompt sent to the teacher: 'none' (DeepSeek advises none for R1), 'qwen', or a text",
    )
    c = sub.add_parser("convert", help="turn an existing traces file into the SFT parquet; no endpoint")
    c.add_argument("--traces", required=True, help="jsonl/json/parquet with prompt and reasoning+answer or response")
    c.add_argument("--out", required=True)
    for p in (g, c):
        p.add_argument(
            "--system-prompt",
            default="qwen",
            help="system prompt of the SFT target: 'qwen', 'none', or a text",
        )
        p.add_argument("--val-fraction", type=float, default=0.05)
    return ap


def trace_config(args: argparse.Namespace) -> TraceConfig:
    """The ``generate`` command line as a TraceConfig."""
    # The generate sub-parser is an HfArgumentParser of TraceSettings: args holds each of its fields, parsed.
    return TraceConfig(
        **{f.name: getattr(args, f.name) for f in fields(TraceSettings)},
        pools={**SFT_POOLS, **parse_kv(args.pool, "--pool", int)},
        paths=parse_kv(args.source, "--source"),
        exclude_files=[*args.exclude, *(f for d in args.exclude_dir for f in eval_dir_files(d, "--exclude-dir"))],
        system_prompt=named_system_prompt(args.system_prompt),
        teacher_system_prompt=named_system_prompt(args.teacher_system_prompt),
    )


@entry_point
def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    check_val_fraction(args.val_fraction)  # before any request
    system = named_system_prompt(args.system_prompt)
    if args.cmd == "convert":
        table = read_table(args.traces)
        if "prompt" not in table.columns or table.empty:
            raise ValueError(f"{args.traces}: needs a 'prompt' column and 'reasoning'+'answer' or 'response'")
        check_text_column(table, "prompt", args.traces)
        for column in ("reasoning", "answer", "response"):
            if column in table.columns:  # null = empty (dropped); a list or number is an error
                check_text_column(table, column, args.traces, allow_null=True)
        records = table.to_dict("records")
        stats = write_sft(records, args.out, system, args.val_fraction)
        print(json.dumps(stats, indent=2))
        return
    cfg = trace_config(args)
    if cfg.timeout_s <= 0:
        raise ValueError(f"--timeout must be > 0, got {cfg.timeout_s}")
    prompts = select_prompts(cfg)
    log_path = os.path.join(cfg.out, "traces.jsonl")
    with exclusive_writer(log_path):  # held through the parquet, so no other run changes the log meanwhile
        new, failures = asyncio.run(generate_traces(cfg, prompts, lock=False))
        done = read_done(log_path)
        expected = len(prompts) * cfg.samples
        wanted = {(pid, k) for pid in prompts["prompt_id"] for k in range(cfg.samples)}
        records = [r for key, r in sorted(done.items()) if key in wanted]
        dropped = sum(is_dropped(r) for r in records)
        print(
            f"{new} new samples this run; {len(records)}/{expected} done; {failures} failed requests; "
            f"{dropped} logged with empty reasoning or answer"
        )
        if len(records) < expected and not cfg.allow_missing:
            raise SystemExit(
                f"{expected - len(records)} samples missing ({failures} failed this run): run the same "
                "command again to resume, or pass --allow-missing"
            )
        retry_hint = (
            f" {dropped} logged samples have empty reasoning or answer; after fixing the teacher, rerun "
            "with --retry-dropped to ask for them again (a plain rerun sends no request for them)."
        )
        try:
            stats = write_sft(records, cfg.out, system, args.val_fraction, cfg.seed)
        except ValueError as err:
            raise SystemExit(f"{err}.{retry_hint if dropped else ''}") from None
    if dropped and not cfg.retry_dropped:
        print(retry_hint.strip())
    print(json.dumps(stats, indent=2))


if __name__ == "__main__":
    main()
