"""Downloading a published file (a judge's prompts or rubric, reference hashes, a benchmark list): one function for
every reader of a URL, so that each gets the same checks.

- :func:`download`: the bytes at an http(s) URL, or an error naming the URL (credentials redacted) for every way it
  can go wrong: HTTP errors (404 is :class:`FileNotFoundError`), a connection cut short (fewer bytes than the
  server announced), a reply over ``max_mb``, and a reply that is an HTML page (a login, error or "file not found"
  page served with status 200) instead of the file. Credentials in the URL (``https://user:token@host/...``) are
  sent as a ``Basic`` header that is not forwarded on redirects, and never shown.
- :func:`fetch_cached`: :func:`download` once into a cache folder (one file per URL), then read from there. A
  ``check`` (the caller's parser) runs BEFORE anything is cached, so a wrong file never poisons later runs; a cached
  file that fails it is an error naming that cache file.

>>> looks_like_html(b"<!DOCTYPE html><html><body>Sign in</body></html>", "text/plain")
True
>>> looks_like_html(b"LLAMA2_CLS_PROMPT = {}", "text/plain")
False
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable

from tars_verl.redaction import redact_url, register_url

MAX_DOWNLOAD_MB = 256.0


def looks_like_html(data: bytes, content_type: str | None = None) -> bool:
    """True for an HTML page: served as ``text/html``, or starting with ``<!doctype html`` / ``<html``."""
    if content_type and content_type.split(";")[0].strip().lower() in ("text/html", "application/xhtml+xml"):
        return True
    head = data[:512].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html"))


def _request(url: str) -> urllib.request.Request:
    parts = urllib.parse.urlsplit(url)
    if parts.username is None:
        return urllib.request.Request(url)
    # urllib does not send a URL's userinfo: send it as Basic auth, never to the target of a redirect.
    netloc = parts.netloc.rsplit("@", 1)[1]
    request = urllib.request.Request(urllib.parse.urlunsplit(parts._replace(netloc=netloc)))
    user = urllib.parse.unquote(parts.username)
    password = urllib.parse.unquote(parts.password or "")
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    request.add_unredirected_header("Authorization", f"Basic {token}")
    return request


def download(
    url: str, what: str = "file", hint: str = "", max_mb: float = MAX_DOWNLOAD_MB, timeout_s: float = 60.0
) -> bytes:
    """The bytes at ``url``. Every failure names ``what`` and the URL (redacted), plus ``hint`` (what to do)."""
    shown = register_url(url)
    hint = f"; {hint}" if hint else ""
    limit = int(max_mb * 2**20)
    try:
        with urllib.request.urlopen(_request(url), timeout=timeout_s) as resp:  # noqa: S310 - a URL the user chose
            declared = resp.headers.get("Content-Length")
            content_type = resp.headers.get("Content-Type")
            chunks, size = [], 0
            while True:
                chunk = resp.read(1 << 20)
                if not chunk:
                    break
                size += len(chunk)
                if size > limit:
                    raise OSError(f"{what}: {shown} sent more than {max_mb:g} MB; not the file expected{hint}")
                chunks.append(chunk)
    except urllib.error.HTTPError as err:
        cls = FileNotFoundError if err.code == 404 else OSError
        raise cls(f"{what}: {shown} answered HTTP {err.code}{hint}") from None
    except http.client.IncompleteRead as err:
        raise OSError(
            f"{what}: the download of {shown} was cut short ({len(err.partial)} bytes received); nothing was kept{hint}"
        ) from None
    except (OSError, http.client.HTTPException, ValueError) as err:
        if str(err).startswith(what):
            raise
        raise OSError(f"{what}: cannot download {shown} ({type(err).__name__}: {err}){hint}") from None
    data = b"".join(chunks)
    if declared and declared.strip().isdigit() and len(data) != int(declared):
        raise OSError(
            f"{what}: the download of {shown} was cut short ({len(data)} of {int(declared)} bytes); nothing was "
            f"kept{hint}"
        )
    if looks_like_html(data, content_type):
        raise OSError(
            f"{what}: {shown} returned an HTML page, not the file (a login, error or 'not found' page?); "
            f"nothing was kept{hint}"
        )
    return data


def cache_root(*parts: str) -> str:
    """The project's cache folder, ``$TARS_CACHE_DIR`` or ``~/.cache/tars_verl``, joined with ``parts``."""
    return os.path.join(
        os.environ.get("TARS_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "tars_verl"), *parts
    )


def cache_path(url: str, cache_dir: str) -> str:
    """Where :func:`fetch_cached` keeps ``url``: named by a hash of the (redacted) URL and its last path part."""
    shown = redact_url(url)
    name = re.sub(r"[^A-Za-z0-9._-]", "_", urllib.parse.urlsplit(shown).path.rsplit("/", 1)[-1])[:80] or "file"
    return os.path.join(cache_dir, f"{hashlib.sha256(shown.encode()).hexdigest()[:16]}-{name}")


def fetch_cached(
    url: str, cache_dir: str, what: str = "file", hint: str = "", check: Callable[[bytes], object] | None = None
) -> bytes:
    """The bytes at ``url``, downloaded once into ``cache_dir`` and read from there after.

    ``check(data)`` (raising ValueError when the bytes are not the file expected) runs before the download is
    cached, and on a cached copy: a bad cached copy is an error naming the cache file (delete it to download again).
    """
    path = cache_path(url, cache_dir)
    if os.path.exists(path):
        with open(path, "rb") as f:
            data = f.read()
        problem = "an HTML page" if looks_like_html(data) else None
        if problem is None and check is not None:
            try:
                check(data)
            except ValueError as err:
                problem = str(err)
        if problem:
            raise ValueError(
                f"{what}: the cached copy of {redact_url(url)} in {path} is not usable ({problem}); delete that "
                f"file to download it again"
            )
        return data
    data = download(url, what, hint)
    if check is not None:
        try:
            check(data)
        except ValueError as err:
            shown = redact_url(url)
            raise ValueError(f"{what}: {shown} is not the file expected ({err}); nothing was cached") from None
    os.makedirs(cache_dir, exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)  # atomic: a crash never leaves a half file that later runs would trust
    return data
