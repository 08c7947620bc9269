"""Reading local tables and resumable JSONL logs; writing files atomically (temp file + rename:
never a half-written file)."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from typing import Any

import pandas as pd

LOCAL_FORMATS = (".jsonl", ".json", ".csv", ".tsv", ".parquet")


def read_table(path: str) -> pd.DataFrame:
    """A local jsonl / json / csv / tsv / parquet file as a DataFrame (strings kept as strings)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"data file not found: {path}")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".jsonl":
        return pd.read_json(path, lines=True, dtype=False)
    if ext == ".json":
        with open(path) as f:
            data = json.load(f)
        return pd.DataFrame(data["data"] if isinstance(data, dict) and "data" in data else data)
    if ext in (".csv", ".tsv"):
        return pd.read_csv(path, sep="\t" if ext == ".tsv" else ",", keep_default_na=False, dtype=str)
    if ext == ".parquet":
        return pd.read_parquet(path)
    raise ValueError(f"{path}: unsupported file type {ext!r}; use one of {LOCAL_FORMATS}")


def read_done(path: str) -> dict[tuple[str, int], dict]:
    """Finished samples from the append-only log; a torn last line (crash mid-write) is dropped."""
    done: dict[tuple[str, int], dict] = {}
    if not os.path.exists(path):
        return done
    with open(path, "rb") as f:
        lines = f.read().split(b"\n")
    good_bytes = 0
    for raw in lines:
        if not raw.strip():
            good_bytes += len(raw) + 1
            continue
        try:
            rec = json.loads(raw)
        except ValueError:
            break
        done[(rec["prompt_id"], int(rec["sample_idx"]))] = rec
        good_bytes += len(raw) + 1
    size = os.path.getsize(path)
    if good_bytes < size:  # truncate the torn tail so that new lines start clean
        with open(path, "r+b") as f:
            f.truncate(min(good_bytes, size))
        logging.getLogger(__name__).warning("%s: dropped a partial last line from an interrupted run", path)
    return done


def require_columns(df: pd.DataFrame, columns: list[str], where: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{where}: missing column(s) {missing}; it has {list(df.columns)}")


def _atomic(path: str, write) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=folder)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_parquet_atomic(df: pd.DataFrame, path: str) -> None:
    # Fixed settings so that the same rows give byte-identical files.
    _atomic(path, lambda tmp: df.to_parquet(tmp, index=False, compression="zstd"))


def write_json_atomic(obj: Any, path: str) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True, default=str)
            f.write("\n")

    _atomic(path, write)
