"""Pluggable scorers. Each back end registers itself under the name used as ``backend:`` in configs.

| backend | role | where it runs |
| --- | --- | --- |
| ``openai_moderation`` | safety (paper) | OpenAI moderation API |
| ``guard_chat`` | safety | guard model behind an OpenAI-compatible endpoint (vLLM) |
| ``hf_classifier`` | safety | in-process transformers classifier |
| ``refusal_keywords`` | safety baseline | rules, no model |
| ``hf_reward_model`` | helpfulness (paper) | in-process transformers reward model |
| ``served_reward_model`` | helpfulness | vLLM ``/classify`` (or verl's own RM server) |
| ``llm_judge`` | helpfulness / any rubric | OpenAI-compatible chat endpoint |
| ``strongreject`` | validation / evaluation (paper) | StrongREJECT rubric judge, OpenAI-compatible chat |
| ``weighted`` | either | weighted mix of the above |
| ``function`` | either | your own reward function, named in the config (``fn: path/to/file.py:name``) |

Your own :class:`Scorer` subclass needs no registration: ``backend: my_pkg.my_scorers:MyScorer``.
"""

from . import (  # noqa: F401 - importing registers the back ends
    function,
    guard_chat,
    hf_classifier,
    hf_reward_model,
    llm_judge,
    openai_moderation,
    refusal_keywords,
    served_reward_model,
    strongreject,
    weighted,
)
from .base import (
    SCORERS,
    ScoreItem,
    Scorer,
    ScorerConfig,
    ScorerConfigError,
    ScorerError,
    ScoreResult,
    build_scorer,
    parse_scorer_config,
    register_scorer,
)

__all__ = [
    "SCORERS",
    "ScoreItem",
    "ScoreResult",
    "Scorer",
    "ScorerConfig",
    "ScorerConfigError",
    "ScorerError",
    "build_scorer",
    "parse_scorer_config",
    "register_scorer",
]
