"""The tars_hf testing rollout (tars_verl/testing/hf_rollout.py) and the per-prompt-type training metrics."""

import asyncio
import math

import pytest
import torch

from tars_verl.reward.per_type_metrics import prompt_type_metrics
from tars_verl.testing.hf_rollout import HFGenerateServer

CONFIG = {"prompt_length": 32, "response_length": 8, "max_model_len": None, "seed": 0}


@pytest.fixture(scope="module")
def server(tiny_dir):
    return HFGenerateServer(CONFIG, {"path": f"{tiny_dir}/policy"}, replica_rank=0)


def generate(server, prompt, **params):
    return asyncio.run(server.generate(prompt_ids=prompt, sampling_params=params, request_id="r"))


def test_generate_returns_tokens_logprobs_and_weight_version(server):
    out = generate(server, [5, 6, 7, 8], temperature=0.0, top_p=1.0, top_k=-1, logprobs=True)
    assert 1 <= len(out.token_ids) <= CONFIG["response_length"]
    assert len(out.log_probs) == len(out.token_ids) and all(lp <= 0 for lp in out.log_probs)
    assert out.extra_fields["global_steps"] == server.global_steps
    again = generate(server, [5, 6, 7, 8], temperature=0.0, top_p=1.0, top_k=-1)
    assert again.token_ids == out.token_ids  # greedy is deterministic
    # Greedy log-probs are those of the model's own argmax tokens under its raw logits.
    with torch.no_grad():
        logits = server.model(torch.tensor([[5, 6, 7, 8] + out.token_ids])).logits[0, 3:-1]
    expected = torch.log_softmax(logits, -1).gather(-1, torch.tensor(out.token_ids)[:, None])[:, 0]
    assert torch.allclose(expected, torch.tensor(out.log_probs), atol=1e-4)
    assert len(generate(server, [5, 6], temperature=1.0, max_tokens=3).token_ids) <= 3


def test_update_weights_changes_the_policy_and_rejects_unknown_names(server):
    before = generate(server, [9, 10, 11], temperature=0.0)
    # named_parameters, not state_dict: the tiny policy ties lm_head to the embeddings (one tensor, two names).
    new = {name: torch.randn_like(p) for name, p in server.model.named_parameters()}
    assert asyncio.run(server.update_weights(new, global_steps=7)) == len(new)
    assert server.stats()["weight_version"] >= 1 and server.global_steps == 7
    for name, tensor in new.items():
        assert torch.equal(server.model.state_dict()[name], tensor)
    after = generate(server, [9, 10, 11], temperature=0.0)
    assert after.extra_fields["global_steps"] == 7
    assert after.log_probs != before.log_probs
    with pytest.raises(KeyError, match="model.no_such_layer.weight"):
        asyncio.run(server.update_weights({"model.no_such_layer.weight": torch.zeros(1)}))


def test_full_determinism_samples_each_request_from_its_own_seed(tiny_dir):
    """verl's rollout.full_determinism names requests det-<index>: each samples the same tokens whatever ran before
    (a second run: a new server, the requests in another order, other requests and other draws in between)."""

    def server():
        return HFGenerateServer(
            {**CONFIG, "response_length": 16, "full_determinism": True}, {"path": f"{tiny_dir}/policy"}, 0
        )

    def sample(det, request_id, prompt):
        params = {"temperature": 1.0, "top_p": 1.0, "top_k": -1}
        return asyncio.run(det.generate(prompt_ids=prompt, sampling_params=params, request_id=request_id)).token_ids

    det = server()
    first = [sample(det, f"det-{i}", [5, 6, 7]) for i in range(4)]
    rerun = server()
    sample(rerun, "det-9", [8, 9])  # other requests in between (arrival order) draw from their own streams
    torch.manual_seed(123)  # so does anything else that uses torch's global generator
    assert [sample(rerun, f"det-{i}", [5, 6, 7]) for i in reversed(range(4))] == first[::-1]
    assert len({tuple(t) for t in first}) > 1  # n rollouts of one prompt are different samples
    assert det.request_seed("det-0", [5, 6, 7]) != det.request_seed("det-0", [5, 6, 8])
    assert det.request_seed("0f3a9c", [5, 6, 7]) is None  # verl's random request ids: the shared generator


def test_full_determinism_keeps_the_samples_of_one_prompt_apart(tiny_dir):
    """verl 0.9.1's v1 trainers send the rollout.n samples of a prompt as identical requests (all det-0): they must
    still be different samples (else every GRPO advantage is 0), and the same set of samples in every run."""

    def group(n=6, steps=3):
        det = HFGenerateServer(
            {**CONFIG, "response_length": 16, "full_determinism": True}, {"path": f"{tiny_dir}/policy"}, 0
        )
        params = {"temperature": 1.0, "top_p": 1.0, "top_k": -1}
        out = []
        for step in range(steps):
            asyncio.run(det.set_global_steps(step))
            out.append(
                sorted(
                    tuple(
                        asyncio.run(
                            det.generate(prompt_ids=[5, 6, 7], sampling_params=params, request_id="det-0")
                        ).token_ids
                    )
                    for _ in range(n)
                )
            )
        return out

    first = group()
    assert all(len(set(samples)) > 1 for samples in first), first
    assert first[0] != first[1]  # a new step samples anew
    torch.manual_seed(7)
    assert group() == first


def test_prompt_too_long_for_the_model_is_an_error(server):
    with pytest.raises(ValueError, match="no room"):
        generate(server, list(range(5, 5 + 40)), temperature=0.0)


def test_prompt_type_metrics_by_hand():
    infos = [
        {"prompt_type": "harmful", "total": 1.0, "format": 1.0, "safety": 1.0, "helpfulness": None, "refused": 1.0},
        {"prompt_type": "harmful", "total": 0.0, "format": 0.0, "safety": 0.5, "helpfulness": None, "refused": 0.0},
        {"prompt_type": "harmless", "total": 0.25, "format": 1.0, "safety": None, "helpfulness": 0.25},
        {"prompt_type": "ambiguous", "total": float("nan"), "format": 1.0, "helpfulness": 0.5},
        {},  # a response the TARS manager did not score
    ]
    m = prompt_type_metrics(infos)
    assert m["tars/harmful/count"] == 2 and m["tars/harmless/count"] == 1 and m["tars/ambiguous/count"] == 1
    assert m["tars/harmful/reward/mean"] == 0.5 and m["tars/harmful/reward/max"] == 1.0
    assert m["tars/harmful/reward/min"] == 0.0
    assert m["tars/harmful/safety/mean"] == 0.75 and m["tars/harmful/refused/mean"] == 0.5
    assert "tars/harmful/helpfulness/mean" not in m  # None is skipped, not counted as 0
    assert m["tars/harmless/helpfulness/mean"] == 0.25
    assert "tars/ambiguous/reward/mean" not in m  # NaN is skipped
    assert m["tars/unscored/count"] == 1
    assert not any(isinstance(v, float) and math.isnan(v) for v in m.values())
