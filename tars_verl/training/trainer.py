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

It also carries the row fields verl leaves out of the colocated reward batch, so the TARS manager
knows each response's prompt type when verl serves a reward model on the actor's GPUs (workaround
``colocated_reward_row_fields`` in ``tars_verl/verl_workarounds.py``).

Use it from the command line (verl's own sync trainer stays available as ``trainer_mode=sync``)::

    python -m verl.trainer.main_ppo --config-path=pkg://tars_verl.config --config-name=tars_grpo \\
        trainer.v1.trainer_mode=tars ...
"""

from __future__ import annotations

from omegaconf import OmegaConf
from verl.trainer.ppo.v1.trainer_base import register_trainer
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync

from tars_verl.reward.config import tars_config_from
from tars_verl.reward.per_type_metrics import prompt_type_metrics
from tars_verl.verl_workarounds import compute_reward_colocate_with_row_fields, training_reward_infos

TRAINER_NAME = "tars"


@register_trainer(TRAINER_NAME)
class TarsPPOTrainer(PPOTrainerSync):
    """verl's ``sync`` PPO trainer with per-prompt-type reward metrics at each training step."""

    def __init__(self, config):
        # Fail fast: a reward config the TARS manager would reject (a scorer's API key not set where the workers
        # run, an unknown back end) otherwise fails in each reward worker's constructor, which verl 0.9.1 logs from
        # the agent loop and then waits on forever. Checked here, in verl's TaskRunner, before any worker starts.
        if OmegaConf.select(config, "reward.reward_manager.name") == "tars":
            tars_config_from(config.reward.get("tars"))
        super().__init__(config)

    def _compute_reward_colocate(self, batch, metrics=None):
        """verl's colocated reward step, with the data-row fields (prompt type) in the reward batch."""
        out, infos = compute_reward_colocate_with_row_fields(self, super()._compute_reward_colocate, batch, metrics)
        if batch.partition_id == "train":  # training-step metrics; validation logs its own per-key means
            # update, not replace: with parameter_sync_step > 1 one step scores several mini-batches
            self._colocated_reward_infos = {**getattr(self, "_colocated_reward_infos", {}), **infos}
        return out

    def step(self, metrics, timing_raw):
        """verl's training step, plus the per-prompt-type metrics of the responses it scored."""
        batch = super().step(metrics, timing_raw)
        colocated, self._colocated_reward_infos = getattr(self, "_colocated_reward_infos", {}), {}
        infos = training_reward_infos(batch, colocated)
        if infos:
            metrics.update(prompt_type_metrics(infos))
        return batch
