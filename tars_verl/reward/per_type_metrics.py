"""Per-prompt-type aggregates of the TARS manager's ``reward_extra_info`` (training metrics, the demo).

>>> prompt_type_metrics([{"prompt_type": "harmful", "total": 1.0, "format": 1.0},
...                      {"prompt_type": "harmful", "total": 0.0, "format": 0.0}])["tars/harmful/reward/mean"]
0.5
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from tars_verl.reward.log_schema import PER_TYPE_KEYS
from tars_verl.reward.prompt_type import PROMPT_TYPES


def _number(value: Any) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def values_by_prompt_type(reward_infos: Iterable[dict], keys: Iterable[str]) -> tuple[dict, dict[str, int], int]:
    """Group the numeric values of ``keys`` by prompt type; None and NaN (not applicable) are skipped.

    Returns ``(values[type][key] -> list of floats, responses per type, responses without a known type)``.
    """
    keys = tuple(keys)
    values: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    counts: dict[str, int] = defaultdict(int)
    unscored = 0
    for info in reward_infos:
        ptype = (info or {}).get("prompt_type")
        if ptype not in PROMPT_TYPES:
            unscored += 1
            continue
        counts[ptype] += 1
        for key in keys:
            x = _number(info.get(key))
            if x is not None:
                values[ptype][key].append(x)
    return values, counts, unscored


def prompt_type_metrics(reward_infos: Iterable[dict], prefix: str = "tars") -> dict[str, float]:
    """Training-step metrics per prompt type: count, reward mean/max/min and the means of the other keys.

    Responses without a ``prompt_type`` (not scored by the TARS manager) are counted in
    ``tars/unscored/count`` so a mis-routed reward shows up in the log instead of vanishing.
    """
    values, counts, unscored = values_by_prompt_type(reward_infos, PER_TYPE_KEYS)
    metrics: dict[str, float] = {}
    for ptype, count in counts.items():
        metrics[f"{prefix}/{ptype}/count"] = float(count)
        per_key = values[ptype]
        rewards = per_key.get("total", [])
        if rewards:
            metrics[f"{prefix}/{ptype}/reward/mean"] = sum(rewards) / len(rewards)
            metrics[f"{prefix}/{ptype}/reward/max"] = max(rewards)
            metrics[f"{prefix}/{ptype}/reward/min"] = min(rewards)
        for key, xs in per_key.items():
            if key != "total":
                metrics[f"{prefix}/{ptype}/{key}/mean"] = sum(xs) / len(xs)
    if unscored:
        metrics[f"{prefix}/unscored/count"] = float(unscored)
    return metrics
