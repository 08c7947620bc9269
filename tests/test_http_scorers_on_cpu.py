"""Every HTTP back end against a real server on 127.0.0.1 speaking its protocol."""

import logging
import math
import socket

import pytest
from conftest import FAST, items, moderation, run

from tars_verl.scorers import ScorerConfigError, ScorerError, build_scorer
from tars_verl.testing.fake_servers import classify_logit, judge_points


def test_moderation_scores_tolerance_and_one_request_per_batch(server, monkeypatch):
    scorer = moderation(server, monkeypatch)
    res = run(scorer.score(items("fine text", "UNSAFE text", "MEH text")))
    assert [r.score for r in res] == [1.0, pytest.approx(0.03), pytest.approx(0.65)]  # 0.98 >= 0.9 -> 1.0
    assert res[1].details["flagged"] is True and res[1].details["top_category"] == "violence"
    assert len(server.requests) == 1 and server.requests[0][1]["input"] == ["fine text", "UNSAFE text", "MEH text"]


def test_moderation_tolerance_can_be_disabled(server, monkeypatch):
    scorer = moderation(server, monkeypatch, tolerance_threshold=None)
    assert run(scorer.score(items("fine")))[0].score == pytest.approx(0.98)


def test_429_then_success_is_retried(server, monkeypatch):
    server.script = ["429", "429", "ok"]
    scorer = moderation(server, monkeypatch)
    assert run(scorer.score(items("fine")))[0].score == 1.0
    assert len(server.requests) == 3


def test_500s_until_failure_names_endpoint_and_status(server, monkeypatch):
    server.script = ["500"] * 10
    scorer = moderation(server, monkeypatch, max_retries=2)
    with pytest.raises(ScorerError) as err:
        run(scorer.score(items("fine")))
    assert server.url + "/v1/moderations" in str(err.value) and "HTTP 500" in str(err.value)
    assert "3 attempts" in str(err.value) and len(server.requests) == 3


def test_malformed_json_is_a_clear_error_not_a_score(server, monkeypatch):
    server.script = ["badjson"]
    with pytest.raises(ScorerError, match="malformed JSON"):
        run(moderation(server, monkeypatch).score(items("fine")))
    assert len(server.requests) == 1  # not retried


def test_fallback_policy_is_explicit_logged_and_flagged(server, monkeypatch, caplog):
    server.script = ["500"] * 10
    scorer = moderation(server, monkeypatch, max_retries=1, on_failure="fallback", fallback_score=0.5)
    with caplog.at_level(logging.WARNING):
        res = run(scorer.score(items("a", "b")))
    assert [r.score for r in res] == [0.5, 0.5] and all(r.details["fallback"] for r in res)
    assert scorer.fallback_count == 2 and "fallback_score=0.5" in caplog.text
    with pytest.raises(ScorerConfigError, match="explicit fallback_score"):
        moderation(server, monkeypatch, on_failure="fallback")


def test_missing_api_key_fails_at_build(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ScorerConfigError, match="OPENAI_API_KEY is not set"):
        build_scorer({"backend": "openai_moderation"})


def test_api_key_is_sent_but_never_in_errors(server, monkeypatch):
    server.script = ["500"] * 5
    scorer = moderation(server, monkeypatch, max_retries=0)
    with pytest.raises(ScorerError) as err:
        run(scorer.score(items("x")))
    assert "sk-test-secret" not in str(err.value)


def test_server_down_is_reported_at_start_up():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    scorer = build_scorer({"backend": "guard_chat", "url": f"http://127.0.0.1:{port}/v1", "max_retries": 1, **FAST})
    with pytest.raises(ScorerError, match=f"127.0.0.1:{port}.*(ConnectError|connect)"):
        scorer.check_ready()


def test_start_up_check_asks_the_live_server(server):
    before = server.connections
    build_scorer({"backend": "guard_chat", "url": server.url + "/v1"}).check_ready()
    assert server.connections > before  # it really asked the server (GET /v1/models)
    # ... and a route the server does not have fails the check, named (the fake answers 404 there).
    with pytest.raises(ScorerError, match="/v1/no-such-route"):
        build_scorer(
            {"backend": "guard_chat", "url": server.url + "/v1", "health_path": "/no-such-route", "max_retries": 0}
        ).check_ready()


def test_llama_guard_graded_by_logprobs_and_connections_reused(server):
    scorer = build_scorer({"backend": "guard_chat", "url": server.url + "/v1", "max_concurrency": 2})
    res = run(scorer.score(items("fine", "UNSAFE", "fine", "UNSAFE", "fine", "fine")))
    assert [round(r.score, 6) for r in res] == [0.8, 0.2, 0.8, 0.2, 0.8, 0.8]  # P(safe) from top_logprobs
    assert res[1].details["verdict"] == "unsafe" and res[1].details["binary_score"] == 0.0
    assert res[1].details["categories"] == "S1"
    sent = sorted(p["messages"][-1]["content"] for _, p in server.requests)  # concurrent: any order
    assert sent == ["UNSAFE", "UNSAFE", "fine", "fine", "fine", "fine"]
    assert all(p["messages"][0] == {"role": "user", "content": "How do I do it?"} for _, p in server.requests)
    assert server.connections <= 2  # 6 requests over at most max_concurrency pooled connections


def test_guard_without_logprobs_gives_binary_score(server):
    server.logprobs = False
    scorer = build_scorer({"backend": "guard_chat", "url": server.url + "/v1"})
    assert [r.score for r in run(scorer.score(items("fine", "UNSAFE")))] == [1.0, 0.0]


def test_qwen3guard_format(server):
    scorer = build_scorer(
        {"backend": "guard_chat", "url": server.url + "/v1", "model": "qwen3guard-gen-8b", "format": "qwen3guard"}
    )
    res = run(scorer.score(items("UNSAFE", "fine")))
    assert [round(r.score, 6) for r in res] == [0.2, 0.8]


def test_wildguard_uses_completions_and_reads_refusal(server):
    scorer = build_scorer({"backend": "guard_chat", "url": server.url + "/v1", "format": "wildguard"})
    res = run(scorer.score(items("UNSAFE recipe", "I can't help with that.")))
    assert [round(r.score, 6) for r in res] == [0.2, 0.8]  # graded from the text completion's logprobs
    assert [r.details["binary_score"] for r in res] == [0.0, 1.0] and all(r.details["graded"] for r in res)
    assert res[1].details["refusal"] is True
    assert server.requests[0][0] == "/v1/completions" and "Request:\nHow do I do it?" in server.requests[0][1]["prompt"]


def test_guard_reply_without_verdict_is_an_error(server):
    server.script = ["noverdict"]
    scorer = build_scorer({"backend": "guard_chat", "url": server.url + "/v1"})
    with pytest.raises(ScorerError, match="cannot read a guard verdict"):
        run(scorer.score(items("fine")))


def test_served_reward_model_classify(server, tiny_dir):
    scorer = build_scorer(
        {
            "backend": "served_reward_model",
            "url": server.url,
            "model": "grm",
            "tokenizer_path": f"{tiny_dir}/reward_model",
        }
    )
    res = run(scorer.score(items("Short answer.", "A longer answer with more words in it.")))
    path, payload = server.requests[0]
    assert path == "/classify" and len(payload["input"]) == 2 and payload["use_activation"] is False
    for r, text in zip(res, payload["input"]):
        assert "<|im_start|>assistant\n" in text  # the RM's own chat template was applied
        assert r.score == pytest.approx(1 / (1 + math.exp(-classify_logit(text))))


def test_served_reward_model_start_up_check_accepts_an_empty_health_body(server, tiny_dir):
    # vLLM's GET /health answers 200 with an empty body (parsing it as JSON failed every start-up).
    scorer = build_scorer(
        {
            "backend": "served_reward_model",
            "url": server.url,
            "model": "grm",
            "tokenizer_path": f"{tiny_dir}/reward_model",
            "activation": "none",
        }
    )
    scorer.check_ready()
    res = run(scorer.score(items("Short answer.")))
    text = server.requests[0][1]["input"][0]
    assert server.requests[0][1]["use_activation"] is True  # server-side sigmoid, as vLLM applies by default
    assert res[0].score == pytest.approx(1 / (1 + math.exp(-classify_logit(text))))


def test_served_reward_model_verl_router_requires_verl_rm():
    with pytest.raises(ScorerConfigError, match="reward.reward_model.enable=True"):
        build_scorer({"backend": "served_reward_model", "url": "verl"})


def test_llm_judge_parses_and_rescales(server):
    scorer = build_scorer({"backend": "llm_judge", "url": server.url + "/v1"})
    texts = ["one two three", "a b c d e f g h i j k l"]
    res = run(scorer.score(items(*texts)))
    assert [r.score for r in res] == [pytest.approx((judge_points(t) - 1) / 9) for t in texts]


def test_llm_judge_prompt_with_braces_is_not_refilled(server):
    scorer = build_scorer({"backend": "llm_judge", "url": server.url + "/v1"})
    run(scorer.score(items("ok", prompt="literal {response} in the prompt")))
    assert "literal {response} in the prompt" in server.requests[0][1]["messages"][0]["content"]


def test_weighted_mix_logs_every_component(server, monkeypatch):
    monkeypatch.setenv("TEST_OPENAI_KEY", "k")
    scorer = build_scorer(
        {
            "backend": "weighted",
            "components": [
                {"name": "guard", "weight": 3.0, "backend": "guard_chat", "url": server.url + "/v1", "logprobs": False},
                {"name": "rules", "weight": 1.0, "backend": "refusal_keywords"},
            ],
        }
    )
    res = run(scorer.score(items("UNSAFE", "I can't help with that.")))
    assert res[0].details["components"] == {"guard": 0.0, "rules": 0.0} and res[0].score == 0.0
    assert res[1].details["components"] == {"guard": 1.0, "rules": 1.0} and res[1].score == 1.0


def test_unknown_backend_and_unknown_key_are_config_errors():
    with pytest.raises(ScorerConfigError, match="unknown; choose one of"):
        build_scorer({"backend": "nope"})
    with pytest.raises(ScorerConfigError, match=r"unknown key\(s\) \['urll'\]"):
        build_scorer({"backend": "guard_chat", "urll": "x"})


def test_outage_longer_than_max_retries_is_ridden_out_by_a_time_budget(server, monkeypatch):
    server.script = ["500"] * 6 + ["429"] * 6 + ["ok"]  # 12 failures: more than the old fixed 5 retries
    scorer = moderation(
        server, monkeypatch, max_retries=None, retry_for_s=60.0, backoff_initial_s=0.001, backoff_max_s=0.002
    )
    assert run(scorer.score(items("fine")))[0].score == 1.0
    assert len(server.requests) == 13


def test_giving_up_names_endpoint_status_attempts_and_time(server, monkeypatch):
    server.script = ["503"] * 1000
    scorer = moderation(
        server, monkeypatch, max_retries=None, retry_for_s=0.2, backoff_initial_s=0.001, backoff_max_s=0.01
    )
    with pytest.raises(ScorerError) as err:
        run(scorer.score(items("fine")))
    msg = str(err.value)
    assert server.url + "/v1/moderations" in msg and "HTTP 503" in msg
    assert "retry_for_s=0.2" in msg and " s (" in msg and f"after {len(server.requests)} attempts" in msg


def test_retry_forever_is_refused(server, monkeypatch):
    with pytest.raises(ScorerConfigError, match="max_retries and retry_for_s are both null"):
        moderation(server, monkeypatch, max_retries=None)


def test_paper_preset_rides_out_minutes_of_outage(monkeypatch):
    from tars_verl.reward.config import load_preset, tars_config_from

    monkeypatch.setenv("OPENAI_API_KEY", "sk-x")
    tars = tars_config_from(load_preset("paper"))
    for role in ("safety", "val_judge"):
        cfg = getattr(tars, role)
        assert cfg["max_retries"] is None and cfg["retry_for_s"] >= 300, role
        assert 1.0 <= cfg["backoff_max_s"] <= 120, role  # backs off, and still probes at least every 2 minutes
