"""What the TARS reward manager logs for every response (``reward_extra_info``): the one definition.

The manager writes exactly these keys (verl takes the key list from the first sample, so every sample has all of
them, None where a value does not apply); the per-prompt-type training metrics (``tars/<type>/<key>/mean``) and the
demo's table read the subsets marked here. Adding a metric is one entry in :data:`FIELDS`.

    >>> reward_log_keys(["safety/guard"])[:3], reward_log_keys()[-3:]
    (['total', 'format', 'safety'], ['reward_harmful', 'reward_harmless', 'reward_ambiguous'])
    >>> "empty_answer" in PER_TYPE_KEYS, "prompt_type" in PER_TYPE_KEYS
    (True, False)
    >>> describe()[0]
    '`total`: the reward, format x (safety or helpfulness by prompt type)'
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from tars_verl.reward.prompt_type import PROMPT_TYPES


@dataclass(frozen=True)
class LogField:
    name: str
    doc: str
    per_type: bool = False  # a training metric per prompt type: tars/<type>/<name>/mean (total: reward/mean|max|min)
    demo: bool = False  # a column of the demo's tables (tars_verl.demo)


FIELDS: tuple[LogField, ...] = (
    LogField("total", "the reward, format x (safety or helpfulness by prompt type)", per_type=True, demo=True),
    LogField(
        "format",
        "1.0 iff exactly one <think> then one </think> (only </think> when pre-filled)",
        per_type=True,
        demo=True,
    ),
    LogField(
        "safety",
        "the safety scorer on the answer (None where the prompt type does not use it)",
        per_type=True,
        demo=True,
    ),
    LogField("helpfulness", "the helpfulness scorer on the answer (None where not used)", per_type=True, demo=True),
    LogField(
        "reasoning_safety",
        "the safety scorer on the reasoning of harmful prompts (a reward.tars.reasoning_safety_fraction of them, None "
        "for the others): logged, never rewarded",
        per_type=True,
        demo=True,
    ),
    LogField("prompt_type", "harmful, harmless or ambiguous, from the data row"),
    LogField("refused", "1.0 when the answer reads as a refusal (keyword rule)", per_type=True, demo=True),
    LogField("reasoning_chars", "characters of reasoning"),
    LogField("answer_chars", "characters of answer"),
    LogField("answer_tokens", "policy tokens of the answer", per_type=True),
    LogField("reasoning_tokens", "policy tokens before the answer (0 without </think>)", per_type=True),
    LogField("scorer_fallbacks", "scores of this response that came from an explicit on_failure=fallback"),
    LogField(
        "empty_answer", "1.0 when the answer is empty (reward.tars.empty_answer decides its reward)", per_type=True
    ),
    LogField("val_judged", "1.0 when reward.tars.val_judge scored the row (its data source is in val_judge_sources)"),
    LogField("strongreject", "the StrongREJECT rubric score of a judged row (None otherwise)"),
)
KEYS: tuple[str, ...] = tuple(f.name for f in FIELDS)
PER_TYPE_KEYS: tuple[str, ...] = tuple(f.name for f in FIELDS if f.per_type)
DEMO_KEYS: tuple[str, ...] = tuple(f.name for f in FIELDS if f.demo)


def per_type_reward_key(prompt_type: str) -> str:
    """``reward_<type>``: the total for rows of that type, None for the others (validation curves per type)."""
    return f"reward_{prompt_type}"


def reward_log_keys(components: Iterable[str] = ()) -> list[str]:
    """Every key of one response's ``reward_extra_info``, in order; ``components`` are a ``weighted`` scorer's
    ``<role>/<name>`` keys."""
    return [*KEYS, *(per_type_reward_key(t) for t in PROMPT_TYPES), *components]


def describe() -> list[str]:
    """One line per field, for docs and ``--help`` texts."""
    return [f"`{f.name}`: {f.doc}" for f in FIELDS]
