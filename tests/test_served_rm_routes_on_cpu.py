"""The served reward model scorer speaks the route of the back end verl serves its RM with (issue 12, item 7).

verl 0.9.1 scores its own RM through /classify when it is served by vLLM and /v1/embeddings when served by SGLang
(reward_loop.py compute_score_disrm); ``served_reward_model`` with ``url: verl`` follows
``reward.reward_model.rollout.name`` the same way, and a back end verl cannot serve an RM with stops at start-up.
"""

import math

import pytest
from transformers import AutoTokenizer
from verl.experimental.reward_loop.reward_loop import RewardLoopWorker

from tars_verl.config import compose
from tars_verl.scorers import ScoreItem, ScorerConfigError, build_scorer
from tars_verl.testing.fake_servers import classify_logit
from tars_verl.testing.verl_batch import Sample, make_reward_batch
from tars_verl.verl_workarounds import check_served_rm_routing, served_rm_overrides

ANSWERS = ["Short answer.", "A longer answer with more words in it."]


def verl_scorer(server, tiny_dir, backend, **cfg):
    tokenizer = AutoTokenizer.from_pretrained(f"{tiny_dir}/reward_model")
    return build_scorer(
        {"backend": "served_reward_model", "url": "verl", "model": "grm", **cfg},
        reward_router_address=server.url.removeprefix("http://"),
        reward_model_tokenizer=tokenizer,
        reward_model_backend=backend,
    )


def score(scorer, texts):
    import asyncio

    return asyncio.run(
        scorer.score([ScoreItem(prompt="q?", text=t, messages=[{"role": "user", "content": "q?"}]) for t in texts])
    )


@pytest.mark.parametrize(
    "backend,route", [("sglang", "/v1/embeddings"), ("vllm", "/classify"), ("tars_hf", "/classify")]
)
def test_verl_router_route_follows_the_rm_back_end(server, tiny_dir, backend, route):
    res = score(verl_scorer(server, tiny_dir, backend), ANSWERS)
    path, payload = server.requests[0]
    assert path == route and len(payload["input"]) == 2
    for r, text in zip(res, payload["input"]):
        assert r.score == pytest.approx(1 / (1 + math.exp(-classify_logit(text))))  # sigmoid of the raw score


def test_sglang_rm_returns_raw_scores_so_activation_none_is_refused(server, tiny_dir):
    with pytest.raises(ScorerConfigError, match="activation=sigmoid"):
        verl_scorer(server, tiny_dir, "sglang", activation="none")


def cfg_with_served_rm(tiny_dir, rollout_name):
    return compose(
        "tars_grpo",
        [
            "tars@reward.tars=tiny_cpu",
            f"actor_rollout_ref.model.path={tiny_dir}/policy",
            "reward.num_workers=1",
            "tars_scorer@reward.tars.safety=refusal_keywords",
            "tars_scorer@reward.tars.helpfulness=grm_verl",
            "reward.reward_model.enable=True",
            f"reward.reward_model.model_path={tiny_dir}/reward_model",
            f"reward.reward_model.rollout.name={rollout_name}",
            *served_rm_overrides(),
        ],
    )


def test_rm_back_end_verl_cannot_serve_stops_the_start(tiny_dir):
    cfg = cfg_with_served_rm(tiny_dir, "trtllm")
    with pytest.raises(ScorerConfigError, match="reward.reward_model.rollout.name=trtllm"):
        check_served_rm_routing(cfg.reward)  # the check tars_verl.training.dry_run runs too
    check_served_rm_routing(cfg_with_served_rm(tiny_dir, "sglang").reward)


def test_reward_worker_with_sglang_rm_scores_through_embeddings(server, tiny_dir):
    """verl's RewardLoopWorker builds the TARS manager with its router address; helpfulness goes to /v1/embeddings."""
    worker = RewardLoopWorker(cfg_with_served_rm(tiny_dir, "sglang"), server.url.removeprefix("http://"))
    batch = make_reward_batch(
        worker.input_tokenizer,
        [Sample([{"role": "user", "content": "a poem"}], "<think>\nok\n</think>\n\nSure.", "harmless")],
    )
    out = worker.loop.run_until_complete(worker.compute_score_batch(batch))
    assert [p for p, _ in server.requests] == ["/v1/embeddings"]
    assert 0.0 < out[0]["reward_extra_info"]["helpfulness"] < 1.0


def test_tars_hf_reward_model_server_speaks_vllm_classify(tiny_dir, tmp_path, monkeypatch):
    """The CPU stand-in for verl's vLLM RM server answers the scorer's /classify with the model's own logits."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from tars_verl.scorers.hf_reward_model import rm_conversation_text
    from tars_verl.testing.hf_rollout import HFRewardModelServer

    log = tmp_path / "requests.jsonl"
    monkeypatch.setenv("TARS_HF_RM_REQUEST_LOG", str(log))
    server = HFRewardModelServer({"path": f"{tiny_dir}/reward_model"}, replica_rank=0)
    try:
        scorer = build_scorer(
            {
                "backend": "served_reward_model",
                "url": f"http://{server.address()}",
                "model": "grm",
                "tokenizer_path": f"{tiny_dir}/reward_model",
                "health_path": "/health",
            }
        )
        scorer.check_ready()
        res = score(scorer, ANSWERS)
        # use_activation=false: the server returns raw logits, the scorer applies sigmoid; same as the model itself.
        model = AutoModelForSequenceClassification.from_pretrained(f"{tiny_dir}/reward_model").eval()
        tok = scorer.tokenizer
        texts = [
            rm_conversation_text(tok, ScoreItem(prompt="q?", text=t, messages=[{"role": "user", "content": "q?"}]))
            for t in ANSWERS
        ]
        with torch.no_grad():
            logits = [model(**tok(t, return_tensors="pt", add_special_tokens=False)).logits[0, 0].item() for t in texts]
        assert [r.score for r in res] == pytest.approx([1 / (1 + math.exp(-x)) for x in logits], abs=1e-5)
        assert server.stats()["inputs"] == 2 and '"inputs": 2' in log.read_text()
    finally:
        server.close()
