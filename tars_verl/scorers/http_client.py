"""Shared HTTP plumbing for served scorers: pooled connections, bounded concurrency, retries.

Retries (with exponential back-off and full jitter, honouring ``Retry-After``) cover HTTP 429, 5xx,
timeouts and connection errors. Other 4xx answers and malformed JSON are not retried. Retrying stops
after ``max_retries`` retries or ``retry_for_s`` seconds, whichever comes first (either may be null, not
both): a paid API's outage of minutes is ridden out with ``max_retries: null, retry_for_s: 600`` (the
``paper`` preset). When a request finally fails, :class:`~tars_verl.scorers.base.ScorerError` names the
endpoint, the last status, the number of attempts and how long it tried.
API keys are read from the environment variable named in the config; they and any URL credentials are registered
with :mod:`tars_verl.redaction`, so no message, log line or file shows them. Redirects are not followed (a reply
from another address is never scored), and a reply over ``max_reply_mb`` is refused before it is read.

Batched replies are matched to their inputs by :func:`match_replies` (one to one, by ``index`` where the protocol
numbers its results, else by count), one-prompt completions read with :func:`only_choice`: every back end, generator
or attack that reads a server's list of results uses them.

Example:
    >>> ep = HttpEndpoint("http://127.0.0.1:8000/v1", max_concurrency=64)   # doctest: +SKIP
    >>> body = await ep.post_json("/chat/completions", {"model": "m", "messages": [...]})  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import os
import random
import threading
import time
import urllib.parse
import weakref
from dataclasses import dataclass
from typing import Any

import aiohttp
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt, stop_after_delay

from tars_verl.redaction import redact_url, register_secret, register_url, scrub

from .base import ScorerConfig, ScorerConfigError, ScorerError

logger = logging.getLogger(__name__)

RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
# A reply larger than this is refused before it is read into memory (no scorer reply comes near it).
DEFAULT_MAX_REPLY_MB = 32.0
__all__ = ["HttpEndpoint", "HttpScorerConfig", "check_endpoint_sync", "match_replies", "only_choice", "redact_url"]


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
    # A reply body larger than this (MiB) is an error, never read into memory whole.
    max_reply_mb: float = DEFAULT_MAX_REPLY_MB

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
        if not self.max_reply_mb > 0:
            raise ScorerConfigError(f"{self.backend}.max_reply_mb must be > 0, got {self.max_reply_mb}")
        if self.api_key_env and not os.environ.get(self.api_key_env):
            raise ScorerConfigError(
                f"{self.backend}: environment variable {self.api_key_env} is not set; export the API key there "
                f"(or set {self.backend}.api_key_env=null for a server without authentication)."
            )


class _RetryableHttpError(Exception):
    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class HttpEndpoint:
    """One base URL; an ``aiohttp.ClientSession`` per event loop (sessions cannot cross loops).

    aiohttp, not httpx: against a local server, 256 concurrent requests took 0.035 s with aiohttp and
    0.62 s with httpx 0.28 (benchmarks/bench_reward.py measures the end-to-end effect).

    The API key and any credentials in the URL are registered with :mod:`tars_verl.redaction` when the endpoint is
    made, so no message, log line or file of this process shows them. Redirects are not followed (a reply from
    another address is never scored) and a reply body over ``max_reply_bytes`` is refused unread.

    ``aclose`` closes the session of the running loop. Whoever cannot call it (verl's reward workers have no shutdown
    hook for a reward manager) is covered when the endpoint is garbage-collected and at interpreter exit (a
    ``weakref.finalize``): :func:`_close_sessions` closes every session still open, so no "Unclosed client session"
    is reported.
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
        max_reply_bytes: int = int(DEFAULT_MAX_REPLY_MB * 2**20),
    ):
        self._url = base_url.rstrip("/")
        # What messages show: no password or secret query value (requests use self._url).
        self.base_url = register_url(self._url)
        register_secret(api_key)
        try:
            has_userinfo = urllib.parse.urlsplit(self._url).username is not None
        except ValueError as err:
            raise ScorerConfigError(f"{self.base_url}: not a valid URL ({err})") from None
        # A semaphore of 0 would wait forever; the rest would fail later, less clearly.
        if (
            max_concurrency < 1
            or timeout_s <= 0
            or max_reply_bytes < 1
            or (max_retries is not None and max_retries < 0)
        ):
            raise ScorerConfigError(
                f"{self.base_url}: need max_concurrency >= 1, timeout_s > 0, max_retries >= 0 (or null) and a reply "
                f"limit >= 1 byte; got {max_concurrency}, {timeout_s}, {max_retries}, {max_reply_bytes}"
            )
        if api_key and has_userinfo:
            raise ScorerConfigError(
                f"{self.base_url}: the URL carries credentials (user:password@) and an API key is set too; a request "
                "can send only one Authorization header: keep one of them"
            )
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.timeout_s = timeout_s
        self.max_concurrency = max_concurrency
        self.max_retries = max_retries
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.retry_for_s = retry_for_s
        self.max_reply_bytes = max_reply_bytes
        self._per_loop: dict[int, tuple[aiohttp.ClientSession, asyncio.Semaphore]] = {}
        self._loops: dict[int, asyncio.AbstractEventLoop] = {}  # the loop each session belongs to
        self._lock = threading.Lock()
        self._finalizer = weakref.finalize(
            self, _close_sessions, self._per_loop, self._loops, self._lock, self.base_url
        )

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
            max_reply_bytes=int(cfg.max_reply_mb * 2**20),
        )

    def url(self, path: str) -> str:
        """The full URL of ``path`` under the base URL (before the base URL's query string, if it has one)."""
        parts = urllib.parse.urlsplit(self._url)
        return urllib.parse.urlunsplit(parts._replace(path=parts.path.rstrip("/") + path))

    def where(self, path: str) -> str:
        """The URL of ``path`` as messages name it (credentials redacted)."""
        return redact_url(self.url(path))

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
                self._loops[id(loop)] = loop
            return entry

    def _wait(self, state: RetryCallState) -> float:
        # Full jitter: uniform in [0, min(max, initial * 2^n)], but never sooner than Retry-After.
        cap = min(self.backoff_max_s, self.backoff_initial_s * (2 ** (state.attempt_number - 1)))
        delay = random.uniform(0, cap)
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _RetryableHttpError) and exc.retry_after is not None:
            delay = max(delay, min(exc.retry_after, self.backoff_max_s))
        return delay

    async def _read_body(self, resp: aiohttp.ClientResponse, method: str, shown: str) -> str:
        """The reply body as text, refused (ScorerError) once it grows past ``max_reply_bytes``."""
        limit = self.max_reply_bytes
        too_big = (
            f"{method} {shown}: the reply is larger than {limit} bytes (max_reply_mb); refusing to read it "
            "(is the URL a scorer endpoint?)"
        )
        if resp.content_length is not None and resp.content_length > limit:
            raise ScorerError(too_big)
        chunks, size = [], 0
        async for chunk in resp.content.iter_chunked(1 << 16):
            size += len(chunk)
            if size > limit:
                raise ScorerError(too_big)
            chunks.append(chunk)
        return b"".join(chunks).decode(resp.charset or "utf-8", errors="replace")

    async def request_json(
        self, method: str, path: str, payload: dict[str, Any] | None = None, parse_json: bool = True
    ) -> Any:
        """The JSON body of a 2xx answer (or its text with ``parse_json=False``: vLLM's ``/health`` is empty)."""
        url = self.url(path)
        shown = self.where(path)
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
                            # No redirects: a reply from another address (another origin) is never scored.
                            async with client.request(method, url, json=payload, allow_redirects=False) as resp:
                                status = resp.status
                                location = resp.headers.get("location", "")
                                text = await self._read_body(resp, method, shown)
                                retry_after = _retry_after(resp.headers.get("retry-after"))
                        except (asyncio.TimeoutError, aiohttp.ClientError) as err:
                            last = scrub(f"{type(err).__name__}: {err}")
                            raise _RetryableHttpError(last) from err
                    if status in RETRYABLE_STATUS:
                        last = scrub(f"HTTP {status}: {text[:200]}")
                        raise _RetryableHttpError(last, retry_after)
                    if 300 <= status < 400:
                        raise ScorerError(
                            f"{method} {shown} answered HTTP {status}, a redirect to {redact_url(location) or '?'}; "
                            "redirects are not followed (a reply from another address is never scored): set the "
                            "URL to the address that answers"
                        )
                    if status >= 400:
                        raise ScorerError(f"{method} {shown} answered HTTP {status}: {text[:300]}")
                    if not parse_json:
                        return text
                    try:
                        return json.loads(text)
                    except ValueError as err:
                        raise ScorerError(f"{method} {shown} returned malformed JSON: {text[:200]!r}") from err
        except _RetryableHttpError:
            limits = f"max_retries={self.max_retries}, retry_for_s={self.retry_for_s}"
            tried = time.monotonic() - started
            raise ScorerError(
                f"{method} {shown} failed after {attempts} attempts over {tried:.1f} s ({limits}); last: {last}"
            ) from None

    def scrub(self, text: str) -> str:
        """``text`` without any registered secret (this endpoint's API key and URL credentials included)."""
        return scrub(text)

    async def post_json(self, path: str, payload: dict[str, Any]) -> Any:
        return await self.request_json("POST", path, payload)

    async def aclose(self) -> None:
        """Close this event loop's session (a later request opens a new one)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self._per_loop.pop(id(loop), None)
            self._loops.pop(id(loop), None)
        if entry is not None:
            await entry[0].close()

    def close_open_sessions(self) -> int:
        """Close every session still open, from outside its loop; returns how many (see :func:`_close_sessions`)."""
        return _close_sessions(self._per_loop, self._loops, self._lock, self.base_url)


def _close_sessions(per_loop: dict, loops: dict, lock: threading.Lock, where: str, timeout_s: float = 5.0) -> int:
    """Close the sessions of ``per_loop`` (an endpoint's), each in its own event loop; returns how many.

    An idle loop is run until its session is closed; a loop running in this thread gets a closing task, one running in
    another thread (a Ray async actor's) is asked to close it, waiting at most ``timeout_s``; a closed loop's session
    is closed in a temporary loop."""
    with lock:
        entries = [(loops.pop(key, None), session) for key, (session, _) in per_loop.items()]
        per_loop.clear()
    try:
        current = asyncio.get_running_loop()
    except RuntimeError:
        current = None
    closed = 0
    for loop, session in entries:
        if session.closed:
            continue
        try:
            live = loop if loop is not None and not loop.is_closed() else None
            if live is not None and live is current:
                live.create_task(session.close())
            elif live is not None and live.is_running():
                asyncio.run_coroutine_threadsafe(session.close(), live).result(timeout_s)
            else:
                # An idle loop is run until the session is closed; a closed one's session (asyncio.run returned:
                # aiohttp marks it closed without touching that loop) is closed in a short-lived loop of our own.
                # Either runs in a thread of its own when a loop runs in this one (a loop cannot be run from inside
                # another), and the close coroutine is made only where it is run: none is left un-awaited.
                _run_blocking(session.close, live, current)
            closed += 1
        except Exception as err:  # noqa: BLE001 - at exit or in a finaliser: report and go on with the others
            logger.warning("could not close the HTTP session of %s: %s", where, err)
    return closed


def _run_blocking(make_coro, loop: asyncio.AbstractEventLoop | None, current: asyncio.AbstractEventLoop | None) -> None:
    """Run ``make_coro()`` to completion in ``loop`` (or a temporary loop when None), from a helper thread when
    ``current`` (a loop running in this thread) would forbid running another here."""

    def run() -> None:
        own = loop or asyncio.new_event_loop()
        try:
            own.run_until_complete(make_coro())
        finally:
            if loop is None:
                own.close()

    if current is None:
        run()
    else:
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="tars-close-http-session") as pool:
            pool.submit(run).result()  # re-raises here what the close raised there


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {str(value)[:120]!r}"


def match_replies(entries: Any, n: int, where: str, index_key: str = "index") -> list[Any]:
    """The results of a batched reply, one per input, in the order of the inputs.

    ``entries`` is the reply's list (``/classify`` and ``/v1/embeddings`` ``data``, ``/v1/completions``
    ``choices``, ``/v1/moderations`` ``results``...). When the results carry ``index_key`` (the protocol numbers
    them) they are put in that order, and a non-integer, out-of-range or duplicated index is an error; when none
    does, they are matched by count and position. A count other than ``n``, or some results with an index and some
    without, is an error too. Every error is a :class:`ScorerError` naming ``where`` (the endpoint): a reply is
    never mapped to the wrong input.

    >>> match_replies([{"index": 1, "v": "b"}, {"index": 0, "v": "a"}], 2, "http://h/classify")
    [{'index': 0, 'v': 'a'}, {'index': 1, 'v': 'b'}]
    >>> match_replies([{"index": 7}, {"index": 3}], 2, "http://h/classify")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    tars_verl.errors.ScorerError: http://h/classify: results do not match the 2 inputs: index 3 outside 0..1, ...
    """
    if not isinstance(entries, list):
        raise ScorerError(f"{where}: expected a list of {n} results, got {_describe(entries)}")
    if len(entries) != n:
        raise ScorerError(f"{where}: {len(entries)} results for {n} inputs")
    indexed = [isinstance(e, dict) and index_key in e for e in entries]
    if not any(indexed):
        return list(entries)
    if not all(indexed):
        raise ScorerError(f"{where}: some results carry {index_key!r} and some do not ({indexed.count(False)} of {n})")
    indices = [e[index_key] for e in entries]
    bad = [i for i in indices if isinstance(i, bool) or not isinstance(i, int)]
    if bad:
        raise ScorerError(f"{where}: result {index_key!r} must be an integer, got {bad[0]!r}")
    problems = [f"index {i} outside 0..{n - 1}" for i in sorted(set(indices)) if not 0 <= i < n]
    problems += [f"index {i} appears {indices.count(i)} times" for i in sorted(set(indices)) if indices.count(i) > 1]
    problems += [f"index {i} is missing" for i in range(n) if i not in indices]
    if problems:
        raise ScorerError(f"{where}: results do not match the {n} inputs: {', '.join(problems[:6])}")
    ordered: list[Any] = [None] * n
    for entry in entries:
        ordered[entry[index_key]] = entry
    return ordered


def only_choice(body: Any, where: str) -> dict[str, Any]:
    """The one choice of a completion reply to a one-prompt, ``n=1`` request (``body["choices"]``): exactly one,
    with index 0 if it is numbered; otherwise a :class:`ScorerError` naming ``where``."""
    choices = body.get("choices") if isinstance(body, dict) else None
    if choices is None:
        raise ScorerError(f"{where}: no 'choices' in the reply {str(body)[:200]!r}")
    (choice,) = match_replies(choices, 1, where)
    if not isinstance(choice, dict):
        raise ScorerError(f"{where}: the reply's choice is {_describe(choice)}, not an object")
    return choice


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
        raise ScorerError(f"{cfg.backend}: start-up check of {redact_url(target)} failed: {err}") from err
