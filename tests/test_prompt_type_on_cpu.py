"""A present but unknown prompt type stops the step naming the row; it never falls through to another field."""

import math

import pytest
from verl.experimental.reward_loop.reward_loop import RewardLoopWorker

from tars_verl.config import compose
from tars_verl.reward.prompt_type import PromptTypeError, resolve_prompt_type
from tars_verl.testing.verl_batch import Sample, make_reward_batch


def row(extra_type=None, top=None, ground_truth=None):
    r = {"data_source": "wildjailbreak", "extra_info": {"index": 7}, "reward_model": {"ground_truth": ground_truth}}
    if extra_type is not None:
        r["extra_info"]["prompt_type"] = extra_type
    if top is not None:
        r["prompt_type"] = top
    return r


@pytest.mark.parametrize("bad", ["harmfull", "HARMLES", 3, ["harmful"]])
def test_misspelt_type_does_not_fall_through_to_ground_truth(bad):
    with pytest.raises(PromptTypeError, match=r"'data_source': 'wildjailbreak', 'index': 7.*extra_info.prompt_type="):
        resolve_prompt_type(row(extra_type=bad, ground_truth="harmless"))
    with pytest.raises(PromptTypeError, match=r"prompt_type=.* is not a prompt type"):
        resolve_prompt_type(row(top=bad, ground_truth="harmless"))


@pytest.mark.parametrize("absent", [None, "", "  ", math.nan])
def test_absent_fields_fall_through(absent):
    r = row(ground_truth=" Harmless ")
    r["extra_info"]["prompt_type"] = absent
    assert resolve_prompt_type(r) == "harmless"
    assert resolve_prompt_type(row(extra_type="ambiguous", ground_truth="harmful")) == "ambiguous"
    with pytest.raises(PromptTypeError, match="all absent"):
        resolve_prompt_type(row(extra_type=absent))


def test_misspelt_type_stops_a_verl_reward_step(tiny_dir):
    cfg = compose(
        "tars_grpo",
        ["tars@reward.tars=tiny_cpu", f"actor_rollout_ref.model.path={tiny_dir}/policy", "reward.num_workers=1"],
    )
    worker = RewardLoopWorker(cfg)
    batch = make_reward_batch(worker.input_tokenizer, [Sample([{"role": "user", "content": "a"}], "ok", "harmfull")])
    batch.non_tensor_batch["reward_model"][0] = {"style": "tars", "ground_truth": "harmless"}
    with pytest.raises(PromptTypeError, match="extra_info.prompt_type='harmfull'"):
        worker.loop.run_until_complete(worker.compute_score_batch(batch))
