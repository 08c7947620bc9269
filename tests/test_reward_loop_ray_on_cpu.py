"""The whole reward loop as the trainer runs it: verl's RewardLoopManager, Ray actors, rm_scores."""

import pytest
import torch

from tars_verl.config import compose
from tars_verl.testing.verl_batch import Sample, make_reward_batch

pytestmark = pytest.mark.slow


def test_reward_loop_manager_with_ray_actors(tiny_dir):
    import ray
    from transformers import AutoTokenizer
    from verl.experimental.reward_loop.reward_loop import RewardLoopManager

    cfg = compose(
        "tars_grpo",
        ["tars@reward.tars=tiny_cpu", f"actor_rollout_ref.model.path={tiny_dir}/policy", "reward.num_workers=2"],
    )
    ray.init(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": {"TARS_TINY_DIR": tiny_dir}})
    try:
        manager = RewardLoopManager(cfg)
        tok = AutoTokenizer.from_pretrained(f"{tiny_dir}/policy")
        samples = [
            Sample(
                [{"role": "user", "content": f"q{i}"}],
                "<think>\nok\n</think>\n\nanswer" if i % 3 else "no format",
                ["harmful", "harmless", "ambiguous"][i % 3],
            )
            for i in range(6)
        ]
        batch = make_reward_batch(tok, samples)
        out = manager.compute_rm_score(batch)
    finally:
        ray.shutdown()
    scores = out.batch["rm_scores"]
    assert scores.shape == batch.batch["responses"].shape
    lengths = batch.batch["attention_mask"][:, batch.batch["prompts"].shape[1] :].sum(-1)
    totals = out.non_tensor_batch["total"]
    for i in range(6):
        assert scores[i, lengths[i] - 1].item() == pytest.approx(float(totals[i]), abs=1e-6)
        assert torch.count_nonzero(scores[i, : lengths[i] - 1]) == 0
    assert list(out.non_tensor_batch["prompt_type"]) == ["harmful", "harmless", "ambiguous"] * 2
    assert [float(f) for f in out.non_tensor_batch["format"]] == [0.0, 1.0, 1.0] * 2
    assert "reward_harmful" in out.meta_info["reward_extra_keys"]
