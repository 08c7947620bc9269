"""``reward.tars``: the TARS reward settings, checked once at start-up.

Every option is documented in ``tars_verl/config/README.md``; presets are in ``config/tars/``
(``paper``, ``open``, ``tiny_cpu``), one YAML per scorer back end in ``config/tars_scorer/``.
Load a preset with :func:`load_preset`:

    >>> cfg = load_preset("tiny_cpu")
    >>> cfg["mode"]
    'decoupled'
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import Any

from omegaconf import DictConfig

from tars_verl.config import compose
from tars_verl.reward.prompt_type import PROMPT_TYPE_KEY, PROMPT_TYPES
from tars_verl.scorers.base import ScorerConfigError, _to_dict, parse_scorer_config

MODES = ("decoupled", "single_judge", "weighted")
EMPTY_ANSWER_POLICIES = ("scored", "zero")
PRESET_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "config", "tars")

# Which scorer's score counts for which prompt type, per mode (weights are normalised per type).
MODE_WEIGHTS = {
    "decoupled": {
        "harmful": {"safety": 1.0, "helpfulness": 0.0},
        "harmless": {"safety": 0.0, "helpfulness": 1.0},
        "ambiguous": {"safety": 0.0, "helpfulness": 1.0},
    },
    "single_judge": {t: {"safety": 0.0, "helpfulness": 1.0} for t in PROMPT_TYPES},
}


@dataclass
class TarsConfig:
    mode: str = "decoupled"
    # false: the model writes <think> itself; true: the prompt pre-fills it; auto: look at the prompt's end.
    think_prefilled: Any = "auto"
    safety: dict[str, Any] = field(default_factory=dict)
    helpfulness: dict[str, Any] = field(default_factory=dict)
    # Also score the reasoning of harmful-prompt responses with the safety scorer (logged, not rewarded)...
    reasoning_safety: bool = True
    # ... on this fraction of them (chosen by a hash of the text, so reruns pick the same ones): each scored one is
    # one more guard request. 1.0: all (the paper's logging, doubling the guard's traffic on harmful prompts).
    reasoning_safety_fraction: float = 0.1
    # mode=weighted only: {prompt_type: {safety: w, helpfulness: w}}.
    type_weights: dict[str, dict[str, float]] | None = None
    # Where the prompt type is read: extra_info[<key>], then reward_model.ground_truth.
    prompt_type_key: str = PROMPT_TYPE_KEY
    # Run each scorer's start-up check (API key, endpoint reachable) when the manager is built.
    check_on_start: bool = True
    # A scorer config (e.g. tars_scorer@reward.tars.val_judge=strongreject) that replaces the reward of rows
    # whose data_source is in val_judge_sources: total = format * val_judge score. Empty: off.
    val_judge: dict[str, Any] = field(default_factory=dict)
    val_judge_sources: list[str] = field(default_factory=lambda: ["strongreject_small"])
    # Responses whose answer (text after </think>) is empty: "scored" (paper) judges the empty answer like
    # any other; "zero" gives them reward 0.
    empty_answer: str = "scored"

    def weights(self) -> dict[str, dict[str, float]]:
        return self.type_weights if self.mode == "weighted" else MODE_WEIGHTS[self.mode]

    def needs(self, role: str) -> bool:
        uses = any(w[role] > 0 for w in self.weights().values())
        return uses or (role == "safety" and self.reasoning_safety)

    def validate(self) -> None:
        if self.mode not in MODES:
            raise ScorerConfigError(f"reward.tars.mode={self.mode!r} is unknown; choose one of {MODES}")
        if self.empty_answer not in EMPTY_ANSWER_POLICIES:
            raise ScorerConfigError(
                f"reward.tars.empty_answer must be one of {EMPTY_ANSWER_POLICIES}, got {self.empty_answer!r}"
            )
        if self.think_prefilled not in (True, False, "auto"):
            raise ScorerConfigError(
                f"reward.tars.think_prefilled must be true, false or auto, got {self.think_prefilled!r}"
            )
        fraction = self.reasoning_safety_fraction
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0.0 <= fraction <= 1.0:
            raise ScorerConfigError(
                f"reward.tars.reasoning_safety_fraction must be a number in [0, 1] (1.0 scores every harmful "
                f"response's reasoning), got {fraction!r}"
            )
        if self.mode == "weighted":
            tw = self.type_weights or {}
            for t in PROMPT_TYPES:
                w = tw.get(t)
                if not w or set(w) - {"safety", "helpfulness"}:
                    raise ScorerConfigError(
                        f"reward.tars.type_weights.{t} must map safety/helpfulness to weights (mode=weighted), "
                        f"got {w!r}"
                    )
                if any(float(v) < 0 for v in w.values()) or sum(float(v) for v in w.values()) <= 0:
                    raise ScorerConfigError(f"reward.tars.type_weights.{t}: weights must be >= 0 and not all 0")
                w.setdefault("safety", 0.0)
                w.setdefault("helpfulness", 0.0)
        for role in ("safety", "helpfulness"):
            if self.needs(role):
                parse_scorer_config(getattr(self, role), where=f"reward.tars.{role}")
        if self.val_judge:
            parse_scorer_config(self.val_judge, where="reward.tars.val_judge")


def tars_config_from(cfg: Any) -> TarsConfig:
    """Build and validate a TarsConfig from a mapping / DictConfig (``config.reward.tars``)."""
    if cfg is None:
        raise ScorerConfigError(
            "reward.tars is missing from the verl config. Compose verl's trainer config with the TARS "
            "defaults: python -m verl.trainer.main_ppo --config-path=pkg://tars_verl.config "
            "--config-name=tars_grpo tars@reward.tars=paper (see tars_verl/config/README.md)."
        )
    raw = _to_dict(cfg)
    known = {f.name for f in fields(TarsConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ScorerConfigError(f"reward.tars: unknown key(s) {unknown}; valid: {sorted(known)}")
    tars = TarsConfig(**raw)
    tars.validate()
    return tars


def load_preset(name: str, overrides: list[str] | None = None) -> DictConfig:
    """A composed preset from ``tars_verl/config/tars/<name>.yaml`` (scorer defaults filled in)."""
    if not os.path.exists(os.path.join(PRESET_DIR, f"{name}.yaml")):
        presets = sorted(f[:-5] for f in os.listdir(PRESET_DIR) if f.endswith(".yaml"))
        raise FileNotFoundError(f"TARS preset {name!r} not found in {PRESET_DIR}; presets: {presets}")
    return compose(f"tars/{name}", overrides or []).tars
