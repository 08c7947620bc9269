"""``backend: function``: a plain reward function of yours as a scorer, named in the config; no edit to the package.

    # /home/me/my_rewards/keyword_safety.py (any folder: the config names the file)
    def no_recipes(prompts, completions, prompt_types, **kwargs):
        return [0.0 if "step 1" in c.lower() else 1.0 for c in completions]

    tars_scorer@reward.tars.safety=function reward.tars.safety.fn=/home/me/my_rewards/keyword_safety.py:no_recipes

``fn`` is ``path/to/file.py:name`` or ``package.module:name`` (:mod:`tars_verl.scorers.user_code` loads it). The
function is called once per micro-batch, with keyword arguments (as TRL calls its ``reward_funcs``):

- ``prompts``: the last user turn of each sample; ``completions``: the text judged (the answer after ``</think>``,
  or the reasoning when the safety scorer logs ``reasoning_safety``); ``prompt_types``: harmful / harmless /
  ambiguous;
- ``messages`` (each sample's chat) and the data row's fields, one list each (``data_source``, ``extra_info``,
  ``reward_model``, ``uid``, ...; None where a row lacks the field);
- ``fn_kwargs`` from the config (they win over a row field of the same name).

A function without ``**kwargs`` gets only the names it declares. It returns one float in [0, 1] per completion (a
list, tuple or 1-D array), or raises. ``async def`` functions are awaited on the reward worker's event loop; plain
ones run in the loop's thread pool (as verl's managers run ``compute_score``), at most ``max_concurrency`` batches at
once. A call that raises (or exceeds ``timeout_s``) is retried ``max_retries`` times with exponential back-off and
full jitter, then fails the step naming ``fn``, or, with ``on_failure: fallback``, gives the logged and counted
``fallback_score``. A NaN, a value outside [0, 1], a non-number or a list of the wrong length is never a reward: it
is a failure, handled the same way (and not retried: the function would return it again).

    >>> import asyncio
    >>> from tars_verl.scorers import build_scorer
    >>> scorer = build_scorer({"backend": "function", "fn": "tars_verl.scorers.function:answer_length_example"})
    >>> [r.score for r in asyncio.run(scorer.score([ScoreItem("q", "short"), ScoreItem("q", "x" * 500)]))]
    [0.025, 1.0]
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tenacity import AsyncRetrying, RetryCallState, retry_if_not_exception_type, stop_after_attempt

from .base import (
    ScoreItem,
    Scorer,
    ScorerConfig,
    ScorerConfigError,
    ScorerError,
    ScoreResult,
    checked_value,
    register_scorer,
)
from .user_code import load_object

# The keyword arguments every call gets; row fields of these names are not passed.
CALL_ARGS = ("prompts", "completions", "prompt_types")
# Parameters a call can fill by name.
KEYWORD_KINDS = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
PROTOTYPE = "def {name}(prompts, completions, prompt_types, **kwargs) -> list[float]"


def answer_length_example(prompts: list[str], completions: list[str], prompt_types: list[str], **kwargs) -> list[float]:
    """The shape of a reward function (used by the doctest above): longer answers score higher, up to 200 chars."""
    return [min(len(c) / 200, 1.0) for c in completions]


@dataclass
class FunctionScorerConfig(ScorerConfig):
    # path/to/file.py:name or package.module:name
    fn: str = ""
    # Extra keyword arguments for every call (as verl's reward.custom_reward_function.reward_kwargs).
    fn_kwargs: dict[str, Any] = field(default_factory=dict)
    # Batches in flight at once, per reward worker process.
    max_concurrency: int = 4
    # Calls that raise (or time out) are retried this many times, with back-off.
    max_retries: int = 2
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    # Seconds one call may take; null: no limit. A plain function that overruns keeps its thread until it returns.
    timeout_s: float | None = None

    def validate(self) -> None:
        super().validate()
        if self.max_concurrency < 1:
            raise ScorerConfigError(f"fn: max_concurrency must be >= 1, got {self.max_concurrency}")
        if self.max_retries < 0:
            raise ScorerConfigError(f"fn: max_retries must be >= 0, got {self.max_retries}")
        if self.backoff_initial_s < 0 or self.backoff_max_s < self.backoff_initial_s:
            raise ScorerConfigError(
                f"fn: need 0 <= backoff_initial_s <= backoff_max_s, got {self.backoff_initial_s}, {self.backoff_max_s}"
            )
        if self.timeout_s is not None and self.timeout_s <= 0:
            raise ScorerConfigError(f"fn: timeout_s must be > 0 or null, got {self.timeout_s}")
        if not isinstance(self.fn_kwargs, Mapping):
            raise ScorerConfigError(f"fn_kwargs must be a mapping of keyword arguments, got {self.fn_kwargs!r}")
        reserved = sorted(set(self.fn_kwargs) & {*CALL_ARGS, "messages"})
        if reserved:
            raise ScorerConfigError(
                f"fn_kwargs may not set {reserved}: {', '.join(CALL_ARGS)} and messages are the batch itself"
            )
        load_reward_function(self.fn, self.fn_kwargs)


def load_reward_function(spec: str, fn_kwargs: Mapping[str, Any] = ()) -> Any:
    """The function ``spec`` names, checked to be callable as ``fn(prompts=, completions=, prompt_types=, ...)``."""
    if not spec:
        raise ScorerConfigError("fn is not set: name your function as 'path/to/file.py:name' or 'package.module:name'")
    fn = load_object(spec, "fn")
    shown = f"fn={spec!r}"
    if isinstance(fn, type):
        hint = (
            f"a Scorer subclass goes in backend: backend={spec}"
            if issubclass(fn, Scorer)
            else f"name a function: {PROTOTYPE.format(name='my_reward')}"
        )
        raise ScorerConfigError(f"{shown} is a class, not a function; {hint}")
    if not callable(fn):
        raise ScorerConfigError(f"{shown} is a {type(fn).__name__}, not a function: {PROTOTYPE.format(name='...')}")
    name = getattr(fn, "__name__", spec.rsplit(":", 1)[-1])
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # some builtins have none: the call itself will tell
        return fn
    # Other named parameters are row fields (data_source, extra_info, ...): each call passes them, None if absent.
    row_fields = {p.name: [] for p in signature.parameters.values() if p.kind in KEYWORD_KINDS}
    try:
        signature.bind(**{**row_fields, **dict(fn_kwargs), **dict.fromkeys(CALL_ARGS, [])})
    except TypeError as err:
        extra = f" and fn_kwargs {sorted(fn_kwargs)}" if fn_kwargs else ""
        raise ScorerConfigError(
            f"{shown}: {name}{signature} cannot be called with {', '.join(CALL_ARGS)}{extra} as keywords ({err}); "
            f"write it as {PROTOTYPE.format(name=name)}"
        ) from None
    return fn


def declared_keywords(fn: Any) -> dict[str, bool] | None:
    """The keyword parameters ``fn`` declares (name -> has a default), or None when it takes ``**kwargs``."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return {p.name: p.default is not p.empty for p in params if p.kind in KEYWORD_KINDS}


@register_scorer("function")
class FunctionScorer(Scorer):
    Config = FunctionScorerConfig

    def __init__(self, config: FunctionScorerConfig, **context: Any):
        super().__init__(config)
        self.fn = load_reward_function(config.fn, config.fn_kwargs)
        # Anything else runs in the thread pool; an awaitable it returns is awaited (see _call).
        self.is_async = inspect.iscoroutinefunction(self.fn)
        self.accepted = declared_keywords(self.fn)
        self._semaphores: dict[int, asyncio.Semaphore] = {}

    @property
    def shown(self) -> str:
        """How messages name this scorer: its config key and the function."""
        return f"{self.config_key}.fn={self.config.fn!r}"

    def call_kwargs(self, items: list[ScoreItem]) -> dict[str, Any]:
        """The keyword arguments of one call: the batch as columns."""
        row_keys = dict.fromkeys(k for it in items for k in it.row)
        columns: dict[str, Any] = {k: [it.row.get(k) for it in items] for k in row_keys}
        columns["messages"] = [list(it.messages) for it in items]
        columns.update(self.config.fn_kwargs)
        columns.update(
            prompts=[it.prompt for it in items],
            completions=[it.text for it in items],
            prompt_types=[it.prompt_type for it in items],
        )
        if self.accepted is not None:  # no **kwargs: only the names it declares (None for a field the rows lack;
            # left out when it has a default)
            columns = {
                k: columns.get(k, [None] * len(items))
                for k, has_default in self.accepted.items()
                if k in columns or not has_default
            }
        return columns

    async def score_batch(self, items: list[ScoreItem]) -> list[ScoreResult]:
        kwargs = self.call_kwargs(items)
        async with self._semaphore():
            out = await self._call_with_retries(kwargs)
        return [ScoreResult(v) for v in self.check_output(out, len(items))]

    def check_output(self, out: Any, n: int) -> list[float]:
        """One float in [0, 1] per item, or a ScorerError saying what came back and what is expected."""
        expected = f"return one float in [0, 1] per completion: {PROTOTYPE.format(name='...')}"
        if isinstance(out, (str, bytes, Mapping)) or not hasattr(out, "__len__") or not hasattr(out, "__iter__"):
            raise ScorerError(f"{self.shown} returned a {type(out).__name__}; {expected}")
        values = list(out)
        if len(values) != n:
            raise ScorerError(f"{self.shown} returned {len(values)} values for {n} completions; {expected}")
        return [checked_value(v, f"{self.shown}: value {i}") for i, v in enumerate(values)]

    def _semaphore(self) -> asyncio.Semaphore:
        loop_id = id(asyncio.get_running_loop())  # a semaphore belongs to one event loop
        if loop_id not in self._semaphores:
            self._semaphores[loop_id] = asyncio.Semaphore(self.config.max_concurrency)
        return self._semaphores[loop_id]

    async def _call(self, kwargs: dict[str, Any]) -> Any:
        if self.is_async:
            pending = self.fn(**kwargs)
        else:
            pending = asyncio.get_running_loop().run_in_executor(None, functools.partial(self.fn, **kwargs))
        out = await asyncio.wait_for(pending, self.config.timeout_s)
        if inspect.isawaitable(out):  # e.g. a functools.partial of an async function
            out = await asyncio.wait_for(out, self.config.timeout_s)
        return out

    def _wait(self, state: RetryCallState) -> float:
        cap = min(self.config.backoff_max_s, self.config.backoff_initial_s * (2 ** (state.attempt_number - 1)))
        return random.uniform(0, cap)  # full jitter

    async def _call_with_retries(self, kwargs: dict[str, Any]) -> Any:
        attempts = 0
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self.config.max_retries + 1),
                wait=self._wait,
                retry=retry_if_not_exception_type(asyncio.CancelledError),
                reraise=True,
            ):
                with attempt:
                    attempts += 1
                    return await self._call(kwargs)
        except asyncio.TimeoutError:
            raise ScorerError(
                f"{self.shown} took longer than timeout_s={self.config.timeout_s} s, {attempts} attempt(s)"
            ) from None
        except Exception as err:  # noqa: BLE001 - whatever the user's function raised
            raise ScorerError(
                f"{self.shown} raised {type(err).__name__}: {err} ({attempts} attempt(s), "
                f"max_retries={self.config.max_retries})"
            ) from err
