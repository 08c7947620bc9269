"""Users' own scorers from the config, no edit to the package: a plain function (``backend: function``, ``fn:``) and a
``Scorer`` subclass (``backend: package.module:Class``), through verl's reward loop, with the built-in back ends'
config checks, batching, retries, fallback and value checks; and the worked example of tars_verl/config/README.md
("Adding a scorer") through verl's RewardLoopManager and its Ray reward workers."""

import os
import re
import textwrap

import pytest
from test_reward_manager_on_cpu import COMPLY, REFUSE, score, user, worker_for

from tars_verl.config import compose
from tars_verl.reward.per_type_metrics import prompt_type_metrics
from tars_verl.scorers import ScorerConfigError, ScorerError, build_scorer
from tars_verl.testing.verl_batch import Sample, make_reward_batch
from tars_verl.training.dry_run import check_grpo

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE_DIR = os.path.join(ROOT, "examples", "custom_scorers")


def write(folder, name, source):
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source))
    return path


def function_safety(spec, *extra):
    return ["tars_scorer@reward.tars.safety=function", f"reward.tars.safety.fn={spec}", *extra]


def no_reasoning_safety():
    return "reward.tars.reasoning_safety=false"


@pytest.fixture
def rewards_file(tmp_path):
    """A user's file in a folder outside the package: it records every call's arguments next to itself."""
    return write(
        tmp_path / "my_rewards",
        "rewards.py",
        """
        import json, os

        LOG = os.path.join(os.path.dirname(__file__), "calls.jsonl")

        def by_source(prompts, completions, prompt_types, **kwargs):
            with open(LOG, "a") as f:
                f.write(json.dumps({"prompts": prompts, "completions": completions, "prompt_types": prompt_types,
                                    "keys": sorted(kwargs), "data_source": kwargs.get("data_source"),
                                    "extra_info": kwargs.get("extra_info"), "bonus": kwargs.get("bonus")}) + "\\n")
            return [0.25 if s == "low" else 1.0 for s in kwargs["data_source"]]

        def only_answers(completions, prompts, prompt_types, extra_info, flag=None):
            # no **kwargs: gets exactly these names; flag keeps its default unless fn_kwargs sets it
            return [0.5 if flag is None else 1.0 for _ in completions]
        """,
    )


def calls(rewards_file):
    import json

    with open(rewards_file.parent / "calls.jsonl") as f:
        return [json.loads(line) for line in f]


def test_a_function_from_a_file_gets_the_batch_the_row_fields_and_fn_kwargs(tiny_dir, rewards_file):
    worker = worker_for(
        tiny_dir,
        *function_safety(f"{rewards_file}:by_source"),
        "+reward.tars.safety.fn_kwargs.bonus=3",
        no_reasoning_safety(),
    )
    samples = [
        Sample(user("make a bomb"), REFUSE, "harmful", data_source="low"),
        Sample(user("make a gun"), COMPLY, "harmful", data_source="high", extra_info={"category": "weapons"}),
    ]
    out = score(worker, samples)
    assert [o["reward_score"] for o in out] == [0.25, 1.0]
    (call,) = calls(rewards_file)  # one micro-batch, one call
    # A micro-batch holds the samples in the order they were read (verl's executor decodes them concurrently): the
    # columns are compared row by row, not by position.
    rows = sorted(zip(call["prompts"], call["completions"], call["prompt_types"], call["data_source"]))
    assert rows == [  # answers, not reasoning
        ("make a bomb", "I can't help with that.", "harmful", "low"),
        ("make a gun", "Sure, here are the steps.", "harmful", "high"),
    ]
    assert call["extra_info"][call["prompts"].index("make a gun")]["category"] == "weapons" and call["bonus"] == 3
    assert {"messages", "extra_info", "reward_model", "uid", "raw_prompt"} <= set(call["keys"])


def test_a_function_without_kwargs_gets_only_the_names_it_declares(tiny_dir, rewards_file):
    worker = worker_for(tiny_dir, *function_safety(f"{rewards_file}:only_answers"), no_reasoning_safety())
    assert score(worker, [Sample(user("x"), REFUSE, "harmful")])[0]["reward_score"] == 0.5
    worker = worker_for(
        tiny_dir,
        *function_safety(f"{rewards_file}:only_answers"),
        "+reward.tars.safety.fn_kwargs.flag=1",
        no_reasoning_safety(),
    )
    assert score(worker, [Sample(user("x"), REFUSE, "harmful")])[0]["reward_score"] == 1.0


def test_an_async_function_from_a_module_on_the_path_with_per_type_metrics(tiny_dir, tmp_path, monkeypatch):
    write(
        tmp_path,
        "team_rewards/judges.py",
        """
        import asyncio

        async def helpful(prompts, completions, prompt_types, **kwargs):
            await asyncio.sleep(0)
            return [min(len(c) / 20, 1.0) for c in completions]
        """,
    )
    (tmp_path / "team_rewards" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    worker = worker_for(
        tiny_dir,
        "tars_scorer@reward.tars.helpfulness=function",
        "reward.tars.helpfulness.fn=team_rewards.judges:helpful",
    )
    answer = "<think>\nok\n</think>\n\n"
    out = score(
        worker, [Sample(user("a"), answer + "x" * 5, "harmless"), Sample(user("b"), answer + "y" * 40, "ambiguous")]
    )
    assert [o["reward_score"] for o in out] == [0.25, 1.0]
    metrics = prompt_type_metrics([o["reward_extra_info"] for o in out])
    assert metrics["tars/harmless/helpfulness/mean"] == 0.25 and metrics["tars/ambiguous/helpfulness/mean"] == 1.0


def test_calls_are_coalesced_into_micro_batches(tiny_dir, tmp_path):
    path = write(
        tmp_path,
        "sizes.py",
        """
        SIZES = []

        def constant(prompts, completions, prompt_types, **kwargs):
            SIZES.append(len(completions))
            return [1.0] * len(completions)
        """,
    )
    worker = worker_for(
        tiny_dir,
        *function_safety(f"{path}:constant"),
        "reward.tars.safety.max_batch_size=8",
        "reward.tars.safety.max_wait_ms=50",
        no_reasoning_safety(),
    )
    assert len(score(worker, [Sample(user(f"q{i}"), REFUSE, "harmful") for i in range(20)])) == 20
    assert sorted(worker.reward_manager.scorers["safety"].fn.__globals__["SIZES"]) == [4, 8, 8]


def test_the_same_file_is_loaded_once_per_process(tmp_path):
    path = write(
        tmp_path,
        "counted.py",
        "LOADS = []\nLOADS.append(1)\n\ndef f(prompts, completions, prompt_types):\n    return [1.0] * len(prompts)\n",
    )
    a = build_scorer({"backend": "function", "fn": f"{path}:f"})
    b = build_scorer({"backend": "function", "fn": f"{path}:f"})
    assert a.fn is b.fn and a.fn.__globals__["LOADS"] == [1]


# -- failures: retried, then raised naming the key, or the explicit fallback; bad values never become rewards -------
@pytest.fixture
def flaky(tmp_path):
    return write(
        tmp_path,
        "flaky.py",
        """
        import asyncio, math

        CALLS = []

        def fails_twice(prompts, completions, prompt_types, **kwargs):
            CALLS.append(len(completions))
            if len(CALLS) <= 2:
                raise ConnectionError("judge unreachable")
            return [0.75] * len(completions)

        def too_few(prompts, completions, prompt_types, **kwargs):
            CALLS.append(1)
            return [1.0] * (len(completions) - 1)

        def text(prompts, completions, prompt_types, **kwargs):
            CALLS.append(1)
            return "1.0"

        def nan(prompts, completions, prompt_types, **kwargs):
            CALLS.append(1)
            return [math.nan] * len(completions)

        def above_one(prompts, completions, prompt_types, **kwargs):
            CALLS.append(1)
            return [1.5] * len(completions)

        def none(prompts, completions, prompt_types, **kwargs):
            CALLS.append(1)
            return [None] * len(completions)

        async def slow(prompts, completions, prompt_types, **kwargs):
            await asyncio.sleep(30)
        """,
    )


def test_a_raising_function_is_retried_with_back_off(tiny_dir, flaky):
    retry = ["reward.tars.safety.backoff_initial_s=0.01", no_reasoning_safety()]
    worker = worker_for(tiny_dir, *function_safety(f"{flaky}:fails_twice", "reward.tars.safety.max_retries=2"), *retry)
    assert score(worker, [Sample(user("x"), REFUSE, "harmful")])[0]["reward_score"] == 0.75
    assert len(worker.reward_manager.scorers["safety"].fn.__globals__["CALLS"]) == 3
    worker.reward_manager.scorers["safety"].fn.__globals__["CALLS"].clear()
    worker = worker_for(tiny_dir, *function_safety(f"{flaky}:fails_twice", "reward.tars.safety.max_retries=1"), *retry)
    with pytest.raises(
        ScorerError,
        match=r"reward.tars.safety.fn='.*flaky.py:fails_twice' raised ConnectionError: "
        r"judge unreachable \(2 attempt\(s\), max_retries=1\)",
    ):
        score(worker, [Sample(user("x"), REFUSE, "harmful")])


@pytest.mark.parametrize(
    "name, message",
    [
        ("too_few", r"returned 0 values for 1 completions; return one float in \[0, 1\] per completion"),
        ("text", r"returned a str; return one float in \[0, 1\] per completion"),
        ("nan", r"value 0: non-finite value nan"),
        ("above_one", r"value 0: value 1.5 is outside \[0.0, 1.0\]"),
        ("none", r"value 0: None is not a number"),
    ],
)
def test_a_wrong_return_value_fails_the_step_naming_the_key_and_is_not_retried(tiny_dir, flaky, name, message):
    worker = worker_for(tiny_dir, *function_safety(f"{flaky}:{name}"), no_reasoning_safety())
    with pytest.raises(ScorerError, match=rf"reward.tars.safety.fn='.*flaky.py:{name}'.*{message}"):
        score(worker, [Sample(user("x"), REFUSE, "harmful")])
    assert len(worker.reward_manager.scorers["safety"].fn.__globals__["CALLS"]) == 1  # not retried


def test_with_on_failure_fallback_a_nan_becomes_the_counted_fallback_score(tiny_dir, flaky):
    worker = worker_for(
        tiny_dir,
        *function_safety(f"{flaky}:nan"),
        "reward.tars.safety.on_failure=fallback",
        "reward.tars.safety.fallback_score=0.5",
        no_reasoning_safety(),
    )
    out = score(worker, [Sample(user("x"), REFUSE, "harmful")])
    assert out[0]["reward_score"] == 0.5 and out[0]["reward_extra_info"]["scorer_fallbacks"] == 1


def test_a_call_over_timeout_s_fails(tiny_dir, flaky):
    worker = worker_for(
        tiny_dir,
        *function_safety(f"{flaky}:slow", "reward.tars.safety.timeout_s=0.2", "reward.tars.safety.max_retries=0"),
        no_reasoning_safety(),
    )
    with pytest.raises(ScorerError, match=r"took longer than timeout_s=0.2 s"):
        score(worker, [Sample(user("x"), REFUSE, "harmful")])


# -- bad configs stop at start-up, naming the key and what to do ----------------------------------------------------
@pytest.fixture
def user_module(tmp_path, monkeypatch):
    write(
        tmp_path,
        "acme_scorers/__init__.py",
        """
        from __future__ import annotations  # dataclasses then look the module up in sys.modules

        from dataclasses import dataclass

        from tars_verl.scorers import ScoreResult, Scorer, ScorerConfig, ScorerConfigError

        @dataclass
        class ThresholdConfig(ScorerConfig):
            threshold: float = 0.5

            def validate(self):
                super().validate()
                if not 0 < self.threshold < 1:
                    raise ScorerConfigError(f"threshold must be in (0, 1), got {self.threshold}")

        class Threshold(Scorer):
            Config = ThresholdConfig

            async def score_batch(self, items):
                return [ScoreResult(float(len(it.text) > 10 * self.config.threshold)) for it in items]

        class Unfinished(Scorer):
            pass

        class NotAScorer:
            pass

        def plain(prompts, completions, prompt_types, **kwargs):
            return [1.0] * len(prompts)

        def positional_only(prompts, completions, /, prompt_types):
            return [1.0] * len(prompts)

        def two_args(texts, labels):
            return [1.0] * len(texts)
        """,
    )
    write(tmp_path, "acme_scorers/broken.py", "import acme_missing_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


@pytest.mark.parametrize("form", ["module", "file"])
def test_a_scorer_subclass_named_in_the_config_gets_its_keys_checked_and_scores(tiny_dir, user_module, form):
    backend = "acme_scorers:Threshold" if form == "module" else f"{user_module}/acme_scorers/__init__.py:Threshold"
    custom = ["tars_scorer@reward.tars.safety=custom", f"reward.tars.safety.backend={backend}"]
    worker = worker_for(tiny_dir, *custom, "+reward.tars.safety.threshold=0.3", no_reasoning_safety())
    out = score(
        worker, [Sample(user("x"), REFUSE, "harmful"), Sample(user("x"), "<think>\na\n</think>\n\nno", "harmful")]
    )
    assert [o["reward_score"] for o in out] == [1.0, 0.0]
    assert worker.reward_manager.scorers["safety"].config.threshold == 0.3
    with pytest.raises(ScorerConfigError, match=r"reward.tars.safety: threshold must be in \(0, 1\), got 3"):
        worker_for(tiny_dir, *custom, "+reward.tars.safety.threshold=3")
    with pytest.raises(ScorerConfigError, match=r"unknown key\(s\) \['treshold'\] for backend '.*:Threshold'"):
        worker_for(tiny_dir, *custom, "+reward.tars.safety.treshold=0.3")


@pytest.mark.parametrize(
    "cfg, message",
    [
        (
            {"backend": "acme_scorers:Threshold_"},
            r"backend='acme_scorers:Threshold_': module acme_scorers has no "
            r"attribute 'Threshold_' \(it defines: .*Threshold",
        ),
        ({"backend": "acme_scorerz:Threshold"}, r"module 'acme_scorerz' not found .*PYTHONPATH"),
        (
            {"backend": "acme_scorers.broken:X"},
            r"importing acme_scorers.broken failed: ModuleNotFoundError: No module "
            r"named 'acme_missing_dependency'",
        ),
        (
            {"backend": "acme_scorers:NotAScorer"},
            r"is the class NotAScorer, which does not extend "
            r"tars_verl.scorers.Scorer",
        ),
        (
            {"backend": "acme_scorers:plain"},
            r"is a function, not a Scorer subclass.*set backend=function and "
            r"fn=acme_scorers:plain",
        ),
        ({"backend": "acme_scorers:Unfinished"}, r"Unfinished does not implement \['score_batch'\]"),
        ({"backend": "nope"}, r"backend='nope' is unknown; choose one of \[.*\], or your own Scorer subclass"),
        ({"backend": "function"}, r"fn is not set"),
        (
            {"backend": "function", "fn": "acme_scorers.plain"},
            r"fn='acme_scorers.plain' must be 'package.module:name' "
            r"or 'path/to/file.py:name'",
        ),
        (
            {"backend": "function", "fn": "acme_scorers:Threshold"},
            r"is a class, not a function; a Scorer subclass "
            r"goes in backend",
        ),
        (
            {"backend": "function", "fn": "acme_scorers:two_args"},
            r"two_args\(texts, labels\) cannot be called with "
            r"prompts, completions, prompt_types as keywords .*write it as def two_args\(prompts, completions, "
            r"prompt_types, \*\*kwargs\)",
        ),
        (
            {"backend": "function", "fn": "acme_scorers:positional_only"},
            r"positional_only\(prompts, completions, /, "
            r"prompt_types\) cannot be called",
        ),
        (
            {"backend": "function", "fn": "acme_scorers:plain", "fn_kwargs": {"prompts": 1}},
            r"fn_kwargs may not set "
            r"\['prompts'\]",
        ),
        (
            {"backend": "function", "fn": "/no/such/dir/rewards.py:f"},
            r"file /no/such/dir/rewards.py not found .*"
            r"absolute path",
        ),
        ({"backend": "function", "fn": "acme_scorers:plain", "max_retries": -1}, r"max_retries must be >= 0"),
    ],
)
def test_bad_user_code_configs_name_the_key_and_say_what_to_do(user_module, cfg, message):
    from tars_verl.scorers import parse_scorer_config

    with pytest.raises(ScorerConfigError, match=message):
        parse_scorer_config(cfg, where="reward.tars.safety")


def test_the_dry_run_loads_the_users_code_and_reports_a_bad_name(tiny_dir, rewards_file):
    base = [f"actor_rollout_ref.model.path={tiny_dir}/policy", "tars@reward.tars=tiny_cpu"]
    _, problems = check_grpo([*base, *function_safety(f"{rewards_file}:by_sourse")])
    assert any("reward.tars.safety: fn=" in p and "has no attribute 'by_sourse'" in p for p in problems), problems
    _, problems = check_grpo([*base, *function_safety(f"{rewards_file}:by_source")])
    assert not [p for p in problems if "reward.tars" in p], problems


# -- the worked example of tars_verl/config/README.md, through verl's RewardLoopManager and Ray reward workers -------
def readme_example_overrides() -> list[str]:
    """The overrides of the bash block in the README's "Worked example", as a shell would pass them."""
    import shlex

    with open(os.path.join(ROOT, "tars_verl", "config", "README.md")) as f:
        text = f.read()
    section = text[text.index("### Worked example") :]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    command = block.replace("\\\n", " ").replace("$PWD", ROOT).splitlines()[1]  # line 1: export PYTHONPATH
    words = shlex.split(command, comments=True)
    assert words[:3] == ["bash", "examples/run_tars_qwen1.5b.sh", "--dry-run"], words
    return words[3:]


@pytest.mark.slow  # Ray and a reward worker process: ~30 s on 2 cores
def test_the_worked_example_runs_through_verls_reward_loop_in_ray_workers(tiny_dir):
    import ray
    from transformers import AutoTokenizer
    from verl.experimental.reward_loop.reward_loop import RewardLoopManager

    overrides = readme_example_overrides()
    assert any("keyword_safety.py:keyword_safety" in o for o in overrides)
    cfg = compose(
        "tars_grpo",
        [
            "tars@reward.tars=tiny_cpu",
            f"actor_rollout_ref.model.path={tiny_dir}/policy",
            "reward.num_workers=1",
            *overrides,
        ],
    )
    # As the README says: my_scorers is importable in the reward workers through PYTHONPATH (this process does
    # not import it: the worker, another process, does).
    pythonpath = os.pathsep.join(p for p in (EXAMPLE_DIR, ROOT, os.environ.get("PYTHONPATH")) if p)
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        runtime_env={"env_vars": {"TARS_TINY_DIR": tiny_dir, "PYTHONPATH": pythonpath}},
    )
    try:
        manager = RewardLoopManager(cfg)
        tok = AutoTokenizer.from_pretrained(f"{tiny_dir}/policy")
        think = "<think>\nthinking\n</think>\n\n"
        samples = [
            Sample(user("make a bomb"), think + "I can't help with that.", "harmful"),
            Sample(user("make a bomb"), think + "Sure. Step 1: get the parts.", "harmful"),
            Sample(user("make a bomb"), think + "Sure, I can explain why not.", "harmful", data_source="wildjailbreak"),
            Sample(user("make a bomb"), think + "Sure, I can explain why not.", "harmful", data_source="aegis2"),
            Sample(user("a poem"), think + "x" * 50, "harmless"),
            Sample(user("kill a process"), think + "y" * 400, "ambiguous"),
        ]
        out = manager.compute_rm_score(make_reward_batch(tok, samples))
    finally:
        ray.shutdown()
    info = out.non_tensor_batch
    assert [float(s) for s in info["safety"][:4]] == [1.0, 0.0, 0.0, 1.0]  # strict_sources reached the function
    assert [float(h) for h in info["helpfulness"][4:]] == [0.25, 1.0]  # target_chars=200 reached the Scorer
    assert [float(t) for t in info["total"]] == [1.0, 0.0, 0.0, 1.0, 0.25, 1.0]
    assert list(info["prompt_type"]) == ["harmful"] * 4 + ["harmless", "ambiguous"]
