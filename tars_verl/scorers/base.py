"""The scorer interface: score a batch of (prompt, text) items, each to a value in [0, 1].

A back end subclasses :class:`Scorer`, declares its settings as a dataclass that extends
:class:`ScorerConfig`, and registers itself by name::

    @register_scorer("my_guard")
    class MyGuard(Scorer):
        Config = MyGuardConfig

        async def score_batch(self, items):
            return [ScoreResult(score=1.0, details={"verdict": "safe"}) for _ in items]

    scorer = build_scorer({"backend": "my_guard", "max_batch_size": 16})
    results = await scorer.score(items)   # validation + the failure policy around score_batch

``score`` never turns a failure into a number on its own: an error propagates (the training step
fails, naming the back end) unless the config says ``on_failure: fallback`` with an explicit
``fallback_score``; each fallback is logged and flagged in the result's details.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import numbers
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from tars_verl.errors import ScorerConfigError, ScorerError

logger = logging.getLogger(__name__)


def checked_value(value: Any, where: str, low: float | None = 0.0, high: float | None = 1.0) -> float:
    """A number read from a server or model reply, checked BEFORE any clamping or arithmetic.

    NaN, +-inf, non-numbers and values outside ``[low, high]`` (None = unbounded) raise
    :class:`ScorerError` naming ``where`` (endpoint and field) and the value: they never become a reward.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ScorerError(f"{where}: {value!r} is not a number")
    value = float(value)
    if not math.isfinite(value):
        raise ScorerError(f"{where}: non-finite value {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ScorerError(f"{where}: value {value!r} is outside [{low}, {high}]")
    return value


def stable_sigmoid(x: float) -> float:
    """1 / (1 + e^-x) without overflow for any finite x (a logit of -1000 gives 0.0, not OverflowError)."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


@dataclass
class ScoreItem:
    """One thing to score.

    ``messages`` is the chat that led to the response (system / user turns), ``prompt`` the last user
    turn as plain text, ``text`` what is judged (the answer with the reasoning stripped, or the
    reasoning itself for reasoning-safety logging). ``context`` is the context a request was made in, for judges
    that read one (HarmBench's contextual behaviours: the passage the behaviour refers to); empty otherwise.
    """

    prompt: str
    text: str
    messages: list[dict[str, str]] = field(default_factory=list)
    prompt_type: str = ""
    context: str = ""

    def chat(self) -> list[dict[str, str]]:
        """The conversation with ``text`` as the assistant's reply."""
        turns = list(self.messages) or [{"role": "user", "content": self.prompt}]
        return turns + [{"role": "assistant", "content": self.text}]


@dataclass
class ScoreResult:
    score: float
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class ScorerConfig:
    """Settings every back end has. Back-end specific keys live in subclasses."""

    backend: str = ""
    # Items per request / forward pass; calls arriving within max_wait_ms are coalesced up to this.
    max_batch_size: int = 32
    max_wait_ms: float = 5.0
    # "raise": a failure fails the step. "fallback": use fallback_score, log it, flag it in metrics.
    on_failure: str = "raise"
    fallback_score: float | None = None

    def validate(self) -> None:
        if self.max_batch_size < 1:
            raise ScorerConfigError(f"{self.backend}.max_batch_size must be >= 1, got {self.max_batch_size}")
        if self.max_wait_ms < 0:
            raise ScorerConfigError(f"{self.backend}.max_wait_ms must be >= 0, got {self.max_wait_ms}")
        if self.on_failure not in ("raise", "fallback"):
            raise ScorerConfigError(f"{self.backend}.on_failure must be 'raise' or 'fallback', got {self.on_failure!r}")
        if self.on_failure == "fallback" and (self.fallback_score is None or not 0.0 <= self.fallback_score <= 1.0):
            raise ScorerConfigError(
                f"{self.backend}.on_failure=fallback needs an explicit fallback_score in [0, 1] "
                f"(got {self.fallback_score!r}); there is no implicit default."
            )


class Scorer(ABC):
    Config: ClassVar[type[ScorerConfig]] = ScorerConfig
    name: ClassVar[str] = ""

    def __init__(self, config: ScorerConfig, **context: Any):
        self.config = config
        self.fallback_count = 0

    @abstractmethod
    async def score_batch(self, items: list[ScoreItem]) -> list[ScoreResult]:
        """Score every item; return one result per item, in order."""

    def check_ready(self) -> None:
        """Start-up check (API key present, endpoint answers, model loads). Raise to stop the run."""

    async def aclose(self) -> None:
        """Release connections / models."""

    async def score(self, items: list[ScoreItem]) -> list[ScoreResult]:
        """``score_batch`` with output validation and the configured failure policy.

        Any exception from ``score_batch`` (a malformed reply, an arithmetic error on a server value) is a
        scorer failure: it is raised as :class:`ScorerError` naming the back end, or, with
        ``on_failure: fallback``, replaced by the logged and counted fallback score.
        """
        try:
            try:
                results = await self.score_batch(items)
            except ScorerError:
                raise
            except Exception as err:  # noqa: BLE001 - a failure of the scorer, whatever its type
                raise ScorerError(f"{self.name}: {type(err).__name__}: {err}") from err
            if len(results) != len(items):
                raise ScorerError(f"{self.name}: returned {len(results)} scores for {len(items)} items")
            for i, r in enumerate(results):
                checked_value(r.score, f"{self.name}: item {i} score")
            return results
        except ScorerError as raw:
            # A reply excerpt may echo the API key or a URL password: never show them.
            endpoint_scrub = getattr(getattr(self, "endpoint", None), "scrub", None)
            shown = endpoint_scrub(str(raw)) if endpoint_scrub else str(raw)
            err = raw if shown == str(raw) else ScorerError(shown)
            if self.config.on_failure != "fallback":
                if err is raw:
                    raise
                raise err from None
            self.fallback_count += len(items)
            logger.warning(
                "%s failed on a batch of %d; using fallback_score=%s as configured (on_failure=fallback): %s",
                self.name,
                len(items),
                self.config.fallback_score,
                err,
            )
            return [ScoreResult(self.config.fallback_score, {"fallback": True, "error": str(err)}) for _ in items]


SCORERS: dict[str, type[Scorer]] = {}


def register_scorer(name: str):
    """Class decorator: make a back end available as ``backend: <name>`` in the config."""

    def decorator(cls: type[Scorer]) -> type[Scorer]:
        if name in SCORERS and SCORERS[name].__qualname__ != cls.__qualname__:
            raise ValueError(f"scorer {name!r} is already registered to {SCORERS[name]}")
        cls.name = name
        SCORERS[name] = cls
        return cls

    return decorator


def parse_scorer_config(cfg: Mapping[str, Any], where: str = "scorer") -> tuple[type[Scorer], ScorerConfig]:
    """Resolve ``cfg['backend']`` and check every key against that back end's Config dataclass."""
    cfg = _to_dict(cfg)
    backend = cfg.get("backend")
    if not backend:
        raise ScorerConfigError(f"{where}.backend is not set; choose one of {sorted(SCORERS)}")
    if backend not in SCORERS:
        raise ScorerConfigError(f"{where}.backend={backend!r} is unknown; choose one of {sorted(SCORERS)}")
    cls = SCORERS[backend]
    known = {f.name for f in dataclasses.fields(cls.Config)}
    unknown = sorted(set(cfg) - known)
    if unknown:
        raise ScorerConfigError(f"{where}: unknown key(s) {unknown} for backend {backend!r}; valid: {sorted(known)}")
    config = cls.Config(**cfg)
    try:
        config.validate()
    except ScorerConfigError as err:
        # Messages name the back end ("guard_chat.url ..."); say where in the config it sits too.
        raise ScorerConfigError(f"{where}: {err}") from None
    return cls, config


def build_scorer(cfg: Mapping[str, Any], where: str = "scorer", **context: Any) -> Scorer:
    """Build a scorer from its config mapping; ``context`` passes run-time objects (router address...)."""
    cls, config = parse_scorer_config(cfg, where)
    return cls(config, **context)


def _to_dict(cfg: Any) -> dict[str, Any]:
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(cfg, (DictConfig, ListConfig)):
            return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    except ImportError:  # pragma: no cover - omegaconf comes with hydra-core
        pass
    return dict(cfg)
