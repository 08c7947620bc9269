"""The base of every scorer behind an HTTP endpoint: what they share, written once.

:class:`HttpScorer` owns the endpoint (``url``, the API key read from the environment variable named by
``api_key_env``, ``timeout_s``, retries with back-off, ``max_concurrency``: see
:class:`~tars_verl.scorers.http_client.HttpScorerConfig`), the start-up check (``check_ready``: GET ``health_path``),
``aclose``, and the fan-out of a batch into one concurrent request per item. A back end keeps only what is its
own: the request body, reading and validating the reply, and the verdict -> score mapping.

- One request per item (chat endpoints): implement :meth:`HttpScorer.score_one`.
- One request per batch (``/moderations``, ``/classify``): override ``score_batch`` instead.

Reading a reply inside :meth:`HttpScorer.reading_reply` turns a reply of the wrong shape (a missing key, a
null, an empty list) into a :class:`~tars_verl.scorers.base.ScorerError` that names the endpoint: never a score.
A batch's list of results is read with :meth:`HttpScorer.match_replies` (one result per input, reordered by its
``index``; duplicates, gaps, out-of-range indices or a wrong count fail naming the endpoint), a chat or text
completion's choice with :meth:`HttpScorer.only_choice`.

Example:
    >>> from dataclasses import dataclass
    >>> from tars_verl.scorers import ScoreResult
    >>> @dataclass
    ... class EchoConfig(HttpScorerConfig):
    ...     backend: str = "echo"
    ...     url: str = "http://127.0.0.1:9/v1"
    >>> class EchoScorer(HttpScorer):  # a real back end also registers itself: @register_scorer("echo")
    ...     Config = EchoConfig
    ...
    ...     async def score_one(self, item):
    ...         body = await self.endpoint.post_json("/echo", {"text": item.text})
    ...         with self.reading_reply(self.where("/echo"), body):
    ...             return ScoreResult(float(body["score"]))
    >>> scorer = EchoScorer(EchoConfig())
    >>> scorer.where("/echo")
    'http://127.0.0.1:9/v1/echo'
    >>> with scorer.reading_reply(scorer.where("/echo"), body={"scores": []}):
    ...     {"scores": []}["score"]
    Traceback (most recent call last):
    ...
    tars_verl.errors.ScorerError: http://127.0.0.1:9/v1/echo: unexpected reply shape ('score'): {'scores': []}
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .base import ScoreItem, Scorer, ScorerError, ScoreResult
from .http_client import HttpEndpoint, HttpScorerConfig, check_endpoint_sync, match_replies, only_choice

# What reading a reply of the wrong shape raises: body["choices"][0] on {}, [], null or a string.
REPLY_SHAPE_ERRORS = (KeyError, IndexError, TypeError, ValueError, AttributeError)
_NO_BODY = object()


class HttpScorer(Scorer):
    """A scorer that asks one HTTP endpoint (``self.endpoint``); see the module docstring."""

    Config = HttpScorerConfig

    def __init__(self, config: HttpScorerConfig, endpoint_url: str | None = None, **context: Any):
        """``endpoint_url`` overrides ``config.url`` (verl's router address); the start-up check still asks
        ``config.url``, so a back end with an address of its own overrides :meth:`check_ready`."""
        super().__init__(config)
        self.endpoint = HttpEndpoint.from_config(config, endpoint_url)

    def check_ready(self) -> None:
        """GET ``health_path`` (a few quick retries); raises ScorerError naming the back end and URL."""
        check_endpoint_sync(self.config)

    async def aclose(self) -> None:
        await self.endpoint.aclose()

    def where(self, path: str) -> str:
        """The endpoint as messages name it: base URL (credentials redacted) + ``path``."""
        return self.endpoint.where(path)

    def match_replies(self, entries: Any, n: int, path: str) -> list[Any]:
        """The ``n`` results of a batched reply from ``path``, in input order
        (:func:`~tars_verl.scorers.http_client.match_replies`)."""
        return match_replies(entries, n, self.where(path))

    def only_choice(self, body: Any, path: str) -> dict[str, Any]:
        """The one choice of a completion reply from ``path`` (:func:`~tars_verl.scorers.http_client.only_choice`)."""
        return only_choice(body, self.where(path))

    @contextmanager
    def reading_reply(self, where: str, body: Any = _NO_BODY) -> Iterator[None]:
        """A reply of the wrong shape read inside becomes ``ScorerError("<where>: <error>")``; with ``body``,
        the message says ``unexpected reply shape`` and quotes the reply's first 200 characters."""
        try:
            yield
        except REPLY_SHAPE_ERRORS as err:
            detail = str(err) if body is _NO_BODY else f"unexpected reply shape ({err}): {str(body)[:200]}"
            raise ScorerError(f"{where}: {detail}") from err

    async def score_one(self, item: ScoreItem) -> ScoreResult:
        """One item, one request (chat endpoints take one conversation per request)."""
        raise NotImplementedError(f"{type(self).__name__}: implement score_one, or override score_batch")

    async def score_batch(self, items: list[ScoreItem]) -> list[ScoreResult]:
        # Fan out all at once: the endpoint's semaphore and connection pool bound what is in flight.
        return list(await asyncio.gather(*(self.score_one(it) for it in items)))
