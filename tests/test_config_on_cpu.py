"""Presets and per-backend YAMLs compose through Hydra and match the scorer dataclasses."""

import dataclasses
import os

import pytest
import yaml

import tars_verl.eval.harmbench  # noqa: F401  (registers harmbench_classifier: the list must not depend on test order)
import tars_verl.eval.xstest  # noqa: F401  (registers xstest_judge, xstest_strmatch)
from tars_verl.config import compose
from tars_verl.reward.config import PRESET_DIR, load_preset, tars_config_from
from tars_verl.scorers import SCORERS, ScorerConfigError

SCORER_DIR = os.path.join(os.path.dirname(PRESET_DIR), "tars_scorer")


@pytest.mark.parametrize("backend", sorted(SCORERS))
def test_backend_yaml_lists_every_key_with_the_dataclass_default(backend):
    with open(os.path.join(SCORER_DIR, f"{backend}.yaml")) as f:
        data = yaml.safe_load(f)
    fields = {f.name: f for f in dataclasses.fields(SCORERS[backend].Config)}
    assert set(data) == set(fields)
    for name, f in fields.items():
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        expected = backend if name == "backend" else default
        assert data[name] == expected, f"{backend}.{name}"


@pytest.mark.parametrize("preset", ["paper", "open", "tiny_cpu", "tiny_learn"])
def test_presets_compose_and_validate(preset, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-x")
    tars = tars_config_from(load_preset(preset))
    assert tars.mode == "decoupled"
    assert tars.safety["backend"] and tars.helpfulness["backend"]


def test_paper_preset_is_the_papers_reward(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-x")
    tars = tars_config_from(load_preset("paper"))
    assert tars.safety["backend"] == "openai_moderation" and tars.safety["tolerance_threshold"] == 0.9
    assert tars.helpfulness["model"] == "Ray2333/GRM-llama3-8B-distill" and tars.helpfulness["url"] == "verl"


def test_swapping_a_scorer_from_the_command_line_drops_the_old_backends_keys():
    cfg = compose(
        "tars_grpo",
        [
            "tars@reward.tars=tiny_cpu",
            "tars_scorer@reward.tars.safety=guard_chat",
            "reward.tars.safety.format=qwen3guard",
        ],
    )
    tars = tars_config_from(cfg.reward.tars)
    assert tars.safety["backend"] == "guard_chat" and tars.safety["format"] == "qwen3guard"
    assert "model_path" not in tars.safety
    assert cfg.reward.reward_manager.name == "tars"


def test_unknown_preset_and_keys():
    with pytest.raises(FileNotFoundError, match="presets: \\['open', 'paper', 'tiny_cpu', 'tiny_learn'\\]"):
        load_preset("papr")
    with pytest.raises(ScorerConfigError, match="unknown key"):
        tars_config_from({"mode": "decoupled", "safty": {}})
    with pytest.raises(ScorerConfigError, match="reward.tars is missing"):
        tars_config_from(None)
    with pytest.raises(ScorerConfigError, match="type_weights.harmless"):
        tars_config_from(
            {
                "mode": "weighted",
                "safety": {"backend": "refusal_keywords"},
                "helpfulness": {"backend": "refusal_keywords"},
                "type_weights": {"harmful": {"safety": 1}},
            }
        )


def test_reward_log_schema_is_documented_and_used_by_the_metrics():
    """One schema (tars_verl/reward/log_schema.py): the config docs name every key, the metrics read its per-type
    subset."""
    import os

    import tars_verl
    from tars_verl.reward import log_schema as reward_log
    from tars_verl.reward.per_type_metrics import prompt_type_metrics

    doc = open(os.path.join(os.path.dirname(tars_verl.__file__), "config", "README.md")).read()
    section = doc.split("### Logged per sample", 1)[1].split("\n## ", 1)[0]
    assert [k for k in reward_log.KEYS if f"`{k}`" not in section] == []
    info = {"prompt_type": "harmful", **{k: 1.0 for k in reward_log.KEYS if k != "prompt_type"}}
    metrics = prompt_type_metrics([info])
    assert {k.split("/")[2] for k in metrics if k.endswith("/mean")} == {"reward", *reward_log.PER_TYPE_KEYS} - {
        "total"
    }


def _hydra_setup_modules() -> set[str]:
    """The package modules that import Hydra's composition API (compose / initialize* / GlobalHydra).

    Read with a regular expression, not ``ast.parse``: CPython 3.11's parser can raise "AST constructor recursion
    depth mismatch" when called late in a long process (gh-106905); it failed this test once in a full-suite run."""
    import re

    import tars_verl

    root = os.path.dirname(tars_verl.__file__)
    api = {"compose", "initialize", "initialize_config_module", "initialize_config_dir", "GlobalHydra"}
    statement = re.compile(r"^[ \t]*from[ \t]+hydra[\w.]*[ \t]+import[ \t]+(\([^)]*\)|[^\n]*)", re.M)
    found = set()
    for folder, _, files in os.walk(root):
        for name in (f for f in files if f.endswith(".py")):
            path = os.path.join(folder, name)
            with open(path, encoding="utf-8") as f:
                text = f.read()
            if any(api & set(re.findall(r"\w+", m.group(1))) for m in statement.finditer(text)):
                found.add(os.path.relpath(path, root))
    return found


def test_hydra_is_set_up_in_one_place_and_every_caller_gets_the_same_config():
    """One function (tars_verl.config.compose) composes: the dry run, the composition helper and load_preset had a
    copy each of the Hydra set-up."""
    from tars_verl.config import compose
    from tars_verl.training.dry_run import compose_reporting

    assert _hydra_setup_modules() == {os.path.join("config", "__init__.py")}
    overrides = ["tars@reward.tars=tiny_cpu", "actor_rollout_ref.model.path=/tmp/tars_tiny/policy"]
    problems: list[str] = []
    composed = compose("tars_grpo", overrides)
    assert compose_reporting("tars_grpo", overrides, problems) == composed and problems == []
    assert load_preset("tiny_cpu") == composed.reward.tars


def test_compose_ignores_a_hydra_set_up_left_by_someone_else(tmp_path):
    """hydra.main entry points and tests leave Hydra initialised elsewhere; compose still reads tars_verl.config."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from tars_verl.config import compose

    (tmp_path / "tars_grpo.yaml").write_text("reward: {reward_manager: {name: not_tars}}\n")
    GlobalHydra.instance().clear()
    initialize_config_dir(config_dir=str(tmp_path), version_base=None)  # not as a context manager: it stays set up
    try:
        assert GlobalHydra.instance().is_initialized()
        assert compose("tars_grpo").reward.reward_manager.name == "tars"
    finally:
        GlobalHydra.instance().clear()
