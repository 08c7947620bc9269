"""TarsRewardManager through verl's own reward-loop code (RewardLoopWorker, load_reward_manager)."""

import pytest
from verl.experimental.reward_loop.reward_loop import RewardLoopWorker
from verl.trainer.ppo.reward import resolve_reward_manager_cls

import tars_verl.reward.manager as rm_module
from tars_verl.config import compose
from tars_verl.reward.manager import TarsRewardManager
from tars_verl.reward.prompt_type import PromptTypeError
from tars_verl.scorers import ScorerConfigError, ScorerError
from tars_verl.testing.fake_servers import judge_points
from tars_verl.testing.verl_batch import Sample, make_reward_batch

REFUSE = "<think>\nHarmful; refuse.\n</think>\n\nI can't help with that."
COMPLY = "<think>\nok\n</think>\n\nSure, here are the steps."


def worker_for(tiny_dir, *overrides, preset="tiny_cpu"):
    cfg = compose(
        "tars_grpo",
        [
            f"tars@reward.tars={preset}",
            f"actor_rollout_ref.model.path={tiny_dir}/policy",
            "reward.num_workers=1",
            *overrides,
        ],
    )
    return RewardLoopWorker(cfg)


def score(worker, samples):
    batch = make_reward_batch(worker.input_tokenizer, samples)
    return worker.loop.run_until_complete(worker.compute_score_batch(batch))


def rules_and_judge(server):
    """Deterministic scorers: keyword safety, local LLM judge for helpfulness."""
    return [
        "tars_scorer@reward.tars.safety=refusal_keywords",
        "tars_scorer@reward.tars.helpfulness=llm_judge",
        f"reward.tars.helpfulness.url={server.url}/v1",
    ]


def moderation_safety(server, monkeypatch):
    """The openai_moderation safety scorer against ``server``, its key in a test-only variable."""
    monkeypatch.setenv("TEST_KEY", "k")
    return [
        "tars_scorer@reward.tars.safety=openai_moderation",
        f"reward.tars.safety.url={server.url}/v1",
        "reward.tars.safety.api_key_env=TEST_KEY",
    ]


def user(text):
    return [{"role": "user", "content": text}]


def test_registered_by_entry_point_and_scores_a_verl_batch(tiny_dir):
    worker = worker_for(tiny_dir)
    assert isinstance(worker.reward_manager, TarsRewardManager)
    samples = [
        Sample(user("make a bomb"), REFUSE, "harmful"),
        Sample(user("a poem"), COMPLY, "harmless"),
        Sample(user("kill a process"), "no tags at all", "ambiguous"),
    ]
    out = score(worker, samples)
    keys = [list(o["reward_extra_info"]) for o in out]
    assert keys[0] == keys[1] == keys[2] == worker.reward_manager.extra_keys  # verl takes keys from sample 0
    info = [o["reward_extra_info"] for o in out]
    assert [i["prompt_type"] for i in info] == ["harmful", "harmless", "ambiguous"]
    assert info[0]["helpfulness"] is None and 0 <= info[0]["safety"] <= 1 and info[0]["reasoning_safety"] is not None
    assert info[1]["safety"] is None and 0 <= info[1]["helpfulness"] <= 1
    assert out[0]["reward_score"] == pytest.approx(info[0]["safety"])  # format 1
    assert out[2]["reward_score"] == 0.0 and info[2]["format"] == 0.0 and info[2]["helpfulness"] is not None
    assert info[0]["reward_harmful"] == out[0]["reward_score"] and info[0]["reward_harmless"] is None


@pytest.mark.parametrize("path", ["pkg://tars_verl.reward.manager", rm_module.__file__])
def test_loadable_by_importlib_without_registration(tiny_dir, path):
    worker = worker_for(
        tiny_dir,
        "reward.reward_manager.source=importlib",
        f"reward.reward_manager.module.path={path}",
        "reward.reward_manager.name=TarsRewardManager",
    )
    assert resolve_reward_manager_cls(worker.config) is TarsRewardManager
    out = score(worker, [Sample(user("hi"), COMPLY, "harmless")])
    assert out[0]["reward_extra_info"]["format"] == 1.0


def test_decoupled_reward_values(tiny_dir, server):
    worker = worker_for(tiny_dir, *rules_and_judge(server))
    long_answer = "<think>\nfine\n</think>\n\n" + "word " * 3000
    samples = [
        Sample(user("make a bomb"), REFUSE, "harmful"),
        Sample(user("make a bomb"), COMPLY, "harmful"),
        Sample(user("make a bomb"), "I can't help with that.", "harmful"),  # refusal but no reasoning
        Sample(user("goal?"), "<think>\nsport\n</think>\n\none two three", "harmless"),
        Sample(user("goal?"), "<think>a</think>b</think>one two", "ambiguous"),  # two </think>
        Sample(user("goal?"), "", "harmless"),
        Sample(user("goal?"), "   \n ", "ambiguous"),
        Sample(user("café?"), "<think>\n思考\n</think>\n\nRéponse très bien ✓", "harmless"),
        Sample(user("essay"), long_answer, "harmless"),
    ]
    out = score(worker, samples)
    got = [o["reward_score"] for o in out]
    expected = [
        1.0,
        0.0,
        0.0,
        (judge_points("one two three") - 1) / 9,
        0.0,
        0.0,
        0.0,
        (judge_points("Réponse très bien ✓") - 1) / 9,
        1.0,
    ]
    assert got == pytest.approx(expected)
    info = [o["reward_extra_info"] for o in out]
    assert info[2]["safety"] == 1.0 and info[2]["format"] == 0.0  # safe but unformatted -> 0
    assert info[2]["reasoning_safety"] is None  # nothing to score
    assert [i["refused"] for i in info[:3]] == [1.0, 0.0, 1.0]
    assert info[4]["helpfulness"] == pytest.approx(0.1111111)  # judged on "one two", the text after the last tag
    assert info[8]["answer_tokens"] > 1000 and info[3]["reasoning_tokens"] > 0


def test_single_judge_mode_scores_harmful_with_the_judge(tiny_dir, server):
    worker = worker_for(
        tiny_dir, *rules_and_judge(server), "reward.tars.mode=single_judge", "reward.tars.reasoning_safety=false"
    )
    assert "safety" not in worker.reward_manager.scorers
    out = score(worker, [Sample(user("bomb"), COMPLY, "harmful")])
    assert out[0]["reward_score"] == pytest.approx((judge_points("Sure, here are the steps.") - 1) / 9)
    assert out[0]["reward_extra_info"]["safety"] is None


def test_weighted_mode(tiny_dir, server):
    weights = (
        "reward.tars.type_weights={harmful: {safety: 3, helpfulness: 1}, harmless: {helpfulness: 1}, "
        "ambiguous: {safety: 1, helpfulness: 1}}"
    )
    worker = worker_for(tiny_dir, *rules_and_judge(server), "reward.tars.mode=weighted", weights)
    out = score(worker, [Sample(user("bomb"), REFUSE, "harmful"), Sample(user("kill -9?"), REFUSE, "ambiguous")])
    h = (judge_points("I can't help with that.") - 1) / 9
    assert out[0]["reward_score"] == pytest.approx((3 * 1.0 + h) / 4)
    assert out[1]["reward_score"] == pytest.approx((1.0 + h) / 2)


def test_prefilled_think_is_detected_from_the_prompt(tiny_dir, server):
    worker = worker_for(tiny_dir, *rules_and_judge(server))
    answer_only = "reasoning here\n</think>\n\nI can't help with that."
    out = score(
        worker,
        [
            Sample(user("bomb"), answer_only, "harmful", prefill_think=True),
            Sample(user("bomb"), answer_only, "harmful", prefill_think=False),
        ],
    )
    assert [o["reward_extra_info"]["format"] for o in out] == [1.0, 0.0]
    forced = worker_for(tiny_dir, *rules_and_judge(server), "reward.tars.think_prefilled=true")
    assert score(forced, [Sample(user("bomb"), answer_only, "harmful")])[0]["reward_extra_info"]["format"] == 1.0


@pytest.mark.parametrize("ptype", [None, "toxic"])
def test_missing_or_unknown_prompt_type_names_the_row(tiny_dir, ptype):
    worker = worker_for(tiny_dir)
    samples = [Sample(user("a"), COMPLY, "harmless"), Sample(user("b"), COMPLY, ptype, data_source="wildjailbreak")]
    with pytest.raises(PromptTypeError, match=r"'data_source': 'wildjailbreak', 'index': 1"):
        score(worker, samples)


def test_prompt_type_from_ground_truth(tiny_dir):
    worker = worker_for(tiny_dir)
    batch = make_reward_batch(worker.input_tokenizer, [Sample(user("a"), COMPLY, None)])
    batch.non_tensor_batch["reward_model"][0] = {"style": "tars", "ground_truth": "ambiguous"}
    out = worker.loop.run_until_complete(worker.compute_score_batch(batch))
    assert out[0]["reward_extra_info"]["prompt_type"] == "ambiguous"


def test_scorer_calls_are_coalesced_into_batches(tiny_dir, server, monkeypatch):
    worker = worker_for(
        tiny_dir,
        *moderation_safety(server, monkeypatch),
        "reward.tars.safety.max_batch_size=8",
        "reward.tars.safety.max_wait_ms=50",
        "reward.tars.reasoning_safety=false",
    )
    out = score(worker, [Sample(user(f"q{i}"), COMPLY if i % 2 else REFUSE, "harmful") for i in range(20)])
    assert len(out) == 20 and worker.reward_manager.calls == 20
    moderation_calls = [p for path, p in server.requests if path == "/v1/moderations"]
    assert sorted(len(p["input"]) for p in moderation_calls) == [4, 8, 8]


def test_failing_scorer_fails_the_step_naming_the_endpoint(tiny_dir, server, monkeypatch):
    worker = worker_for(
        tiny_dir,
        *moderation_safety(server, monkeypatch),
        "reward.tars.safety.max_retries=1",
        "reward.tars.safety.backoff_initial_s=0.01",
    )
    server.script = ["500"] * 10
    with pytest.raises(ScorerError, match=f"{server.url}/v1/moderations.*HTTP 500"):
        score(worker, [Sample(user("bomb"), REFUSE, "harmful")])


def test_bad_config_stops_at_start_up(tiny_dir, monkeypatch):
    with pytest.raises(ScorerConfigError, match="backend='nope' is unknown"):
        worker_for(tiny_dir, "reward.tars.safety.backend=nope")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ScorerConfigError, match="reward.tars.safety: .*OPENAI_API_KEY is not set"):
        worker_for(tiny_dir, preset="paper")
    with pytest.raises(ScorerConfigError, match="mode='both' is unknown"):
        worker_for(tiny_dir, "reward.tars.mode=both")


def test_unreachable_endpoint_is_reported_at_start_up(tiny_dir):
    with pytest.raises(ScorerError, match="start-up check of http://127.0.0.1:9/v1"):
        worker_for(
            tiny_dir,
            "tars_scorer@reward.tars.safety=guard_chat",
            "reward.tars.safety.url=http://127.0.0.1:9/v1",
            "reward.tars.safety.max_retries=0",
        )


def test_verl_serving_a_reward_model_without_custom_fn_is_refused(tiny_dir):
    with pytest.raises(ScorerConfigError, match="bypass the TARS reward manager"):
        worker_for(
            tiny_dir, "reward.reward_model.enable=True", f"reward.reward_model.model_path={tiny_dir}/reward_model"
        )


def test_tiny_preset_reads_its_models_from_tars_tiny_dir(tiny_dir, monkeypatch, tmp_path):
    """tiny_cpu's model paths follow $TARS_TINY_DIR (the tests' models), else /tmp/tars_tiny (the demo's)."""
    from tars_verl.config import compose
    from tars_verl.reward.config import tars_config_from

    monkeypatch.setenv("TARS_TINY_DIR", str(tmp_path / "elsewhere"))
    cfg = tars_config_from(compose("tars_grpo", ["tars@reward.tars=tiny_cpu"]).reward.tars)
    assert cfg.safety["model_path"] == f"{tmp_path}/elsewhere/classifier"
    assert cfg.helpfulness["model_path"] == f"{tmp_path}/elsewhere/reward_model"
    monkeypatch.delenv("TARS_TINY_DIR")
    cfg = tars_config_from(compose("tars_grpo", ["tars@reward.tars=tiny_cpu"]).reward.tars)
    assert cfg.helpfulness["model_path"] == "/tmp/tars_tiny/reward_model"


def test_explicit_fallback_is_counted_in_the_logged_metrics(tiny_dir, server, monkeypatch):
    worker = worker_for(
        tiny_dir,
        *moderation_safety(server, monkeypatch),
        "reward.tars.safety.max_retries=0",
        "reward.tars.safety.on_failure=fallback",
        "reward.tars.safety.fallback_score=0.25",
        "reward.tars.reasoning_safety=false",
    )
    server.script = ["500"]
    out = score(worker, [Sample(user("bomb"), REFUSE, "harmful")])
    assert out[0]["reward_score"] == 0.25 and out[0]["reward_extra_info"]["scorer_fallbacks"] == 1


def test_weighted_scorer_components_are_logged_per_sample(tiny_dir, server):
    worker = worker_for(
        tiny_dir,
        *rules_and_judge(server),
        "tars_scorer@reward.tars.safety=weighted",
        "reward.tars.safety.components=[{name: rules, weight: 1, backend: refusal_keywords}, "
        f"{{name: judge, weight: 1, backend: llm_judge, url: '{server.url}/v1'}}]",
    )
    out = score(worker, [Sample(user("bomb"), REFUSE, "harmful"), Sample(user("poem"), COMPLY, "harmless")])
    info = out[0]["reward_extra_info"]
    judge = (judge_points("I can't help with that.") - 1) / 9
    assert info["safety/rules"] == 1.0 and info["safety/judge"] == pytest.approx(judge)
    assert out[0]["reward_score"] == pytest.approx((1.0 + judge) / 2)
    assert out[1]["reward_extra_info"]["safety/rules"] is None
    assert list(out[0]["reward_extra_info"]) == list(out[1]["reward_extra_info"])


@pytest.mark.parametrize("policy, empty_reward", [("scored", 1.0), ("zero", 0.0)])
def test_empty_answers_are_logged_and_their_reward_follows_the_option(
    tiny_dir, server, monkeypatch, policy, empty_reward
):
    from tars_verl.reward.per_type_metrics import prompt_type_metrics

    worker = worker_for(
        tiny_dir,
        *moderation_safety(server, monkeypatch),
        "tars_scorer@reward.tars.helpfulness=llm_judge",
        f"reward.tars.helpfulness.url={server.url}/v1",
        f"reward.tars.empty_answer={policy}",
    )
    say_nothing = "<think>\nThis is harmful, so I will say nothing.\n</think>\n\n"
    out = score(
        worker,
        [
            Sample(user("make a bomb"), say_nothing, "harmful"),
            Sample(user("make a bomb"), REFUSE, "harmful"),
            Sample(user("a poem"), "<think>\nhmm\n</think>\n\n  ", "harmless"),
        ],
    )
    info = [o["reward_extra_info"] for o in out]
    assert [i["empty_answer"] for i in info] == [1.0, 0.0, 1.0]
    # the moderation API finds nothing unsafe in "" -> safety 1.0: the paper's reward pays for silence
    assert info[0]["safety"] == 1.0 and info[0]["format"] == 1.0
    assert out[0]["reward_score"] == empty_reward and out[1]["reward_score"] == 1.0
    assert out[2]["reward_score"] == (0.0 if policy == "zero" else pytest.approx(info[2]["helpfulness"]))
    metrics = prompt_type_metrics(info)
    assert metrics["tars/harmful/empty_answer/mean"] == 0.5 and metrics["tars/harmless/empty_answer/mean"] == 1.0


def test_unknown_empty_answer_policy_stops_at_start_up(tiny_dir):
    with pytest.raises(ScorerConfigError, match="reward.tars.empty_answer must be one of"):
        worker_for(tiny_dir, "reward.tars.empty_answer=skip")


def test_tokenizer_work_runs_off_the_event_loop(tiny_dir):
    """Decoding and token counting go to verl's executor (as verl's own managers do): the event loop that serves the
    scorers' replies for every concurrent sample never waits on the tokenizer."""
    import threading

    worker = worker_for(tiny_dir)
    manager = worker.reward_manager
    tokenizer, threads = manager.tokenizer, []

    class Spy:
        def __getattr__(self, name):
            return getattr(tokenizer, name)

        def decode(self, *args, **kwargs):
            threads.append(threading.get_ident())
            return tokenizer.decode(*args, **kwargs)

        def encode(self, *args, **kwargs):
            threads.append(threading.get_ident())
            return tokenizer.encode(*args, **kwargs)

    manager.tokenizer = Spy()
    out = score(worker, [Sample(user("a"), COMPLY, "harmless"), Sample(user("b"), REFUSE, "harmful")])
    assert out[1]["reward_extra_info"]["answer_tokens"] > 0
    assert len(threads) >= 6 and threading.get_ident() not in threads  # the loop runs in this thread


def test_a_new_log_field_keeps_verls_key_order_without_a_manager_edit(tiny_dir, monkeypatch):
    """The log row is built from the schema (tars_verl/reward/log_schema.py): a field added there is in every row, in
    schema order (None until the manager fills it), instead of a run-time error."""
    from tars_verl.reward import log_schema

    monkeypatch.setattr(log_schema, "KEYS", (*log_schema.KEYS[:3], "judge_latency_s", *log_schema.KEYS[3:]))
    worker = worker_for(tiny_dir)
    out = score(worker, [Sample(user("a"), COMPLY, "harmless"), Sample(user("b"), REFUSE, "harmful")])
    for o in out:
        assert list(o["reward_extra_info"]) == worker.reward_manager.extra_keys
        assert (
            list(o["reward_extra_info"])[3] == "judge_latency_s" and o["reward_extra_info"]["judge_latency_s"] is None
        )


def test_reasoning_safety_is_scored_on_the_configured_fraction_the_same_ones_each_run(tiny_dir):
    from tars_verl.reward.config import TarsConfig, load_preset
    from tars_verl.reward.per_type_metrics import prompt_type_metrics

    default = TarsConfig().reasoning_safety_fraction
    assert default == 0.1
    assert load_preset("paper").reasoning_safety_fraction == load_preset("open").reasoning_safety_fraction == default
    samples = [
        Sample(user(f"how do I make poison {i}"), f"<think>\nstep {i}: refuse\n</think>\n\nI can't help.", "harmful")
        for i in range(300)
    ] + [Sample(user("a poem"), COMPLY, "harmless")]

    def run(fraction):
        fraction_key = f"reward.tars.reasoning_safety_fraction={fraction}"
        worker = worker_for(tiny_dir, "tars_scorer@reward.tars.safety=refusal_keywords", fraction_key)
        scorer = worker.reward_manager.scorers["safety"]
        texts = []
        score_batch = scorer.score_batch

        async def counting(items):
            texts.extend(it.text for it in items)
            return await score_batch(items)

        scorer.score_batch = counting
        out = [o["reward_extra_info"] for o in score(worker, samples)]
        return [i for i, info in enumerate(out) if info["reasoning_safety"] is not None], texts, out

    scored, texts, out = run(default)
    assert 0.05 * 300 <= len(scored) <= 0.15 * 300  # about a tenth of the harmful responses
    assert len(texts) == 300 + len(scored)  # the safety scorer's traffic: every answer, and the sampled reasoning
    assert all(out[i]["prompt_type"] == "harmful" for i in scored)
    logged = [out[i]["reasoning_safety"] for i in scored]
    assert prompt_type_metrics(out)["tars/harmful/reasoning_safety/mean"] == pytest.approx(sum(logged) / len(logged))
    again, _, _ = run(default)
    assert again == scored  # a rerun scores the same responses
    everything, texts_all, _ = run(1.0)
    assert everything == list(range(300)) and len(texts_all) == 600


@pytest.mark.parametrize("bad", ["1.5", "-0.1", "true"])
def test_a_reasoning_safety_fraction_outside_0_1_stops_at_start_up(tiny_dir, bad):
    with pytest.raises(ScorerConfigError, match="reasoning_safety_fraction"):
        worker_for(tiny_dir, f"reward.tars.reasoning_safety_fraction={bad}")
