"""A weighted mix of several scorers: score = sum(w_i * s_i) / sum(w_i); each component is logged.

Example config (two safety classifiers, the guard counting double)::

    backend: weighted
    components:
      - {name: guard, weight: 2.0, backend: guard_chat, url: http://127.0.0.1:8001/v1}
      - {name: moderation, weight: 1.0, backend: openai_moderation}
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from .base import ScoreItem, Scorer, ScorerConfig, ScorerConfigError, ScoreResult, build_scorer, register_scorer


@dataclass
class WeightedConfig(ScorerConfig):
    components: list[dict[str, Any]] = field(default_factory=list)

    def validate(self) -> None:
        super().validate()
        if not self.components:
            raise ScorerConfigError("weighted.components is empty")
        names = [c.get("name") or c.get("backend") for c in self.components]
        if len(set(names)) != len(names):
            raise ScorerConfigError(f"weighted.components need distinct names, got {names}")
        for c in self.components:
            if float(c.get("weight", 1.0)) < 0:
                raise ScorerConfigError(f"weighted component {c.get('name') or c.get('backend')}: weight must be >= 0")
        if sum(float(c.get("weight", 1.0)) for c in self.components) <= 0:
            raise ScorerConfigError("weighted.components: the weights sum to 0")


@register_scorer("weighted")
class WeightedScorer(Scorer):
    Config = WeightedConfig

    def __init__(self, config: WeightedConfig, **context):
        super().__init__(config)
        self.components: list[tuple[str, float, Scorer]] = []
        for i, raw in enumerate(config.components):
            raw = dict(raw)
            name = raw.pop("name", None) or raw["backend"]
            weight = float(raw.pop("weight", 1.0))
            self.components.append((name, weight, build_scorer(raw, where=f"weighted.components[{i}]", **context)))

    def check_ready(self) -> None:
        for _, _, scorer in self.components:
            scorer.check_ready()

    async def score_batch(self, items: list[ScoreItem]) -> list[ScoreResult]:
        per_component = await asyncio.gather(*(s.score(items) for _, _, s in self.components))
        total_w = sum(w for _, w, _ in self.components)
        out = []
        for i in range(len(items)):
            details = {name: res[i].score for (name, _, _), res in zip(self.components, per_component)}
            score = sum(w * res[i].score for (_, w, _), res in zip(self.components, per_component)) / total_w
            out.append(ScoreResult(score, {"components": details}))
        return out

    async def aclose(self) -> None:
        for _, _, scorer in self.components:
            await scorer.aclose()
