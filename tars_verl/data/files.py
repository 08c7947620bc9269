"""Reading local tables and resumable JSONL logs; writing files atomically (temp file + rename:
never a half-written file)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import tempfile
from typing import Any

import pandas as pd

LOCAL_FORMATS = (".jsonl", ".json", ".csv", ".tsv", ".parquet")


def read_table(path: str) -> pd.DataFrame:
    """A local jsonl / json / csv / tsv / parquet file as a DataFrame (strings kept as strings).

    Every way a file can be unreadable (missing, a folder, 0 bytes, not UTF-8, not valid for its
    extension) is a ValueError / FileNotFoundError that names the file (and the line, where known).
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"data file not found: {path}")
    if os.path.isdir(path):
        raise ValueError(f"{path} is a folder; give a data file ({', '.join(LOCAL_FORMATS)})")
    ext = os.path.splitext(path)[1].lower()
    if ext not in LOCAL_FORMATS:
        raise ValueError(f"{path}: unsupported file type {ext!r}; use one of {LOCAL_FORMATS}")
    if os.path.getsize(path) == 0:
        raise ValueError(f"{path}: the file is empty (0 bytes)")
    try:
        if ext == ".jsonl":
            return _read_jsonl(path)
        if ext == ".json":
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
            return pd.DataFrame(data["data"] if isinstance(data, dict) and "data" in data else data)
        if ext in (".csv", ".tsv"):
            return pd.read_csv(
                path, sep="\t" if ext == ".tsv" else ",", keep_default_na=False, dtype=str, encoding="utf-8"
            )
        return pd.read_parquet(path)
    except UnicodeDecodeError:
        raise ValueError(
            f"{path}: not UTF-8 text ({_first_bad_utf8(path)}); re-save it as UTF-8, "
            f"e.g. iconv -f latin1 -t utf-8 {path} > fixed{ext}"
        ) from None
    except ValueError as err:  # pandas / json / pyarrow parse errors are all ValueErrors
        if str(err).startswith(path):
            raise
        raise ValueError(f"{path}: cannot be read as {ext[1:]}: {type(err).__name__}: {err}") from err


def _read_jsonl(path: str) -> pd.DataFrame:
    records = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}: line {n} is not valid JSON ({err.msg} at column {err.colno})") from None
            if not isinstance(rec, dict):
                raise ValueError(f"{path}: line {n} is a JSON {type(rec).__name__}, not an object")
            records.append(rec)
    return pd.DataFrame.from_records(records) if records else pd.DataFrame()


def _first_bad_utf8(path: str) -> str:
    with open(path, "rb") as f:
        for n, line in enumerate(f, 1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as err:
                return f"line {n}, byte {err.start}: {line[err.start : err.start + 4]!r}"
    return "invalid UTF-8"


def describe_value(value: Any) -> str:
    """How a non-text cell is named in messages: 'null', or its type and a short repr."""
    if value is None or (isinstance(value, float) and value != value):
        return "null"
    return f"{type(value).__name__} {repr(value)[:60]}"


def check_text_column(
    df: pd.DataFrame, column: str, where: str, shown_column: str | None = None, allow_null: bool = False
) -> None:
    """Every cell of ``df[column]`` must be a string: a list, dict, number or null is never turned into text.

    Raises ValueError naming ``where`` (the file), the column (``shown_column``: its name in the file) and
    the rows (the DataFrame index: 0-based data rows, header not counted).
    """
    bad = [
        (i, v)
        for i, v in df[column].items()
        if not isinstance(v, str) and not (allow_null and describe_value(v) == "null")
    ]
    if bad:
        shown = "; ".join(f"row {i}: {describe_value(v)}" for i, v in bad[:5])
        more = f"; and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise ValueError(
            f"{where}: column {shown_column or column!r} must hold text, but {len(bad)} row(s) do not "
            f"(rows counted from 0, header not counted): {shown}{more}. Fix or remove those rows."
        )


def read_done(path: str) -> dict[tuple[str, int], dict]:
    """Finished samples from the append-only log, keyed by (prompt_id, sample_idx); the last record wins.

    Only a torn LAST line (a crash mid-write: no final newline, not valid JSON) is dropped, and the file
    is cut back to the end of the last whole line so that new lines start clean. A bad line anywhere
    else is corruption: ValueError naming the file and line, and nothing is deleted. Call it while
    holding :func:`exclusive_writer` on ``path`` when the log may be written to.
    """
    done: dict[tuple[str, int], dict] = {}
    if not os.path.exists(path):
        return done
    with open(path, "rb") as f:
        data = f.read()
    lines = data.split(b"\n")  # the last element is b"" when the file ends with a newline
    offset = 0
    for n, raw in enumerate(lines, 1):
        is_tail = n == len(lines) and raw != b""  # no newline after it
        if raw.strip():
            try:
                rec = json.loads(raw)
                key = (str(rec["prompt_id"]), int(rec["sample_idx"]))
            except (ValueError, KeyError, TypeError) as err:
                if is_tail and isinstance(err, ValueError):  # incl. a UTF-8 character cut in two
                    with open(path, "r+b") as f:
                        f.truncate(offset)
                    logging.getLogger(__name__).warning(
                        "%s: dropped a partial last line (%d bytes) from an interrupted run", path, len(raw)
                    )
                    return done
                raise ValueError(
                    f"{path}: line {n} is not a valid record ({type(err).__name__}: {err}); only a torn last line "
                    f"is dropped automatically. Nothing was deleted: fix or remove line {n} by hand, then run again."
                ) from None
            done[key] = rec
            if is_tail:  # a whole record without its newline: add it, or the next line would be glued on
                with open(path, "ab") as f:
                    f.write(b"\n")
        offset += len(raw) + 1
    return done


@contextlib.contextmanager
def exclusive_writer(path: str):
    """Hold an exclusive lock for writing ``path`` (an append-only log) for the duration of the block.

    A second process asking for the same path is refused at once with a RuntimeError naming the holder
    (pid and host); the lock is the OS's (``flock`` on ``<path>.lock``), so it is released when the
    holder exits, even on a crash.
    """
    lock_path = path + ".lock"
    os.makedirs(os.path.dirname(os.path.abspath(lock_path)), exist_ok=True)
    f = open(lock_path, "a+")
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "another process"
        f.close()
        raise RuntimeError(
            f"{path} is being written by {holder} (lock {lock_path}); two writers on one file would "
            "lose or mix records. Wait for it to finish, or write to another --out."
        ) from None
    try:
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        f.flush()
        yield
    finally:
        f.close()  # closing releases the lock


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


def write_together(files: dict[str, Any]) -> None:
    """Write several outputs of one run (path -> DataFrame for parquet, anything else for JSON) so that a
    folder never mixes two runs: every file is written to a temp file first, and only when all are written
    are they renamed into place (a failure before that leaves the old files untouched)."""
    staged: list[tuple[str, str]] = []
    try:
        for path, obj in files.items():
            folder = os.path.dirname(os.path.abspath(path))
            os.makedirs(folder, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=folder)
            os.close(fd)
            staged.append((tmp, path))
            if isinstance(obj, pd.DataFrame):
                obj.to_parquet(tmp, index=False, compression="zstd")
            else:
                with open(tmp, "w") as f:
                    json.dump(obj, f, indent=2, sort_keys=True, default=str)
                    f.write("\n")
    except BaseException:
        for tmp, _ in staged:
            if os.path.exists(tmp):
                os.unlink(tmp)
        raise
    for tmp, path in staged:
        os.replace(tmp, path)


def write_parquet_atomic(df: pd.DataFrame, path: str) -> None:
    # Fixed settings so that the same rows give byte-identical files.
    _atomic(path, lambda tmp: df.to_parquet(tmp, index=False, compression="zstd"))


def write_json_atomic(obj: Any, path: str) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True, default=str)
            f.write("\n")

    _atomic(path, write)
