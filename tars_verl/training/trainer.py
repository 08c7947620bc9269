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

It also carries the row fields verl leaves out of the colocated reward batch (see
``_compute_reward_colocate`` below), so the TARS manager knows each response's prompt type when
verl serves a reward model on the actor's GPUs.

Use it from the command line (verl's own sync trainer stays available as ``trainer_mode=sync``)::

    python -m verl.trainer.main_ppo --config-path=pkg://tars_verl.config --config-name=tars_grpo \\
        trainer.v1.trainer_mode=tars ...
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import transfer_queue as tq
from verl.trainer.ppo.v1.trainer_base import register_trainer
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync

from tars_verl.reward.per_type_metrics import prompt_type_metrics

logger = logging.getLogger(__name__)

TRAINER_NAME = "tars"

# -- The one workaround for verl's colocated reward batch ----------------------------------------------------------
# Depends on verl 0.9.1, verl/trainer/ppo/v1/trainer_base.py, PPOTrainer._compute_reward_colocate (lines
# 1529-1581 of the wheel): it reads only prompts, responses and raw_prompt from TransferQueue (1534-1535), builds a
# DataProto with right-padded prompts (1537-1561), calls ``self.reward_loop_manager.compute_rm_score`` ONCE with the
# rows in ``batch.keys`` order (1564), and writes rm_scores plus each reward_extra_info key back as separate
# TransferQueue fields (1566-1579). tests/test_colocated_reward_on_cpu.py runs that verl code and fails if any of
# this changes; the override below also raises at run time if verl stops calling compute_rm_score exactly once.
VERL_COLOCATE_DEPENDENCY = (
    "verl 0.9.1 verl/trainer/ppo/v1/trainer_base.py PPOTrainer._compute_reward_colocate (lines 1529-1581)"
)
# Row fields the agent loop stores per sample in TransferQueue (the dataset row: agent_loop_tq.py
# _agent_loop_postprocess, ``field.update(kwargs)``) that the TARS manager reads; verl's batch has none of them.
ROW_FIELDS = ("data_source", "extra_info", "reward_model", "uid")


def _as_list(values: Any) -> list:
    """A TransferQueue non-tensor column (LinkedList, NonTensorStack or numpy array) as a plain list."""
    items = values.tolist() if hasattr(values, "tolist") else list(values)
    return [getattr(v, "data", v) if type(v).__name__ == "NonTensorData" else v for v in items]


def read_row_fields(keys: list[str], partition_id: str, fields=ROW_FIELDS) -> dict[str, np.ndarray]:
    """The data-row fields of ``keys`` from TransferQueue, one object array per field present there.

    A field the data set does not have is left out (the reward manager then names the row it cannot type).
    """
    rows: dict[str, np.ndarray] = {}
    for name in fields:
        try:
            values = _as_list(tq.kv_batch_get(keys=keys, partition_id=partition_id, select_fields=[name])[name])
        except Exception as err:  # noqa: BLE001 - an absent column: TransferQueue's error type is not public
            logger.warning("TARS: row field %r not in TransferQueue partition %r (%s)", name, partition_id, err)
            continue
        if len(values) != len(keys):
            raise RuntimeError(f"TARS: TransferQueue returned {len(values)} values of {name!r} for {len(keys)} keys")
        column = np.empty(len(values), dtype=object)
        column[:] = values
        rows[name] = column
    return rows


class _RewardManagerWithRowFields:
    """Stands in for verl's RewardLoopManager during one ``_compute_reward_colocate`` call: adds the row
    fields to the batch verl built, then lets the real manager score it. Everything else is delegated."""

    def __init__(self, manager, rows: dict[str, np.ndarray]):
        self._manager = manager
        self._rows = rows
        self.calls = 0
        self.output = None

    def compute_rm_score(self, data):
        self.calls += 1
        for name, column in self._rows.items():
            if len(column) != len(data):
                raise RuntimeError(
                    f"TARS: colocated reward batch has {len(data)} rows, {name!r} has {len(column)} "
                    f"(verl changed? this relies on {VERL_COLOCATE_DEPENDENCY})"
                )
            data.non_tensor_batch.setdefault(name, column)
        self.output = self._manager.compute_rm_score(data)
        return self.output

    def __getattr__(self, name):
        return getattr(self._manager, name)


def reward_infos_from_output(output) -> list[dict]:
    """Per-row reward_extra_info dicts from RewardLoopManager.compute_rm_score's DataProto."""
    keys = output.meta_info.get("reward_extra_keys", [])
    n = len(output)
    return [{k: output.non_tensor_batch[k][i] for k in keys} for i in range(n)]


@register_trainer(TRAINER_NAME)
class TarsPPOTrainer(PPOTrainerSync):
    """verl's ``sync`` PPO trainer with per-prompt-type reward metrics at each training step."""

    def _compute_reward_colocate(self, batch, metrics=None):
        """verl's colocated reward step, with the data-row fields (prompt type) in the reward batch."""
        rows = read_row_fields(list(batch.keys), batch.partition_id)
        manager = self.reward_loop_manager
        proxy = _RewardManagerWithRowFields(manager, rows)
        self.reward_loop_manager = proxy
        try:
            out = super()._compute_reward_colocate(batch, metrics=metrics)
        finally:
            self.reward_loop_manager = manager
        if proxy.calls != 1:
            raise RuntimeError(
                f"TARS: verl called the reward manager {proxy.calls} times in one colocated reward "
                f"step; tars_verl/training/trainer.py relies on {VERL_COLOCATE_DEPENDENCY}. Pin verl==0.9.1."
            )
        if batch.partition_id == "train":  # training-step metrics; validation logs its own per-key means
            self._colocated_reward_infos = dict(zip(batch.keys, reward_infos_from_output(proxy.output)))
        return out

    def _compute_metrics(self, batch, metrics, timing_raw, global_steps, epoch):
        super()._compute_metrics(batch, metrics, timing_raw, global_steps, epoch)
        keys = [key for key, tag in zip(batch.keys, batch.tags) if not tag.get("is_padding", False)]
        if not keys:
            return
        data = tq.kv_batch_get(keys=keys, partition_id=batch.partition_id, select_fields=["extra_fields"])
        extra_fields = data.pop("extra_fields").tolist()
        # Streaming reward: the agent loop put reward_extra_info in each row's extra_fields. Colocated reward:
        # verl wrote it back as separate fields; the values are the ones kept by _compute_reward_colocate.
        colocated = getattr(self, "_colocated_reward_infos", None) or {}
        infos = []
        for key, f in zip(keys, extra_fields):
            info = (f or {}).get("reward_extra_info") if isinstance(f, dict) else None
            infos.append(info if info else colocated.get(key, {}))
        self._colocated_reward_infos = {}
        metrics.update(prompt_type_metrics(infos))
