"""Secrets never leave the process: one scrubber for every message, log record, stream and file the project writes.

A credential reaches text in many forms; :func:`scrub` removes every one of them:

- each **registered secret** (an API key read from the environment, a URL's password or token), raw and in the
  forms it travels in: percent-encoded, JSON-escaped, base64 (alone, and as the ``Basic`` header value
  ``base64(user:password)`` that an HTTP client sends for a URL with userinfo);
- any URL's **userinfo** (``http://user:pw@host`` -> ``http://***@host``);
- ``Authorization`` header values (``Bearer <token>``, ``Basic <base64 of user:password>``);
- secret-looking **query parameters** (``?key=``, ``api_key=``, ``token=``, ``sig=`` ...) and ``name: value`` pairs
  (``api_key=...``, ``"password": "..."``);
- well-known key shapes (``sk-...``, ``hf_...``, ``ghp_...``).

Where it is applied (so that callers rarely call it themselves):

- the project's exceptions scrub their message when they are made (:mod:`tars_verl.errors`); entry points scrub
  whatever escapes them (:func:`entry_point`);
- log records of every logger, stdout/stderr and uncaught exceptions, once :func:`install` ran (entry points, the
  reward manager, and every process of a launched training job);
- every file written through :mod:`tars_verl.data.files` (JSON, text, parquet metadata; data cells and JSONL
  records lose registered secrets only, see :func:`scrub_known`).

Secrets are registered where they enter: :class:`~tars_verl.scorers.http_client.HttpEndpoint` registers its API
key and URL credentials, an entry point its ``--*-url`` arguments (:func:`register_url`) and ``--api-key-env``
(:func:`register_env_secret`).

>>> register_secret("sk-doc-example-0123456789")
>>> scrub("POST http://bob:pa55word@host/v1?api_key=abc123 failed: bad key sk-doc-example-0123456789")
'POST http://***@host/v1?api_key=*** failed: bad key ***'
>>> scrub("echoed header: Basic " + "Ym9iOnBhNTV3b3Jk")  # base64("bob:pa55word")
'echoed header: Basic ***'
>>> redact_url("https://user:pw@api.example.com/v1?api-version=2&key=k")
'https://***@api.example.com/v1?api-version=2&key=***'
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import json
import logging
import os
import re
import sys
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

MASK = "***"
# Shorter values are not registered: replacing a 3-letter word everywhere would garble every message (the
# patterns below still hide them where they stand in a URL or a header).
MIN_SECRET_CHARS = 4

SECRET_QUERY_KEYS = ("key", "token", "secret", "sig", "signature", "password", "passwd", "auth", "code", "credential")
_KV_NAMES = (
    r"api[_-]?key|apikey|x-api-key|access[_-]?token|auth[_-]?token|refresh[_-]?token|id[_-]?token|bearer[_-]?token"
    r"|client[_-]?secret|secret[_-]?key|private[_-]?key|password|passwd"
)
_PATTERNS: list[tuple[re.Pattern, Any]] = [
    # scheme://user:password@host -> scheme://***@host
    (re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@'\"<>]+@"), r"\1***@"),
    # Authorization: <anything>, in a header dump, a dict repr or JSON
    (re.compile(r"(authorization[\"']?\s*[:=]\s*[\"']?)(?:[A-Za-z]+\s+)?[^\s\"',}]+", re.IGNORECASE), r"\1***"),
    (re.compile(r"\b(Bearer\s+)[A-Za-z0-9._~+/=:-]+"), r"\1***"),
    # ?key=... &access_token=... (any parameter whose name holds a secret word)
    (
        re.compile(r"([?&;][^=&\s#?]*(?:" + "|".join(SECRET_QUERY_KEYS) + r")[^=&\s#?]*=)[^&\s#'\"<>]+", re.IGNORECASE),
        r"\1***",
    ),
    # api_key=..., "password": "..."
    (re.compile(r"((?:" + _KV_NAMES + r")[\"']?\s*[:=]\s*[\"']?)[^\s\"',}&]+", re.IGNORECASE), r"\1***"),
    # well-known key shapes: OpenAI, Hugging Face, GitHub
    (re.compile(r"\b(?:sk-[A-Za-z0-9_-]{16,}|hf_[A-Za-z0-9]{20,}|gh[pousr]_[A-Za-z0-9]{20,})"), MASK),
]
_BASIC_RE = re.compile(r"\b(Basic\s+)([A-Za-z0-9+/_-]{4,}={0,2})")

_lock = threading.Lock()
_forms: tuple[str, ...] = ()  # every registered form, longest first (so that no shorter one cuts a longer one)


def _b64_forms(raw: bytes) -> set[str]:
    out = set()
    for enc in (base64.b64encode(raw), base64.urlsafe_b64encode(raw)):
        text = enc.decode("ascii")
        out |= {text, text.rstrip("=")}
    return out


def secret_forms(value: str, username: str | None = None) -> set[str]:
    """The forms ``value`` takes in text: raw, percent-encoded, JSON-escaped, base64; with ``username``, also
    the ``Basic`` credentials ``base64(username:value)``."""
    forms = {value, urllib.parse.quote(value, safe=""), urllib.parse.quote_plus(value), json.dumps(value)[1:-1]}
    forms |= _b64_forms(value.encode("utf-8"))
    if username is not None:
        for encoding in ("utf-8", "latin-1"):
            with contextlib.suppress(UnicodeEncodeError):
                forms |= _b64_forms(f"{username}:{value}".encode(encoding))
    return {f for f in forms if len(f) >= MIN_SECRET_CHARS}


def register_secret(value: str | None, username: str | None = None) -> None:
    """Scrub ``value`` (and its encoded forms) from every text shown or written from now on, in this process."""
    global _forms
    if not value or len(value) < MIN_SECRET_CHARS and username is None:
        return
    forms = secret_forms(value, username)
    if len(value) < MIN_SECRET_CHARS:  # a short password: only its Basic form is distinctive enough
        forms = {f for f in forms if f not in (value, urllib.parse.quote(value, safe=""))}
    with _lock:
        new = forms - set(_forms)
        if new:
            _forms = tuple(sorted(set(_forms) | new, key=len, reverse=True))


def register_env_secret(name: str | None) -> str | None:
    """Register the value of environment variable ``name`` (an API key) and return it (None when unset)."""
    value = os.environ.get(name) if name else None
    register_secret(value)
    return value


def url_credentials(url: str) -> list[tuple[str | None, str]]:
    """(username, secret) of a URL: its password (or a token given as the username alone) and secret query values."""
    try:
        parts = urllib.parse.urlsplit(url)
        username, password = parts.username, parts.password
        query = urllib.parse.parse_qsl(parts.query, keep_blank_values=False)
    except ValueError:
        return []
    found: list[tuple[str | None, str]] = []
    if password:
        found.append((urllib.parse.unquote(username or ""), urllib.parse.unquote(password)))
    elif username:
        found.append((None, urllib.parse.unquote(username)))
    found += [(None, v) for k, v in query if _is_secret_key(k)]
    return found


def register_url(url: str | None) -> str:
    """Register a URL's credentials (:func:`url_credentials`); returns the URL as messages show it
    (:func:`redact_url`)."""
    if not url:
        return url or ""
    for username, secret in url_credentials(url):
        register_secret(secret, username)
    return redact_url(url)


def _is_secret_key(name: str) -> bool:
    return any(s in name.lower() for s in SECRET_QUERY_KEYS)


def redact_url(url: str) -> str:
    """``url`` for messages and files: ``user:password@`` and secret-looking query values become ``***``."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return scrub(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = MASK + "@" + netloc.rsplit("@", 1)[1]
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    if any(_is_secret_key(k) for k, _ in query):
        query_text = "&".join(f"{k}={MASK}" if _is_secret_key(k) else f"{k}={v}" for k, v in query)
    else:
        query_text = parts.query
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query_text, parts.fragment))


def _basic(match: re.Match) -> str:
    token = match.group(2)
    try:
        altchars = b"-_" if "-" in token or "_" in token else None
        decoded = base64.b64decode(token + "=" * (-len(token) % 4), altchars=altchars)
    except (binascii.Error, ValueError):
        return match.group(0)
    # "Basic <base64 of user:password>"; leave prose ("Basic checks") alone.
    return match.group(1) + MASK if b":" in decoded else match.group(0)


def scrub_known(text: str) -> str:
    """``text`` without any registered secret (in any of its forms). For DATA (generated text, traces), where the
    patterns of :func:`scrub` could change legitimate content."""
    for form in _forms:
        if form in text:
            text = text.replace(form, MASK)
    return text


def scrub(text: str) -> str:
    """``text`` for a message, a log line or a metadata file: registered secrets and every credential pattern
    (URL userinfo, Authorization values, secret query parameters and name=value pairs, known key shapes) hidden."""
    if not isinstance(text, str) or not text:
        return text
    text = scrub_known(text)
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return _BASIC_RE.sub(_basic, text)


def _walk(obj: Any, fn: Callable[[str], str]) -> Any:
    if isinstance(obj, str):
        return fn(obj)
    if isinstance(obj, dict):
        return {_walk(k, fn): _walk(v, fn) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_walk(v, fn) for v in obj) if isinstance(obj, list) else tuple(_walk(v, fn) for v in obj)
    return obj


def scrub_obj(obj: Any) -> Any:
    """A copy of a JSON-like object (dicts, lists, strings) with :func:`scrub` applied to every string."""
    return _walk(obj, scrub)


def scrub_known_obj(obj: Any) -> Any:
    """A copy of a JSON-like object with :func:`scrub_known` applied to every string (data records)."""
    return _walk(obj, scrub_known) if _forms else obj


def has_registered_secrets() -> bool:
    return bool(_forms)


def scrub_exception(err: BaseException | None) -> None:
    """Scrub the message of ``err`` and of every exception chained to it, in place (what a traceback prints)."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        with contextlib.suppress(Exception):
            err.args = tuple(scrub(a) if isinstance(a, str) else a for a in err.args)
            if isinstance(err, OSError):
                for attr in ("strerror", "filename", "filename2"):
                    value = getattr(err, attr, None)
                    if isinstance(value, str):
                        setattr(err, attr, scrub(value))
            if isinstance(getattr(err, "msg", None), str):
                err.msg = scrub(err.msg)  # JSONDecodeError, SyntaxError, HTTPError print it
            notes = getattr(err, "__notes__", None)
            if isinstance(notes, list):
                err.__notes__ = [scrub(n) if isinstance(n, str) else n for n in notes]
        err = err.__cause__ or err.__context__


# -- where text leaves the process -------------------------------------------------------------------------------
class ScrubbingStream:
    """A text stream (stdout/stderr) whose every write is scrubbed; everything else is the wrapped stream's."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text):
        self._stream.write(scrub(text) if isinstance(text, str) else text)
        return len(text)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name):
        return getattr(self._stream, name)


def _scrub_record(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a record that cannot format: leave it to logging's own error report
        return
    shown = scrub(message)
    if shown != message:
        record.msg, record.args = shown, None
    if record.exc_info and not record.exc_text:
        record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
    if record.stack_info:
        record.stack_info = scrub(record.stack_info)


_installed = False


def install(streams: bool = True) -> None:
    """Scrub every log record (of any logger: a record factory, so handlers added later are covered too), and with
    ``streams`` also ``sys.stdout``/``sys.stderr`` and uncaught exceptions (main thread and threads). Registers the
    values of the variables named in ``$TARS_SECRET_ENV`` (comma-separated). Idempotent."""
    global _installed
    for name in filter(None, os.environ.get("TARS_SECRET_ENV", "").split(",")):
        register_env_secret(name.strip())
    with _lock:
        first = not _installed
        _installed = True
    if first:
        previous = logging.getLogRecordFactory()

        def factory(*args, **kwargs):
            record = previous(*args, **kwargs)
            _scrub_record(record)
            return record

        logging.setLogRecordFactory(factory)
        hook = sys.excepthook

        def excepthook(kind, value, tb):
            scrub_exception(value)
            hook(kind, value, tb)

        sys.excepthook = excepthook
        thread_hook = threading.excepthook

        def thread_excepthook(args):
            scrub_exception(args.exc_value)
            thread_hook(args)

        threading.excepthook = thread_excepthook
    if streams:
        for name in ("stdout", "stderr"):
            stream = getattr(sys, name)
            if stream is not None and not isinstance(stream, ScrubbingStream):
                setattr(sys, name, ScrubbingStream(stream))


@contextlib.contextmanager
def scrubbed_errors() -> Iterator[None]:
    """Whatever exception leaves the block has its message (and its chain's) scrubbed in place."""
    try:
        yield
    except BaseException as err:
        scrub_exception(err)
        raise


def entry_point(main: Callable) -> Callable:
    """Decorator for a command's ``main``: :func:`install` first, and no secret in an exception that escapes it.

    @entry_point
    def main(argv=None): ...
    """

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        install()
        with scrubbed_errors():
            return main(*args, **kwargs)

    return wrapper
