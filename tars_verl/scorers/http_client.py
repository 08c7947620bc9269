"""Shared HTTP plumbing for served scorers: pooled connections, bounded concurrency, retries.

Retries (with exponential back-off and full jitter, honouring ``Retry-After``) cover HTTP 429, 5xx,
timeouts and connection errors. Other 4xx answers and malformed JSON are not retried. Retrying stops
after ``max_retries`` retries or ``retry_for_s`` seconds, whichever comes first (either may be null, not
both): a paid API's outage of minutes is ridden out with ``max_retries: null, retry_for_s: 600`` (the
``paper`` preset). When a request finally fails, :class:`~tars_verl.scorers.base.ScorerError` names the
endpoint, the last status, the number of attempts and how long it tried.
API keys are read from the environment variable named in the config and are never logged.

Example:
    >>> ep = HttpEndpoint("http://127.0.0.1:8000/v1", max_concurrency=64)   # doctest: +SKIP
    >>> body = await ep.post_json("/chat/completions", {"model": "m", "messages": [...]})  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import re
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

import aiohttp
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt, stop_after_delay

from .base import ScorerConfig, ScorerConfigError, ScorerError

logger = logging.getLogger(__name__)

RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


@dataclass
class HttpScorerConfig(ScorerConfig):
    """Keys shared by every HTTP back end."""

    url: str = ""
    model: str = ""
    # Name of the environment variable holding the API key (the key itself never goes in a config).
    api_key_env: str | None = None
    timeout_s: float = 120.0
    # Requests in flight at once, per reward worker process.
    max_concurrency: int = 32
    # Retries after the first attempt; null: no count limit (then retry_for_s must be set).
    max_retries: int | None = 5
    # Stop retrying once this many seconds have passed since the first attempt; null: no time limit.
    retry_for_s: float | None = None
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    # GET this path (relative to url) at start-up to fail fast on a wrong address; null skips it.
    health_path: str | None = "/models"

    def validate(self) -> None:
        super().validate()
        if not self.url:
            raise ScorerConfigError(f"{self.backend}.url is not set")
        if self.max_concurrency < 1:
            raise ScorerConfigError(f"{self.backend}.max_concurrency must be >= 1")
        if self.max_retries is None and self.retry_for_s is None:
            raise ScorerConfigError(
                f"{self.backend}: max_retries and retry_for_s are both null (retry forever); "
                "set at least one, e.g. max_retries=null retry_for_s=600"
            )
        if self.max_retries is not None and self.max_retries < 0:
            raise ScorerConfigError(f"{self.backend}.max_retries must be >= 0 or null, got {self.max_retries}")
        if self.retry_for_s is not None and self.retry_for_s <= 0:
            raise ScorerConfigError(f"{self.backend}.retry_for_s must be > 0 or null, got {self.retry_for_s}")
        if self.backoff_initial_s < 0 or self.backoff_max_s < self.backoff_initial_s:
            raise ScorerConfigError(
                f"{self.backend}: need 0 <= backoff_initial_s <= backoff_max_s, got "
                f"{self.backoff_initial_s}, {self.backoff_max_s}"
            )
        if self.api_key_env and not os.environ.get(self.api_key_env):
            raise ScorerConfigError(
                f"{self.backend}: environment variable {self.api_key_env} is not set; export the API key there "
                f"(or set {self.backend}.api_key_env=null for a server without authentication)."
            )


SECRET_QUERY_KEYS = ("key", "token", "secret", "sig", "signature", "password", "auth", "code")


def redact_url(url: str) -> str:
    """``url`` for messages: a ``user:password@`` part and secret-looking query values become ``***``."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    if any(any(s in k.lower() for s in SECRET_QUERY_KEYS) for k, _ in query):
        query_text = "&".join(
            f"{k}=***" if any(s in k.lower() for s in SECRET_QUERY_KEYS) else f"{k}={v}" for k, v in query
        )
    else:
        query_text = parts.query
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query_text, parts.fragment))


_USERINFO_RE = re.compile(r"(\b[a-zA-Z][\w+.-]*://)[^/\s@'\"]+@")
_SECRET_QUERY_RE = re.compile(r"([?&][\w-]*(?:" + "|".join(SECRET_QUERY_KEYS) + r")[\w-]*=)[^&\s'\"]+", re.IGNORECASE)


def redact_text(text: str) -> str:
    """``text`` with every URL's ``user:password@`` and secret-looking query values replaced by ``***``
    (for messages built from user input, e.g. a command-line override holding a URL)."""
    return _SECRET_QUERY_RE.sub(r"\1***", _USERINFO_RE.sub(r"\1***@", text))


def url_secrets(url: str) -> list[str]:
    """The secret parts of a URL (password, secret query values), to scrub from any text shown."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return [url]
    found = [parts.password] if parts.password else []
    found += [v for k, v in urllib.parse.parse_qsl(parts.query) if any(s in k.lower() for s in SECRET_QUERY_KEYS)]
    return [f for f in found if len(f) >= 4]


def scrub(text: str, secrets: list[str]) -> str:
    """``text`` with every secret (API key, URL password, also percent-encoded) replaced by ``***``."""
    for secret in secrets:
        for form in {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret)}:
            text = text.replace(form, "***")
    return text


class _RetryableHttpError(Exception):
    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class HttpEndpoint:
    """One base URL; an ``aiohttp.ClientSession`` per event loop (sessions cannot cross loops).

    aiohttp, not httpx: against a local server, 256 concurrent requests took 0.035 s with aiohttp and
    0.62 s with httpx 0.28 (benchmarks/bench_reward.py measures the end-to-end effect).
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout_s: float = 120.0,
        max_concurrency: int = 32,
        max_retries: int | None = 5,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        retry_for_s: float | None = None,
    ):
        self._url = base_url.rstrip("/")
        # What messages show: no password or secret query value (requests use self._url).
        self.base_url = redact_url(self._url)
        self._secrets = url_secrets(self._url) + ([api_key] if api_key and len(api_key) >= 4 else [])
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.timeout_s = timeout_s
        self.max_concurrency = max_concurrency
        self.max_retries = max_retries
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.retry_for_s = retry_for_s
        self._per_loop: dict[int, tuple[aiohttp.ClientSession, asyncio.Semaphore]] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, cfg: HttpScorerConfig, url: str | None = None) -> HttpEndpoint:
        return cls(
            url or cfg.url,
            api_key=os.environ.get(cfg.api_key_env) if cfg.api_key_env else None,
            timeout_s=cfg.timeout_s,
            max_concurrency=cfg.max_concurrency,
            max_retries=cfg.max_retries,
            backoff_initial_s=cfg.backoff_initial_s,
            backoff_max_s=cfg.backoff_max_s,
            retry_for_s=cfg.retry_for_s,
        )

    def _client(self) -> tuple[aiohttp.ClientSession, asyncio.Semaphore]:
        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self._per_loop.get(id(loop))
            if entry is None or entry[0].closed:
                # Pooled keep-alive connections, at most max_concurrency of them.
                connector = aiohttp.TCPConnector(limit=self.max_concurrency, limit_per_host=self.max_concurrency)
                client = aiohttp.ClientSession(
                    headers=self._headers, connector=connector, timeout=aiohttp.ClientTimeout(total=self.timeout_s)
                )
                entry = (client, asyncio.Semaphore(self.max_concurrency))
                self._per_loop[id(loop)] = entry
            return entry

    def _wait(self, state: RetryCallState) -> float:
        # Full jitter: uniform in [0, min(max, initial * 2^n)], but never sooner than Retry-After.
        cap = min(self.backoff_max_s, self.backoff_initial_s * (2 ** (state.attempt_number - 1)))
        delay = random.uniform(0, cap)
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _RetryableHttpError) and exc.retry_after is not None:
            delay = max(delay, min(exc.retry_after, self.backoff_max_s))
        return delay

    async def request_json(
        self, method: str, path: str, payload: dict[str, Any] | None = None, parse_json: bool = True
    ) -> Any:
        """The JSON body of a 2xx answer (or its text with ``parse_json=False``: vLLM's ``/health`` is empty)."""
        url = self._url + path
        shown = self.base_url + path
        client, sem = self._client()
        last = "no attempt made"
        started, attempts = time.monotonic(), 0
        stops = ([stop_after_attempt(self.max_retries + 1)] if self.max_retries is not None else []) + (
            [stop_after_delay(self.retry_for_s)] if self.retry_for_s is not None else []
        )
        if not stops:
            raise ValueError(f"{shown}: max_retries and retry_for_s are both None (would retry forever)")
        stop = stops[0] if len(stops) == 1 else stops[0] | stops[1]
        try:
            async for attempt in AsyncRetrying(
                stop=stop,
                wait=self._wait,
                retry=retry_if_exception_type(_RetryableHttpError),
                reraise=True,
            ):
                with attempt:
                    async with sem:
                        attempts += 1
                        try:
                            async with client.request(method, url, json=payload) as resp:
                                status, text = resp.status, await resp.text()
                                retry_after = _retry_after(resp.headers.get("retry-after"))
                        except (asyncio.TimeoutError, aiohttp.ClientError) as err:
                            last = f"{type(err).__name__}: {err}"
                            raise _RetryableHttpError(last) from err
                    if status in RETRYABLE_STATUS:
                        last = f"HTTP {status}: {text[:200]}"
                        raise _RetryableHttpError(last, retry_after)
                    if status >= 400:
                        raise ScorerError(
                            scrub(f"{method} {shown} answered HTTP {status}: {text[:300]}", self._secrets)
                        )
                    if not parse_json:
                        return text
                    try:
                        return json.loads(text)
                    except ValueError as err:
                        raise ScorerError(
                            scrub(f"{method} {shown} returned malformed JSON: {text[:200]!r}", self._secrets)
                        ) from err
        except _RetryableHttpError:
            limits = f"max_retries={self.max_retries}, retry_for_s={self.retry_for_s}"
            tried = time.monotonic() - started
            raise ScorerError(
                scrub(
                    f"{method} {shown} failed after {attempts} attempts over {tried:.1f} s ({limits}); last: {last}",
                    self._secrets,
                )
            ) from None

    def scrub(self, text: str) -> str:
        """``text`` without this endpoint's API key or URL password (for any message shown or logged)."""
        return scrub(text, self._secrets)

    async def post_json(self, path: str, payload: dict[str, Any]) -> Any:
        return await self.request_json("POST", path, payload)

    async def aclose(self) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self._per_loop.pop(id(loop), None)
        if entry is not None:
            await entry[0].close()


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def check_endpoint_sync(cfg: HttpScorerConfig, url: str | None = None) -> None:
    """GET ``health_path`` in a private event loop (safe from any thread). Raises ScorerError naming the URL."""
    if cfg.health_path is None:
        return

    async def probe() -> None:
        ep = HttpEndpoint.from_config(cfg, url)
        # Fail fast at start-up: a few quick retries, not the run's outage budget.
        ep.max_retries = 2 if cfg.max_retries is None else min(cfg.max_retries, 2)
        ep.retry_for_s = None
        try:
            await ep.request_json("GET", cfg.health_path, parse_json=False)  # any 2xx will do, whatever the body
        finally:
            await ep.aclose()

    result: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(probe())
        except BaseException as err:  # noqa: BLE001 - re-raised in the caller's thread
            result.append(err)

    # A thread keeps this usable from inside a running event loop (Ray async actors).
    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join()
    if result:
        err = result[0]
        target = url or cfg.url
        raise ScorerError(
            scrub(f"{cfg.backend}: start-up check of {redact_url(target)} failed: {err}", url_secrets(target))
        ) from err
