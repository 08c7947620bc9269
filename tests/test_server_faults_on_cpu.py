"""Faults from servers and models never become a reward: NaN, inf, out-of-range values, malformed replies.

Every fault comes from a real HTTP server on 127.0.0.1 (``fake_servers``: scripted reply bodies) or a
real forward pass of a tiny model with a poisoned weight.
"""

import logging
import math

import pytest
from conftest import FAST, items, moderation, run

from tars_verl.scorers import ScorerError, build_scorer
from tars_verl.scorers.base import stable_sigmoid
from tars_verl.scorers.http_client import redact_url


def moderation_reply(**scores):
    return {"results": [{"flagged": True, "category_scores": scores}]}


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, -0.5, 1.7, "0.3", None])
def test_moderation_bad_category_score_is_an_error_naming_endpoint_and_value(server, monkeypatch, bad):
    # NaN not first: max() skipped it and gave safety 0.99 -> 1.0; -0.5 / 1.7 were clamped to 1.0 / 0.0.
    server.script = [moderation_reply(harassment=0.01, violence=bad)]
    with pytest.raises(ScorerError) as err:
        run(moderation(server, monkeypatch).score(items("x")))
    msg, shown = str(err.value), repr(float(bad)) if isinstance(bad, float) else repr(bad)
    assert f"{server.url}/v1/moderations" in msg and "'violence'" in msg and shown in msg


def test_moderation_nan_with_fallback_takes_the_logged_counted_fallback(server, monkeypatch, caplog):
    reply = moderation_reply(harassment=0.01, violence=math.nan)
    reply["results"].append({"flagged": False, "category_scores": {"violence": 0.01}})
    server.script = [reply]
    scorer = moderation(server, monkeypatch, on_failure="fallback", fallback_score=0.25)
    with caplog.at_level(logging.WARNING):
        res = run(scorer.score(items("x", "y")))
    assert [r.score for r in res] == [0.25, 0.25] and all(r.details["fallback"] for r in res)
    assert scorer.fallback_count == 2 and "violence" in caplog.text


@pytest.fixture
def served_rm(server, tiny_dir):
    def build(**kw):
        return build_scorer(
            {
                "backend": "served_reward_model",
                "url": server.url,
                "model": "grm",
                "tokenizer_path": f"{tiny_dir}/reward_model",
                **FAST,
                **kw,
            }
        )

    return build


def classify_reply(*values):
    return {"data": [{"index": i, "probs": [v]} for i, v in enumerate(values)]}


def test_served_rm_extreme_logits_are_stable(server, served_rm):
    server.script = [classify_reply(-1000.0, 1000.0, 0.0)]  # math.exp(1000) raised OverflowError
    assert [r.score for r in run(served_rm().score(items("a", "b", "c")))] == [0.0, 1.0, 0.5]
    assert stable_sigmoid(-745.2) == pytest.approx(0.0) and stable_sigmoid(3.0) == pytest.approx(1 / (1 + math.exp(-3)))


@pytest.mark.parametrize("bad", [math.nan, math.inf, None, "2"])
def test_served_rm_bad_logit_is_an_error_naming_classify(server, served_rm, bad):
    server.script = [classify_reply(0.5, bad)]
    with pytest.raises(ScorerError, match=r"/classify: item 1 logit"):
        run(served_rm().score(items("a", "b")))


@pytest.mark.parametrize("bad", [1.5, -0.1, math.nan])
def test_served_rm_probability_out_of_range_is_an_error(server, served_rm, bad):
    server.script = [classify_reply(bad)]
    with pytest.raises(ScorerError, match=r"/classify: item 0 prob"):
        run(served_rm(activation="none").score(items("a")))


def test_served_rm_overflow_or_nan_with_fallback_does_not_crash(server, served_rm):
    scorer = served_rm(on_failure="fallback", fallback_score=0.0)
    server.script = [classify_reply(math.nan), classify_reply(-1000.0)]
    res = run(scorer.score(items("a")))
    assert res[0].score == 0.0 and res[0].details["fallback"] and scorer.fallback_count == 1
    res = run(scorer.score(items("a")))  # -1000 is a valid logit: P = 0, no fallback, no OverflowError
    assert res[0].score == 0.0 and not res[0].details.get("fallback")


def test_guard_nan_logprob_is_an_error_naming_the_endpoint(server):
    def poison(reply):
        reply["choices"][0]["logprobs"]["content"][0]["top_logprobs"][0]["logprob"] = math.nan
        return reply

    server.script = [poison]
    scorer = build_scorer({"backend": "guard_chat", "url": server.url + "/v1", **FAST})
    with pytest.raises(ScorerError, match=r"/v1/chat/completions: logprob of .*nan"):
        run(scorer.score(items("UNSAFE")))


@pytest.mark.parametrize("reply", [{"choices": [{"message": None}]}, {"choices": None}, {"choices": [{}]}])
def test_judge_and_guard_malformed_payload_is_an_error_or_the_fallback(server, reply):
    for backend in ("llm_judge", "guard_chat"):
        server.script = [reply]
        with pytest.raises(ScorerError, match=server.url + "/v1"):
            run(build_scorer({"backend": backend, "url": server.url + "/v1", **FAST}).score(items("x")))
        server.script = [reply]
        scorer = build_scorer(
            {"backend": backend, "url": server.url + "/v1", "on_failure": "fallback", "fallback_score": 1.0, **FAST}
        )
        assert run(scorer.score(items("x")))[0].details["fallback"]


def test_hf_classifier_nan_logits_name_the_model(tiny_dir):
    scorer = build_scorer(
        {"backend": "hf_classifier", "model_path": f"{tiny_dir}/classifier", "safe_label": "SAFE", "device": "cpu"}
    )
    list(scorer.clf.model.parameters())[-1].data.fill_(math.nan)  # a real forward pass that yields NaN
    with pytest.raises(ScorerError, match=f"{tiny_dir}/classifier: non-finite logits for item"):
        run(scorer.score(items("a", "b")))


def test_unexpected_exception_in_a_backend_follows_the_fallback(server, monkeypatch):
    scorer = moderation(server, monkeypatch, on_failure="fallback", fallback_score=0.5)

    async def boom(batch):
        raise OverflowError("math range error")

    scorer.score_batch = boom
    res = run(scorer.score(items("a")))
    assert res[0].score == 0.5 and "OverflowError" in res[0].details["error"]
    scorer.config.on_failure = "raise"
    with pytest.raises(ScorerError, match="openai_moderation: OverflowError: math range error"):
        run(scorer.score(items("a")))


def test_url_credentials_and_echoed_keys_never_reach_a_message(server, monkeypatch):
    monkeypatch.setenv("TEST_OPENAI_KEY", "sk-live-abcdef123456")
    with_key = {
        "backend": "openai_moderation",
        "url": server.url + "/v1",
        "api_key_env": "TEST_OPENAI_KEY",
        "max_retries": 0,
        **FAST,
    }
    with_password = {
        **with_key,
        "url": server.url.replace("http://", "http://user:hunter2pass@") + "/v1",
        "api_key_env": None,
    }
    for cfg, secret in ((with_key, "sk-live-abcdef123456"), (with_password, "hunter2pass")):
        for fault in ({"error": f"bad credentials {secret}"}, "500"):  # a 200 without results: the body is quoted
            server.script = [fault]
            with pytest.raises(ScorerError) as err:
                run(build_scorer(cfg).score(items("x")))
            assert secret not in str(err.value) and "/v1/moderations" in str(err.value)
    assert "***@127.0.0.1" in str(err.value)
    echo = {"error": "bad key sk-live-abcdef123456"}
    server.script = [echo]
    fallback = build_scorer({**with_key, "on_failure": "fallback", "fallback_score": 0.0})
    assert "sk-live" not in run(fallback.score(items("x")))[0].details["error"]
    assert redact_url("https://u:p@h/v1?api-version=1&key=k") == "https://***@h/v1?api-version=1&key=***"


def test_guard_controversial_score_outside_0_1_is_a_config_error():
    from tars_verl.scorers import ScorerConfigError

    with pytest.raises(ScorerConfigError, match=r"guard_chat.controversial_score must be in \[0, 1\], got 1.5"):
        build_scorer({"backend": "guard_chat", "url": "http://127.0.0.1:1/v1", "controversial_score": 1.5})
