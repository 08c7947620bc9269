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
    tars/T/empty_answer/mean  share of responses with nothing after </think>
    tars/T/answer_tokens/mean, tars/T/reasoning_tokens/mean

Use it from the command line (verl's own sync trainer stays available as ``trainer_mode=sync``)::

    python -m verl.trainer.main_ppo --config-path=pkg://tars_verl.config --config-name=tars_grpo \\
        trainer.v1.trainer_mode=tars ...
"""

from __future__ import annotations

import transfer_queue as tq
from verl.trainer.ppo.v1.trainer_base import register_trainer
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync

from tars_verl.type_metrics import prompt_type_metrics

TRAINER_NAME = "tars"


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
