"""Reading local tables, JSON files and resumable JSONL logs; writing files atomically (temp file + rename: never a
half-written file), multi-file outputs together (:func:`write_together`) or as a whole folder (:func:`write_folder`),
and never a secret (:mod:`tars_verl.redaction`)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
import socket
import sys
import tempfile
from typing import Any

import pandas as pd

from tars_verl.redaction import has_registered_secrets, scrub, scrub_known_obj, scrub_obj

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


def check_file_name(name: str, what: str) -> str:
    """``name`` where it becomes a file name (a ``--model`` name, a BehaviorID): letters, digits and ``_ - . +``,
    not starting with ``.`` or ``-``: never a hidden file, a path outside the folder or an option. Returns it.

    >>> check_file_name("tars-7b_v2", "--model name")
    'tars-7b_v2'
    >>> check_file_name("../x", "--model name")
    Traceback (most recent call last):
    ...
    ValueError: --model name '../x' cannot name a file: use letters, digits, '_', '-', '.', '+' (not first: '.', '-')
    """
    if not isinstance(name, str) or not _FILE_NAME_RE.fullmatch(name) or ".." in name:
        raise ValueError(
            f"{what} {name!r} cannot name a file: use letters, digits, '_', '-', '.', '+' (not first: '.', '-')"
        )
    return name


_FILE_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,199}")


def read_json_file(path: str, what: str = "JSON file") -> Any:
    """A whole JSON file, or an error naming ``what``, the file and where it breaks: not UTF-8 (line, byte), not
    valid JSON (line, column; a truncated file says so), missing or empty."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"{what} not found: {path}")
    if os.path.isdir(path):
        raise ValueError(f"{what} {path} is a folder, not a JSON file")
    with open(path, "rb") as f:
        raw = f.read()
    if not raw.strip():
        raise ValueError(f"{what} {path} is empty")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(
            f"{what} {path}: not UTF-8 text ({_first_bad_utf8(path)}); re-save it as UTF-8, e.g. "
            f"iconv -f latin1 -t utf-8 {path} > fixed.json"
        ) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        ends = err.pos >= len(text.rstrip()) or err.msg.startswith("Unterminated string")
        cut = " (the file ends there: truncated?)" if ends else ""
        raise ValueError(
            f"{what} {path}: not valid JSON at line {err.lineno}, column {err.colno}: {err.msg}{cut}"
        ) from None


# -- writing: atomic, scrubbed -------------------------------------------------------------------------------------
# What the project writes never holds a secret (tars_verl.redaction): JSON (settings, stats, results) and text
# files, and the metadata of a parquet file, are scrubbed of every credential pattern; data (table cells, generated
# text in a JSONL log, attack test cases) loses the registered secrets only, so that a prompt that merely looks like
# a URL with a password is kept as it is.


def _scrubbed_frame(df: pd.DataFrame) -> pd.DataFrame:
    attrs = scrub_obj(dict(df.attrs)) if df.attrs else {}
    if has_registered_secrets():
        df = df.copy()
        for col in df.columns:
            if pd.api.types.is_object_dtype(df[col]) or pd.api.types.is_string_dtype(df[col]):
                df[col] = df[col].map(scrub_known_obj)
    elif attrs != df.attrs:
        df = df.copy()
    df.attrs = attrs
    return df


def _write_obj(obj: Any, path: str) -> None:
    """One output file: a DataFrame as parquet (fixed settings: the same rows give byte-identical files), text,
    bytes, or anything else as JSON."""
    if isinstance(obj, pd.DataFrame):
        _scrubbed_frame(obj).to_parquet(path, index=False, compression="zstd")
    elif isinstance(obj, bytes):
        with open(path, "wb") as f:
            f.write(obj)
    elif isinstance(obj, str):
        with open(path, "w", encoding="utf-8") as f:
            f.write(scrub(obj))
    else:
        _write_json(obj, path)


def _write_json(obj: Any, path: str, data: bool = False) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(scrub_known_obj(obj) if data else scrub_obj(obj), f, indent=2, sort_keys=True, default=str)
        f.write("\n")


def append_jsonl(log, record: dict) -> None:
    """Append one record to an open append-only JSONL log (registered secrets scrubbed; the caller flushes)."""
    append_jsonl_many(log, [record])


def append_jsonl_many(log, records: list[dict]) -> None:
    """:func:`append_jsonl` for several records, in one write (whole lines only; the caller flushes)."""
    log.write("".join(json.dumps(scrub_known_obj(r), ensure_ascii=False) + "\n" for r in records))


def _atomic(path: str, write) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=folder)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_together(files: dict[str, Any], remove: tuple[str, ...] | list[str] = ()) -> None:
    """Write several outputs of one run that share a folder with other files (a resumable log beside them), so that
    the folder does not mix two runs: every file is written to a temp file first, and only when all are written
    are they renamed into place (a failure before that leaves the old files untouched); then each path in
    ``remove`` (an output of an earlier run that this one does not write) is deleted. A folder that holds only
    one command's outputs is written whole with :func:`write_folder` instead."""
    staged: list[tuple[str, str]] = []
    try:
        for path, obj in files.items():
            folder = os.path.dirname(os.path.abspath(path))
            os.makedirs(folder, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=folder)
            os.close(fd)
            staged.append((tmp, path))
            _write_obj(obj, tmp)
            os.chmod(tmp, 0o666 & ~_umask())
    except BaseException:
        for tmp, _ in staged:
            if os.path.exists(tmp):
                os.unlink(tmp)
        raise
    for tmp, path in staged:
        os.replace(tmp, path)
    written = {os.path.abspath(p) for p in files}
    for path in remove:
        if os.path.abspath(path) not in written and os.path.lexists(path):
            os.unlink(path)


def write_folder(folder: str, files: dict[str, Any], owned: tuple[str, ...] | list[str] = ()) -> None:
    """Write one run's outputs as a whole folder: ``files`` ({name: object}, see :func:`write_together` for the
    kinds) are written into a staging folder beside ``folder``, which then takes its place in one step (an atomic
    exchange where the OS has one, else two renames). The folder never mixes two runs, a failure leaves the old one
    as it was, and no output of an earlier run survives that this run does not write (a stale ``val.parquet``).

    ``folder`` is this command's: an entry in it other than ``files`` and ``owned`` (names an earlier run may have
    written) is an error naming it, and nothing is written, so a user's own files are never deleted.
    """
    folder = os.path.abspath(folder)
    names = set(files) | set(owned)
    for name in files:
        if os.path.basename(name) != name or name in ("", ".", ".."):
            raise ValueError(f"write_folder: {name!r} is not a file name")
    if os.path.lexists(folder):
        if not os.path.isdir(folder) or os.path.islink(folder):
            raise ValueError(f"{folder} exists and is not a folder; give a folder for the outputs")
        foreign = sorted(e for e in os.listdir(folder) if e not in names and not _is_leftover(e, names))
        if foreign:
            raise ValueError(
                f"{folder} holds {foreign[:10]}{' ...' if len(foreign) > 10 else ''} besides this command's outputs "
                f"({sorted(names)}); each run replaces the folder whole, so write to a new or dedicated folder "
                f"(nothing was written)"
            )
    parent = os.path.dirname(folder)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(folder)}.staging-", dir=parent)
    try:
        for name, obj in files.items():
            _write_obj(obj, os.path.join(staging, name))
            os.chmod(os.path.join(staging, name), 0o666 & ~_umask())
        os.chmod(staging, 0o777 & ~_umask())
        if not os.path.lexists(folder):
            os.rename(staging, folder)
            return
        if _exchange(staging, folder):  # staging now holds the old folder
            shutil.rmtree(staging, ignore_errors=True)
            return
        aside = f"{staging}.old"
        os.rename(folder, aside)
        try:
            os.rename(staging, folder)
        except BaseException:
            os.rename(aside, folder)
            raise
        shutil.rmtree(aside, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _is_leftover(entry: str, names: set[str]) -> bool:
    """A temp file of an interrupted earlier write of one of ``names`` (``.<name>.<random>``)."""
    return any(entry.startswith(f".{n}.") for n in names)


def _exchange(a: str, b: str) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False where the OS or filesystem has no such
    call (the caller falls back to two renames)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    ok = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0
    return ok


def write_parquet_atomic(df: pd.DataFrame, path: str) -> None:
    _atomic(path, lambda tmp: _write_obj(df, tmp))


def write_json_atomic(obj: Any, path: str, data: bool = False) -> None:
    """A JSON file, written atomically. Settings, stats and results are scrubbed of every credential pattern;
    ``data=True`` (texts such as attack test cases, which may legitimately look like a URL with a password) only
    of the registered secrets."""
    _atomic(path, lambda tmp: _write_json(obj, tmp, data))


def write_text_atomic(text: str, path: str) -> None:
    """A text file (a report), scrubbed of every credential pattern, written atomically."""
    _atomic(path, lambda tmp: _write_obj(text, tmp))
