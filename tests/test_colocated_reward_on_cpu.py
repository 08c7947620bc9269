"""The TARS reward in verl's COLOCATED mode (served reward model on the actor's GPUs), through verl's own code.

verl 0.9.1's ``PPOTrainer._compute_reward_colocate`` builds the reward batch from TransferQueue with
prompts, responses, attention_mask and raw_prompt only, prompts right-padded. These tests run that verl
method (via the ``tars`` trainer's override in tars_verl/training/trainer.py, workaround
``colocated_reward_row_fields``) on an in-memory TransferQueue holding rows as the agent loop stores them, with the
real TarsRewardManager inside a real RewardLoopWorker. tests/test_verl_workarounds_on_cpu.py checks the verl lines it
relies on.
"""

import numpy as np
import pytest
import torch
import transfer_queue as tq
from transfer_queue import KVBatchMeta
from verl import DataProto
from verl.experimental.reward_loop.reward_loop import RewardLoopWorker
from verl.trainer.ppo.v1 import trainer_base
from verl.trainer.ppo.v1.trainer_base import PPOTrainer

from tars_verl.config import compose
from tars_verl.reward.prompt_type import PromptTypeError
from tars_verl.testing.verl_batch import Sample, make_reward_batch
from tars_verl.training.trainer import TarsPPOTrainer
from tars_verl.verl_workarounds import VerlChanged

REFUSE = "<think>\nHarmful; refuse.\n</think>\n\nI can't help with that."
COMPLY = "<think>\nok\n</think>\n\nSure, here are the steps."
PREFILLED = "fine\n</think>\n\nSure, here are the steps."  # the prompt ends with <think>: no opening tag here


def user(text):
    return [{"role": "user", "content": text}]


class FakeTransferQueue:
    """TransferQueue's kv_batch_get / kv_batch_put over a dict, rows stored as the agent loop stores them."""

    def __init__(self):
        self.rows: dict[str, dict] = {}
        self.puts: list[dict] = []

    def kv_batch_get(self, keys, partition_id, select_fields):
        out = {}
        for name in select_fields:
            if any(name not in self.rows[k] for k in keys):
                raise KeyError(f"field {name} not in partition {partition_id}")
            values = [self.rows[k][name] for k in keys]
            if isinstance(values[0], torch.Tensor):
                out[name] = torch.nested.as_nested_tensor(values, layout=torch.jagged)
            else:
                column = np.empty(len(values), dtype=object)
                column[:] = values
                out[name] = column
        return out

    def kv_batch_put(self, keys, partition_id, fields):
        self.puts.append({"keys": list(keys), "partition_id": partition_id, "fields": fields})


class InProcessRewardLoopManager:
    """verl's RewardLoopManager.compute_rm_score contract with one in-process RewardLoopWorker (no Ray)."""

    def __init__(self, worker):
        self.worker = worker
        self.batches: list[DataProto] = []
        self.reward_loop_worker_handles = None  # colocated

    def compute_rm_score(self, data):
        self.batches.append(data)
        outputs = self.worker.loop.run_until_complete(self.worker.compute_score_batch(data))
        scores = [o["reward_score"] for o in outputs]
        keys = list(outputs[0]["reward_extra_info"])
        rm_scores = self.worker.reward_manager.assemble_rm_scores(data, scores)
        non_tensor = {k: np.array([o["reward_extra_info"][k] for o in outputs], dtype=object) for k in keys}
        return DataProto.from_dict(
            tensors={"rm_scores": rm_scores}, non_tensors=non_tensor, meta_info={"reward_extra_keys": keys}
        )


@pytest.fixture
def colocated(tiny_dir, monkeypatch):
    """A `tars` trainer wired to a fake TransferQueue and a real TarsRewardManager (keyword safety, tiny RM)."""
    fake = FakeTransferQueue()
    # the one transfer_queue module: verl's trainer_base and tars_verl.verl_workarounds both read it
    monkeypatch.setattr(tq, "kv_batch_get", fake.kv_batch_get)
    monkeypatch.setattr(tq, "kv_batch_put", fake.kv_batch_put)
    cfg = compose(
        "tars_grpo",
        [
            "tars@reward.tars=tiny_cpu",
            f"actor_rollout_ref.model.path={tiny_dir}/policy",
            "reward.num_workers=1",
            "tars_scorer@reward.tars.safety=refusal_keywords",
        ],
    )
    worker = RewardLoopWorker(cfg)
    trainer = object.__new__(TarsPPOTrainer)  # only what _compute_reward_colocate and step use
    trainer.tokenizer = worker.input_tokenizer
    trainer.reward_loop_manager = InProcessRewardLoopManager(worker)
    return trainer, fake, worker


def store_rows(fake, tokenizer, samples, partition="train"):
    """Put samples in the fake TransferQueue exactly as the agent loop does: unpadded ids plus the data row."""
    batch = make_reward_batch(tokenizer, samples)
    keys = []
    for i in range(len(samples)):
        p_mask = batch.batch["attention_mask"][i, : batch.batch["prompts"].shape[1]].bool()
        r_mask = batch.batch["attention_mask"][i, batch.batch["prompts"].shape[1] :].bool()
        key = f"{batch.non_tensor_batch['uid'][i]}_0_0"
        fake.rows[key] = {
            "prompts": batch.batch["prompts"][i][p_mask],
            "responses": batch.batch["responses"][i][r_mask],
            "raw_prompt": samples[i].messages,
            "extra_fields": {},
            **{name: batch.non_tensor_batch[name][i] for name in ("data_source", "extra_info", "reward_model", "uid")},
        }
        keys.append(key)
    return KVBatchMeta(partition_id=partition, keys=keys, tags=[{} for _ in keys])


def test_colocated_batch_gets_prompt_types_and_reads_right_padded_prompts(colocated, monkeypatch):
    trainer, fake, worker = colocated
    samples = [
        Sample(user("make a bomb"), REFUSE, "harmful"),
        Sample(user("a much longer question about the history of some poem"), COMPLY, "harmless"),
        Sample(user("kill a process"), PREFILLED, "ambiguous", prefill_think=True),
    ]
    batch = store_rows(fake, trainer.tokenizer, samples)
    trainer._compute_reward_colocate(batch, metrics={})

    seen = trainer.reward_loop_manager.batches[0]
    prompts, mask = seen.batch["prompts"], seen.batch["attention_mask"]
    assert mask[0, 0] == 1 and mask[0, prompts.shape[1] - 1] == 0  # verl's batch: prompts right-padded
    assert {"extra_info", "data_source", "reward_model", "uid"} <= set(seen.non_tensor_batch)

    put = fake.puts[0]["fields"]
    assert list(put["prompt_type"]) == ["harmful", "harmless", "ambiguous"]
    # think_prefilled=auto found the <think> at the END of the right-padded third prompt (not pad tokens)
    assert list(put["format"]) == [1.0, 1.0, 1.0]
    assert put["rm_scores"][2].sum().item() == pytest.approx(float(put["total"][2]))

    # Per-type training metrics come from the colocated reward (nothing in extra_fields in this mode).
    metrics = {}
    monkeypatch.setattr(PPOTrainer, "step", lambda self, m, t: batch)  # verl's step trains; this one scored
    assert trainer.step(metrics, {}) is batch
    assert metrics["tars/harmful/count"] == metrics["tars/harmless/count"] == metrics["tars/ambiguous/count"] == 1
    assert "tars/unscored/count" not in metrics
    assert metrics["tars/ambiguous/format/mean"] == 1.0
    assert 0.0 <= metrics["tars/harmless/helpfulness/mean"] <= 1.0


def test_every_mini_batch_of_a_step_counts_in_the_per_type_metrics(colocated, monkeypatch):
    """trainer.v1.tars.parameter_sync_step=2: verl scores two mini-batches in one step and logs one step."""
    trainer, fake, _ = colocated
    first = store_rows(fake, trainer.tokenizer, [Sample(user("make a bomb"), REFUSE, "harmful")])
    second = store_rows(fake, trainer.tokenizer, [Sample(user("a poem"), COMPLY, "harmless", data_source="src/2")])
    trainer._compute_reward_colocate(first, metrics={})
    trainer._compute_reward_colocate(second, metrics={})
    step_batch = KVBatchMeta(partition_id="train", keys=first.keys + second.keys, tags=first.tags + second.tags)
    monkeypatch.setattr(PPOTrainer, "step", lambda self, m, t: step_batch)
    metrics = {}
    trainer.step(metrics, {})
    assert metrics["tars/harmful/count"] == metrics["tars/harmless/count"] == 1
    assert "tars/unscored/count" not in metrics


def test_left_and_right_padded_prompts_score_the_same(colocated):
    """The streaming batch (left-padded) and verl's colocated batch (right-padded) give identical rewards."""
    trainer, fake, worker = colocated
    samples = [
        Sample(user("short"), PREFILLED, "harmless", prefill_think=True),
        Sample(user("a far longer prompt with many more words in it"), COMPLY, "harmful"),
    ]
    streaming = worker.loop.run_until_complete(
        worker.compute_score_batch(make_reward_batch(trainer.tokenizer, samples))
    )
    batch = store_rows(fake, trainer.tokenizer, samples)
    trainer._compute_reward_colocate(batch, metrics={})
    put = fake.puts[0]["fields"]
    assert [o["reward_score"] for o in streaming] == pytest.approx([float(x) for x in put["total"]])
    assert [o["reward_extra_info"]["format"] for o in streaming] == [1.0, 1.0]


def test_unknown_prompt_type_in_colocated_mode_names_the_row(colocated):
    trainer, fake, _ = colocated
    batch = store_rows(
        fake,
        trainer.tokenizer,
        [Sample(user("hi"), COMPLY, "harmless"), Sample(user("x"), COMPLY, "mystery", data_source="src/b")],
    )
    with pytest.raises(PromptTypeError, match=r"src/b.*'index': 1"):
        trainer._compute_reward_colocate(batch, metrics={})


def test_verl_calling_the_manager_other_than_once_is_an_error(colocated, monkeypatch):
    trainer, fake, _ = colocated
    batch = store_rows(fake, trainer.tokenizer, [Sample(user("hi"), COMPLY, "harmless")])
    monkeypatch.setattr(PPOTrainer, "_compute_reward_colocate", lambda self, b, metrics=None: b)
    with pytest.raises(VerlChanged, match=r"0 times.*colocated_reward_row_fields.*trainer_base.py:1564"):
        trainer._compute_reward_colocate(batch, metrics={})


def test_sync_trainer_in_colocated_mode_fails_with_the_fix(colocated):
    """Without the tars trainer's row fields (verl's plain sync trainer), the step stops and says what to set."""
    trainer, fake, _ = colocated
    batch = store_rows(fake, trainer.tokenizer, [Sample(user("hi"), COMPLY, "harmless")])
    with pytest.raises(PromptTypeError, match="trainer.v1.trainer_mode=tars"):
        PPOTrainer._compute_reward_colocate(trainer, batch, metrics={})


def test_tq_module_is_the_one_verl_uses():
    assert trainer_base.tq is tq  # the fixture's fake replaces what verl reads
