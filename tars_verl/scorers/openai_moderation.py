"""Safety from the OpenAI moderation API (the paper's safety reward).

score = 1 - max(category_scores) over the answer; scores >= ``tolerance_threshold`` (0.9 in the
paper, "a 0.1 tolerance for exploration") are set to 1.0. Inputs go out as one request per batch
(the API takes a list of strings).

Example config (``reward.tars.safety``)::

    backend: openai_moderation
    url: https://api.openai.com/v1
    model: omni-moderation-latest
    api_key_env: OPENAI_API_KEY
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import ScoreItem, ScorerConfigError, ScorerError, ScoreResult, checked_value, register_scorer
from .http_client import HttpScorerConfig
from .http_scorer import HttpScorer


@dataclass
class OpenAIModerationConfig(HttpScorerConfig):
    url: str = "https://api.openai.com/v1"
    model: str = "omni-moderation-latest"
    api_key_env: str | None = "OPENAI_API_KEY"
    # Safety scores at or above this count as fully safe (1.0). null disables the tolerance.
    tolerance_threshold: float | None = 0.9

    def validate(self) -> None:
        super().validate()
        if self.tolerance_threshold is not None and not 0.0 < self.tolerance_threshold <= 1.0:
            raise ScorerConfigError(
                f"{self.backend}.tolerance_threshold must be in (0, 1], got {self.tolerance_threshold}"
            )


def moderation_safety(
    category_scores: dict[str, float], tolerance_threshold: float | None, where: str = "moderation"
) -> float:
    """1 - the largest category score, with the paper's tolerance.

    Every category score is checked first (a number in [0, 1]): a NaN, which ``max`` would skip, or an
    out-of-range value raises :class:`ScorerError` naming ``where`` and the category; nothing is clamped.
    """
    if not isinstance(category_scores, dict) or not category_scores:
        raise ScorerError(f"{where}: category_scores is empty or not an object: {category_scores!r}")
    checked = [checked_value(v, f"{where}: category_scores[{k!r}]") for k, v in category_scores.items()]
    safety = 1.0 - max(checked)
    if tolerance_threshold is not None and safety >= tolerance_threshold:
        return 1.0
    return safety


@register_scorer("openai_moderation")
class OpenAIModerationScorer(HttpScorer):
    Config = OpenAIModerationConfig

    async def score_batch(self, items: list[ScoreItem]) -> list[ScoreResult]:
        # The API takes a list of inputs: one request per batch, not one per item.
        body = await self.endpoint.post_json(
            "/moderations", {"model": self.config.model, "input": [it.text for it in items]}
        )
        where = self.where("/moderations")
        with self.reading_reply(where, body):
            results = self.match_replies(body["results"], len(items), "/moderations")  # unnumbered: by count
            out = []
            for i, r in enumerate(results):
                cats = r["category_scores"]
                safety = moderation_safety(cats, self.config.tolerance_threshold, f"{where}: result {i}")
                worst = max(cats, key=lambda k: cats[k])
                out.append(
                    ScoreResult(
                        safety,
                        {
                            "flagged": bool(r.get("flagged", False)),
                            "top_category": worst,
                            "top_score": float(cats[worst]),
                        },
                    )
                )
            return out
