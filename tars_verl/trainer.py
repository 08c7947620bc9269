"""verl's synchronous PPO trainer plus TARS metrics per prompt type at every training step.

verl logs ``reward_extra_info`` per data source in validation only; a training step gets the
pooled ``critic/score/*``. TARS balances three prompt types, so the curves that matter are per type.
This trainer is registered with verl's ``register_trainer`` hook as ``tars`` and selected by
``trainer.v1.trainer_mode=tars`` (the default in ``tars_grpo.yaml``). It behaves exactly like
verl's ``sync`` trainer and adds, per step and per prompt type ``T``:

    tars/T/count            responses of that type scored by the TARS reward manager this step
    tars/T/reward/mean      the reward (format-gated), and its max/min
    tars/T/format/mean      share of well-formed responses
    tars/T/safety/mean      (harmful) or tars/T/helpfulness/mean (harmless, ambiguous)
    tars/T/refused/mean     keyword refusal rate
    tars/T/answer_tokens/mean, tars/T/reasoning_tokens/mean

Use it from the command line (verl's own sync trainer stays available as ``trainer_mode=sync``)::

    python -m verl.trainer.main_ppo --config-path=pkg://tars_verl.config --config-name=tars_grpo \\
        trainer.v1.trainer_mode=tars ...
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Iterable

import transfer_queue as tq
from verl.trainer.ppo.v1.trainer_base import register_trainer
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync

from tars_verl.reward_config import PROMPT_TYPES

TRAINER_NAME = "tars"
_MEAN_KEYS = ("format", "safety", "helpfulness", "refused", "answer_tokens", "reasoning_tokens")


def _number(value: Any) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def prompt_type_metrics(reward_infos: Iterable[dict], prefix: str = "tars") -> dict[str, float]:
    """Aggregate the TARS manager's per-response ``reward_extra_info`` dicts by prompt type.

    >>> prompt_type_metrics([{"prompt_type": "harmful", "total": 1.0, "format": 1.0},
    ...                      {"prompt_type": "harmful", "total": 0.0, "format": 0.0}])["tars/harmful/reward/mean"]
    0.5

    Responses without a ``prompt_type`` (not scored by the TARS manager) are counted in
    ``tars/unscored/count`` so a mis-routed reward shows up in the log instead of vanishing.
    """
    values: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    unscored = 0
    for info in reward_infos:
        ptype = (info or {}).get("prompt_type")
        if ptype not in PROMPT_TYPES:
            unscored += 1
            continue
        for key in ("total", *_MEAN_KEYS):
            x = _number(info.get(key))
            if x is not None:
                values[ptype][key].append(x)
        values[ptype]["_count"].append(1.0)
    metrics: dict[str, float] = {}
    for ptype, per_key in values.items():
        metrics[f"{prefix}/{ptype}/count"] = float(len(per_key.pop("_count")))
        rewards = per_key.pop("total", [])
        if rewards:
            metrics[f"{prefix}/{ptype}/reward/mean"] = sum(rewards) / len(rewards)
            metrics[f"{prefix}/{ptype}/reward/max"] = max(rewards)
            metrics[f"{prefix}/{ptype}/reward/min"] = min(rewards)
        for key, xs in per_key.items():
            metrics[f"{prefix}/{ptype}/{key}/mean"] = sum(xs) / len(xs)
    if unscored:
        metrics[f"{prefix}/unscored/count"] = float(unscored)
    return metrics


@register_trainer(TRAINER_NAME)
class TarsPPOTrainer(PPOTrainerSync):
    """verl's ``sync`` PPO trainer with per-prompt-type reward metrics at each training step."""

    def _compute_metrics(self, batch, metrics, timing_raw, global_steps, epoch):
        super()._compute_metrics(batch, metrics, timing_raw, global_steps, epoch)
        keys = [key for key, tag in zip(batch.keys, batch.tags) if not tag.get("is_padding", False)]
        if not keys:
            return
        data = tq.kv_batch_get(keys=keys, partition_id=batch.partition_id, select_fields=["extra_fields"])
        extra_fields = data.pop("extra_fields").tolist()
        infos = [(f or {}).get("reward_extra_info", {}) if isinstance(f, dict) else {} for f in extra_fields]
        metrics.update(prompt_type_metrics(infos))
