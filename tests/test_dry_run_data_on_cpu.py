"""--dry-run checks what the files hold, and reports bad overrides with every other problem, in one short list; it
checks verl's plug-in names without importing the reward manager."""

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
from conftest import ROOT, run_example
from test_examples_on_cpu import data, tiny_env  # noqa: F401 - the module's data fixture

from tars_verl.training.dry_run import check_grpo, check_sft


def test_grpo_dry_run_checks_the_rl_schema_of_the_files(data, tiny_dir, tmp_path):  # noqa: F811
    csv = tmp_path / "train.csv"
    csv.write_text("prompt\nhello\n")
    env = tiny_env(
        data,
        tiny_dir,
        tmp_path,
        SFT_MODEL_PATH=f"{tiny_dir}/policy",
        TRAIN_FILE=str(data / "sft" / "sft_train.parquet"),
        VAL_FILE=str(csv),
    )
    out = run_example("run_tars_qwen1.5b.sh", env, "--dry-run")
    assert out.returncode == 1, out.stdout[-3000:]  # before: "[dry-run] grpo OK"
    assert "no 'prompt' column (data.prompt_key)" in out.stdout and "looks like an SFT file" in out.stdout
    assert f"data.val_files: {csv}: verl's RL dataset reads .parquet, .json or .jsonl only" in out.stdout
    env["VAL_FILE"] = str(data / "tars")
    out = run_example("run_tars_qwen1.5b.sh", env, "--dry-run")
    assert out.returncode == 1 and "is a folder; verl needs the file(s) themselves" in out.stdout


def test_rows_without_chat_prompts_or_prompt_types_are_problems(data, tiny_dir, tmp_path):  # noqa: F811
    df = pd.read_parquet(data / "tars" / "train.parquet")
    df.at[3, "prompt"] = [{"role": "system", "content": "no user turn"}]
    extra = dict(df.at[5, "extra_info"])
    extra["prompt_type"] = "harmfull"
    df.at[5, "extra_info"] = extra
    bad = tmp_path / "train.parquet"
    df.to_parquet(bad)
    base = [
        f"actor_rollout_ref.model.path={tiny_dir}/policy",
        "tars@reward.tars=tiny_cpu",
        f"data.val_files={data / 'tars' / 'val.parquet'}",
    ]
    _, problems = check_grpo([*base, f"data.train_files={bad}"])
    text = "\n".join(problems)
    assert "1 row(s) do not, e.g. rows [3]" in text
    assert "1 row(s) without a usable prompt type" in text and "extra_info.prompt_type='harmfull'" in text
    _, problems = check_grpo([*base, f"data.train_files={data / 'tars' / 'train.parquet'}"])
    assert not [p for p in problems if "data.train_files" in p or "data.val_files" in p]


def test_typo_key_and_unknown_preset_are_listed_with_the_other_problems(data, tiny_dir, tmp_path):  # noqa: F811
    env = tiny_env(
        data,
        tiny_dir,
        tmp_path,
        SFT_MODEL_PATH=f"{tiny_dir}/policy",
        TARS_PRESET="papr",
        TRAIN_FILE="/no/train.parquet",
    )
    out = run_example("run_tars_qwen1.5b.sh", env, "--dry-run", "trainer.totl_epochs=3")
    assert out.returncode == 1, out.stdout[-3000:] + out.stderr[-3000:]
    assert "Traceback" not in out.stdout + out.stderr  # before: a 90-line Hydra traceback and nothing else
    assert "override 'tars@reward.tars=papr'" in out.stdout and "Could not find 'tars/papr'" in out.stdout
    assert "override 'trainer.totl_epochs=3'" in out.stdout
    assert "data.train_files: /no/train.parquet does not exist" in out.stdout  # the other checks still ran
    assert max(len(line) for line in out.stdout.splitlines()) < 600


def test_sft_dry_run_rejects_an_rl_mix(data, tiny_dir, tmp_path):  # noqa: F811
    _, problems = check_sft(
        [
            f"model.path={tiny_dir}/policy",
            f"data.train_files={data / 'tars' / 'train.parquet'}",
            f"data.val_files={data / 'sft' / 'sft_val.parquet'}",
        ]
    )
    assert any("no 'messages' column" in p and "looks like an RL mix" in p for p in problems), problems


def test_problem_list_never_shows_a_url_password(tiny_dir, capsys):
    from tars_verl.training.dry_run import main

    code = main(
        [
            "grpo",
            f"actor_rollout_ref.model.path={tiny_dir}/policy",
            "tars@reward.tars=tiny_cpu",
            "reward.tars.helpfulness.urll=https://bob:pw-secret-9@judge.example/v1?api_key=k-secret-7",
        ]
    )
    out = capsys.readouterr().out
    assert code == 1 and "override 'reward.tars.helpfulness.urll=https://***@judge.example/v1?api_key=***'" in out
    assert "pw-secret-9" not in out and "k-secret-7" not in out


def test_a_missing_data_file_is_one_problem_in_the_words_of_the_sft_entry_point(tiny_dir, capsys):
    """The dry run and the SFT entry point share one data-file check: each missing file is reported once, in the
    same words (the dry run used to list a missing SFT file twice, worded differently)."""
    from tars_verl.config import compose
    from tars_verl.training.dry_run import main
    from tars_verl.training.sft import run_sft

    overrides = [
        f"model.path={tiny_dir}/policy",
        "data.train_files=/no/sft_train.parquet",
        "data.val_files=[/no/sft_val.parquet]",
    ]
    expected = [
        "data.train_files: /no/sft_train.parquet does not exist (build it with data_prep/build_sft_traces.py)",
        "data.val_files: /no/sft_val.parquet does not exist (build it with data_prep/build_sft_traces.py)",
    ]
    _, problems = check_sft(overrides)
    assert [p for p in problems if "/no/" in p] == expected
    assert main(["sft", *overrides]) == 1
    listed = [line.removeprefix("  - ") for line in capsys.readouterr().out.splitlines() if "/no/" in line]
    assert listed == expected
    with pytest.raises(FileNotFoundError) as err:
        run_sft(compose("tars_sft", overrides))  # stops before any process group or model
    assert str(err.value).splitlines() == expected


def test_sft_entry_point_and_dry_run_list_the_same_early_stopping_problems(tiny_dir, data):  # noqa: F811
    from tars_verl.config import compose
    from tars_verl.training.sft import check_config

    overrides = [
        f"model.path={tiny_dir}/policy",
        f"data.train_files={data / 'sft' / 'sft_train.parquet'}",
        "data.val_files=null",
        "trainer.max_ckpt_to_keep=2",
        "tars_sft.early_stopping=true",
    ]
    _, problems = check_sft(overrides)
    stopping = [p for p in problems if p.startswith("tars_sft.early_stopping")]
    assert len(stopping) == 2 and "needs data.val_files" in stopping[0] and "max_ckpt_to_keep=null" in stopping[1]
    with pytest.raises(ValueError) as err:
        check_config(compose("tars_sft", overrides))
    assert str(err.value).splitlines() == stopping


def test_a_missing_rl_file_is_one_problem_naming_what_builds_it(tiny_dir):
    model = f"actor_rollout_ref.model.path={tiny_dir}/policy"
    _, problems = check_grpo([model, "tars@reward.tars=tiny_cpu", "data.train_files=/no/rl.parquet"])
    assert [p for p in problems if "/no/rl.parquet" in p] == [
        "data.train_files: /no/rl.parquet does not exist (build it with data_prep/build_rl_mix.py, or "
        "data_prep/import_tars_release.py for the authors' released data)"
    ]


# -- the dry run checks verl's plug-in names without importing the reward manager or verl's reward loop -------------
REWARD_SIDE = (
    "tars_verl.reward.manager",
    "verl.experimental.reward_loop",
    "verl.experimental.reward_loop.reward_manager",
    "verl.trainer.ppo.reward",
    "verl.trainer.ppo.v1",
)


@pytest.mark.slow  # a fresh interpreter imports verl and runs the whole dry run: ~60 s on 2 busy cores
def test_the_dry_run_imports_neither_the_reward_manager_nor_verls_reward_loop(data, tiny_dir):  # noqa: F811
    """A fresh interpreter runs the whole GRPO dry run, then lists what it imported. (``verl.protocol``, DataProto's
    module, is imported by ``import verl`` itself, verl/__init__.py, which composing verl's config needs.)"""
    code = (
        "import json, sys\n"
        "from tars_verl.training.dry_run import check_grpo\n"
        "_, problems = check_grpo(sys.argv[2:])\n"
        "print(json.dumps({'problems': problems, 'imported': [m for m in sys.argv[1].split(',') if m in sys.modules],"
        " 'verl': 'verl' in sys.modules}))\n"
    )
    overrides = [
        f"actor_rollout_ref.model.path={tiny_dir}/policy",
        "tars@reward.tars=tiny_cpu",
        f"data.train_files={data / 'tars' / 'train.parquet'}",
        f"data.val_files={data / 'tars' / 'val.parquet'}",
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)}
    done = subprocess.run(
        [sys.executable, "-c", code, ",".join(REWARD_SIDE), *overrides],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["verl"]  # verl's own validate_config ran
    assert result["imported"] == []  # before: the manager, its registry package and verl's v1 trainer
    assert not [p for p in result["problems"] if "reward" in p or "trainer_mode" in p], result["problems"]


def test_a_reward_manager_or_trainer_mode_verl_would_not_resolve_to_tars_is_a_problem(tiny_dir, monkeypatch):
    from tars_verl.config import compose
    from tars_verl.reward import manager
    from tars_verl.training.dry_run import check_plugins, check_reward_manager

    base = ["tars@reward.tars=tiny_cpu", f"actor_rollout_ref.model.path={tiny_dir}/policy"]
    assert check_reward_manager(compose("tars_grpo", base)) == []
    (problem,) = check_reward_manager(compose("tars_grpo", [*base, "reward.reward_manager.name=naive"]))
    assert "reward.reward_manager.name='naive'" in problem
    importlib_source = [*base, "reward.reward_manager.source=importlib", "reward.reward_manager.name=TarsRewardManager"]
    for path in ("pkg://tars_verl.reward.manager", "pkg://tars_verl/reward/manager", manager.__file__):
        assert (
            check_reward_manager(compose("tars_grpo", [*importlib_source, f"reward.reward_manager.module.path={path}"]))
            == []
        )
    (problem,) = check_reward_manager(
        compose("tars_grpo", [*importlib_source, "reward.reward_manager.module.path=pkg://my_lab.managers"])
    )
    assert "is not the TARS manager; use module.path=pkg://tars_verl.reward.manager" in problem
    # verl did not load our entry point (VERL_USE_EXTERNAL_PLUGINS=none, or tars-verl not installed): 'tars' unknown
    monkeypatch.delitem(sys.modules, "tars_verl.verl_plugin")
    monkeypatch.setenv("VERL_USE_EXTERNAL_PLUGINS", "none")
    cfg = compose("tars_grpo", base)
    problems = check_reward_manager(cfg) + [p for p in check_plugins(cfg) if "rollout.name" not in p]
    assert len(problems) == 2 and all("VERL_USE_EXTERNAL_PLUGINS unset (it is 'none')" in p for p in problems)
    assert problems[0].startswith("reward.reward_manager.name=tars: ")
    assert problems[1].startswith("trainer.v1.trainer_mode=tars: ")
