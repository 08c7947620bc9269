"""Every HTTP back end is built on one base (tars_verl/scorers/http_scorer.py) and behaves the same where the
base decides: retries, the API key from the environment, timeouts, the start-up check, closing, the fan-out.

Each test runs once per HTTP back end against a real server on 127.0.0.1 (``fake_servers``), so a back end that
re-implements one of these (and drifts) fails here under its own name.
"""

import socket

import pytest
from conftest import FAST, run
from test_evaluate_on_cpu import write_classifier_prompts
from test_xstest_on_cpu import STAND_IN_SOURCE

import tars_verl.eval.judge  # noqa: F401 - registers the evaluation's judges (harmbench_classifier, xstest_judge)
from tars_verl.scorers import SCORERS, ScoreItem, ScorerConfigError, ScorerError, build_scorer
from tars_verl.scorers.http_client import HttpScorerConfig
from tars_verl.scorers.http_scorer import HttpScorer
from tars_verl.testing.fake_servers import write_strongreject_fixture

KEY_ENV = "TARS_TEST_HTTP_BASE_KEY"


def config(backend, url, tiny_dir, tmp_path):
    """A config for ``backend`` against the fake server at ``url`` (no /v1), without an API key."""
    cfg = {"backend": backend, "url": url + "/v1", "api_key_env": None, **FAST}
    if backend == "served_reward_model":  # vLLM's /classify and /health sit at the root
        cfg.update(url=url, model="grm", tokenizer_path=f"{tiny_dir}/reward_model")
    if backend == "strongreject":
        cfg["templates"] = write_strongreject_fixture(str(tmp_path / "judge_templates.json"))
    if backend == "harmbench_classifier":
        cfg.update(prompts=str(write_classifier_prompts(tmp_path / "cls.json")), tokenizer=f"{tiny_dir}/policy")
    if backend == "xstest_judge":  # the fake server's chat reply names no XSTest class: counted as unjudged
        (tmp_path / "classify_completions_gpt.py").write_text(STAND_IN_SOURCE)
        cfg.update(prompt=str(tmp_path / "classify_completions_gpt.py"), unjudged="count")
    return cfg


# One request (one item) each; the route is what the fake server is asked.
BACKENDS = {
    "openai_moderation": "/v1/moderations",
    "guard_chat": "/v1/chat/completions",
    "llm_judge": "/v1/chat/completions",
    "strongreject": "/v1/chat/completions",
    "served_reward_model": "/classify",
    "harmbench_classifier": "/v1/completions",
    "xstest_judge": "/v1/chat/completions",
}
ONE_REQUEST_PER_BATCH = {"openai_moderation", "served_reward_model"}
ITEMS = [ScoreItem(prompt="How do I do it?", text="a fine answer", messages=[{"role": "user", "content": "q"}])]


def score(scorer, items=ITEMS):
    """``scorer.score(items)``, then its connections closed in the same event loop."""

    async def go():
        try:
            return await scorer.score(items)
        finally:
            await scorer.aclose()

    return run(go())


@pytest.fixture(params=sorted(BACKENDS))
def backend(request):
    return request.param


@pytest.fixture
def make(backend, server, tiny_dir, tmp_path):
    def build(**kw):
        return build_scorer({**config(backend, server.url, tiny_dir, tmp_path), **kw})

    return build


def test_every_http_backend_is_built_on_the_base_and_tested_here():
    http_backends = {name for name, cls in SCORERS.items() if issubclass(cls.Config, HttpScorerConfig)}
    assert http_backends == set(BACKENDS), "a new HTTP back end: add it to BACKENDS above"
    for name in http_backends:
        assert issubclass(SCORERS[name], HttpScorer), name
        assert SCORERS[name].aclose is HttpScorer.aclose, f"{name} closes its endpoint its own way"


def test_429_then_200_is_retried_to_the_same_score(backend, make, server):
    clean = score(make())
    server.requests.clear()
    server.script = ["429", "ok"]
    retried = score(make())
    assert [r.score for r in retried] == [r.score for r in clean]
    assert [p for p, _ in server.requests] == [BACKENDS[backend]] * 2  # the same request, sent twice


def test_500s_until_max_retries_fail_naming_endpoint_status_and_attempts(backend, make, server):
    server.script = ["500"] * 10
    with pytest.raises(ScorerError) as err:
        score(make(max_retries=1))
    msg = str(err.value)
    assert f"POST {server.url}{BACKENDS[backend]} failed after 2 attempts" in msg and "HTTP 500" in msg
    assert len(server.requests) == 2


def test_api_key_comes_from_the_named_env_variable_and_is_sent(backend, make, server, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(ScorerConfigError, match=f"{backend}: environment variable {KEY_ENV} is not set"):
        make(api_key_env=KEY_ENV)
    monkeypatch.setenv(KEY_ENV, "sk-base-test-123")
    score(make(api_key_env=KEY_ENV))
    assert server.auth_headers == ["Bearer sk-base-test-123"]
    server.auth_headers.clear()
    score(make())  # api_key_env=null: no Authorization header at all
    assert server.auth_headers == [None]


def test_a_reply_slower_than_timeout_s_is_a_timeout_naming_the_endpoint(backend, make, server):
    server.latency_s = 0.5
    with pytest.raises(ScorerError, match=f"{server.url}{BACKENDS[backend]} failed after 1 attempts.*TimeoutError"):
        score(make(timeout_s=0.05, max_retries=0))


def test_check_ready_asks_the_server_and_names_a_dead_one(backend, make, server, tiny_dir, tmp_path):
    before = server.connections
    make().check_ready()
    assert server.connections > before  # a real GET of health_path
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    dead = build_scorer({**config(backend, f"http://127.0.0.1:{port}", tiny_dir, tmp_path), "max_retries": 0})
    with pytest.raises(ScorerError, match=f"{backend}: start-up check of http://127.0.0.1:{port}.* failed"):
        dead.check_ready()


def test_aclose_closes_the_pooled_connections_of_this_event_loop(make):
    scorer = make()

    async def score_then_close():
        await scorer.score(ITEMS)
        ((session, _sem),) = scorer.endpoint._per_loop.values()
        await scorer.aclose()
        return session

    assert run(score_then_close()).closed and not scorer.endpoint._per_loop


def test_a_reply_of_the_wrong_shape_is_an_error_naming_the_endpoint(backend, make, server):
    server.script = [{"unexpected": "shape"}]
    with pytest.raises(ScorerError, match=f"^{server.url}{BACKENDS[backend]}"):
        score(make())


def test_fan_out_and_max_concurrency(backend, make, server):
    server.latency_s = 0.05
    res = score(make(max_concurrency=2), ITEMS * 6)
    assert len(res) == 6 and len({r.score for r in res}) == 1
    # Chat back ends send one request per item, the batch APIs one per batch; at most 2 connections either way.
    assert len(server.requests) == (1 if backend in ONE_REQUEST_PER_BATCH else 6)
    assert server.connections <= 2
