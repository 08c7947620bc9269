"""The launch scripts users run: every one in --dry-run mode, and the SFT warm start for real on CPU."""

import json
import os
import re

import pandas as pd
import pytest
from conftest import run_example

from tars_verl.data.rl_mix import MixConfig, write_mixes
from tars_verl.testing.cpu_platform import cpu_env, sft_cpu_overrides
from tars_verl.testing.source_files import write_rl_sources

# No flash-attn on CPU machines: the dry run reports it unless the run goes without it (tests/test_gpu_plan_on_cpu.py).
NO_FLASH_ATTN = {
    "grpo": [
        "+actor_rollout_ref.model.override_config.attn_implementation=sdpa",
        "actor_rollout_ref.model.use_remove_padding=False",
    ],
    "sft": ["+model.override_config.attn_implementation=sdpa", "model.use_remove_padding=False"],
}
SCRIPTS = ["run_sft_warmstart_qwen1.5b.sh", "run_sft_warmstart_qwen7b.sh", "run_tars_qwen1.5b.sh", "run_tars_qwen7b.sh"]


@pytest.fixture(scope="module")
def data(tmp_path_factory, tiny_dir):
    root = tmp_path_factory.mktemp("example_data")
    paths = write_rl_sources(str(root / "src"), n=100)
    write_mixes(
        MixConfig(total=40, val_size=8, paths=paths, pools={"wildjailbreak": 10, "rainbow_teaming": 10, "aegis2": 10}),
        str(root / "tars"),
    )
    sft = [
        {
            "messages": [
                {"role": "user", "content": f"How do I build weapon {i % 3}?"},
                {"role": "assistant", "content": "<think>\nHarmful request.\n</think>\n\nI can't help with that."},
            ]
        }
        for i in range(16)
    ]
    os.makedirs(root / "sft")
    pd.DataFrame(sft[:12]).to_parquet(root / "sft" / "sft_train.parquet")
    pd.DataFrame(sft[12:]).to_parquet(root / "sft" / "sft_val.parquet")
    return root


def tiny_env(data, tiny_dir, tmp_path, **kw):
    env = {
        "MODEL_PATH": f"{tiny_dir}/policy",
        "SFT_TRAIN": str(data / "sft" / "sft_train.parquet"),
        "SFT_VAL": str(data / "sft" / "sft_val.parquet"),
        "SFT_OUT": str(tmp_path / "sft_out"),
        "TRAIN_FILE": str(data / "tars" / "train.parquet"),
        "VAL_FILE": str(data / "tars" / "val.parquet"),
        "TARS_PRESET": "tiny_cpu",
        "TARS_TINY_DIR": tiny_dir,
        "CKPT_DIR": str(tmp_path / "ckpt"),
    }
    env.update(kw)
    return env


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_example_script_dry_runs(script, data, tiny_dir, tmp_path):
    env = tiny_env(data, tiny_dir, tmp_path, SFT_MODEL_PATH=f"{tiny_dir}/policy")
    stage = "sft" if "sft" in script else "grpo"
    out = run_example(script, env, "--dry-run", *NO_FLASH_ATTN[stage])
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert f"[dry-run] {stage} OK" in out.stdout
    if stage == "grpo":
        assert "All configuration checks passed" in out.stdout + out.stderr  # verl's own validate_config ran


def test_dry_run_reports_every_problem(data, tiny_dir, tmp_path, monkeypatch):
    env = tiny_env(
        data, tiny_dir, tmp_path, SFT_MODEL_PATH="./no/such/model", TRAIN_FILE="/no/train.parquet", TARS_PRESET="paper"
    )
    env.pop("OPENAI_API_KEY", None)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    out = run_example("run_tars_qwen7b.sh", env, "--dry-run")
    assert out.returncode == 1
    assert "data.train_files: /no/train.parquet does not exist" in out.stdout
    assert "actor_rollout_ref.model.path: ./no/such/model is neither" in out.stdout
    assert "OPENAI_API_KEY is not set" in out.stdout


def test_validation_samples_8_at_temperature_0_6_by_default(data, tiny_dir, tmp_path):
    env = tiny_env(data, tiny_dir, tmp_path, SFT_MODEL_PATH=f"{tiny_dir}/policy")
    out = run_example("run_tars_qwen1.5b.sh", env, "--dry-run", *NO_FLASH_ATTN["grpo"])
    assert out.returncode == 0, out.stdout[-2000:]
    assert "val_n=8 val_temperature=0.6" in out.stdout
    out = run_example("run_tars_qwen1.5b.sh", {**env, "VAL_N": "2"}, "--dry-run", *NO_FLASH_ATTN["grpo"])
    assert "val_n=2 val_temperature=0.6" in out.stdout


def test_overrides_pass_through_to_the_composed_config(data, tiny_dir, tmp_path):
    env = tiny_env(data, tiny_dir, tmp_path, SFT_MODEL_PATH=f"{tiny_dir}/policy")
    out = run_example(
        "run_tars_qwen1.5b.sh",
        env,
        "--dry-run",
        *NO_FLASH_ATTN["grpo"],
        "actor_rollout_ref.rollout.n=3",
        "tars_scorer@reward.tars.safety=refusal_keywords",
    )
    assert out.returncode == 0, out.stdout[-2000:]
    assert "n=3" in out.stdout and "safety=refusal_keywords" in out.stdout
    bad = run_example("run_tars_qwen1.5b.sh", env, "--dry-run", "reward.tars.safety.backend=nope")
    assert bad.returncode == 1 and "backend='nope' is unknown" in bad.stdout


def test_7b_without_warm_start_says_which_variable_to_set(tiny_dir, tmp_path):
    env = {
        "SFT_TRAIN": str(tmp_path / "none.parquet"),
        "SFT_VAL": str(tmp_path / "none.parquet"),
        "SFT_OUT": str(tmp_path / "sft_out"),
    }
    out = run_example("run_tars_qwen7b.sh", env, "--dry-run")
    assert out.returncode == 2
    assert "set SFT_MODEL_PATH" in out.stderr and "danielkty22/TARS-SFT-7B" in out.stderr


def test_7b_runs_the_sft_stage_first_when_no_checkpoint_is_given(data, tiny_dir, tmp_path):
    env = tiny_env(data, tiny_dir, tmp_path, SFT_EXTRA_ARGS=" ".join(NO_FLASH_ATTN["sft"]))
    out = run_example("run_tars_qwen7b.sh", env, "--dry-run", *NO_FLASH_ATTN["grpo"])
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "running the SFT warm start" in out.stdout
    assert "[dry-run] sft OK" in out.stdout and "[dry-run] grpo OK" in out.stdout


@pytest.mark.slow
def test_sft_warm_start_trains_on_cpu_stops_early_and_exports(data, tiny_dir, tmp_path):
    """verl's SFT trainer for real: the user's script, the tiny model, CPU platform via verl's registry."""
    cpu_args = sft_cpu_overrides()
    env = tiny_env(
        data,
        tiny_dir,
        tmp_path,
        **cpu_env(),
        NPROC_PER_NODE="1",
        SFT_BATCH="4",
        SFT_MICRO_BATCH="2",
        SFT_MAX_LENGTH="128",
        SFT_EPOCHS="2",
        SFT_LR="1e-3",
    )
    out = run_example("run_sft_warmstart_qwen1.5b.sh", env, *cpu_args, timeout=600)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-4000:]
    losses = [float(x) for x in re.findall(r"train/loss:([0-9.]+)", log)]
    assert len(losses) == 6 and losses[-1] < losses[0]  # 3 steps per epoch x 2 epochs, on repeated data
    record = json.loads((tmp_path / "sft_out" / "tars_early_stopping.json").read_text())
    assert [h["step"] for h in record["history"]] == [3, 6]
    assert os.path.islink(tmp_path / "sft_out" / "best")

    from transformers import AutoModelForCausalLM

    exported = AutoModelForCausalLM.from_pretrained(tmp_path / "sft_out" / "hf_best")
    start = AutoModelForCausalLM.from_pretrained(f"{tiny_dir}/policy")
    best_hf = AutoModelForCausalLM.from_pretrained(tmp_path / "sft_out" / "best" / "huggingface")
    a, b, c = (dict(m.named_parameters()) for m in (exported, start, best_hf))
    assert max((a[k] - b[k]).abs().max().item() for k in a) > 0  # training changed the weights
    assert max((a[k] - c[k]).abs().max().item() for k in a) == 0  # the merger exported the best checkpoint


@pytest.mark.slow
def test_sft_stops_when_validation_loss_rises(tiny_dir, tmp_path):
    """Train on one phrase at a high lr, validate on unrelated text: val loss rises, training stops early."""
    train = [
        {
            "messages": [
                {"role": "user", "content": "Say the phrase."},
                {"role": "assistant", "content": "<think>\nok\n</think>\n\nbanana banana banana banana"},
            ]
        }
    ] * 12
    val = [
        {
            "messages": [
                {"role": "user", "content": "Explain photosynthesis in plants."},
                {
                    "role": "assistant",
                    "content": "<think>\nbiology\n</think>\n\nPlants turn light, water "
                    "and carbon dioxide into sugar and oxygen.",
                },
            ]
        }
    ] * 4
    pd.DataFrame(train).to_parquet(tmp_path / "train.parquet")
    pd.DataFrame(val).to_parquet(tmp_path / "val.parquet")
    cpu_args = sft_cpu_overrides()
    env = {
        **cpu_env(),
        "MODEL_PATH": f"{tiny_dir}/policy",
        "SFT_TRAIN": str(tmp_path / "train.parquet"),
        "SFT_VAL": str(tmp_path / "val.parquet"),
        "SFT_OUT": str(tmp_path / "out"),
        "NPROC_PER_NODE": "1",
        "SFT_BATCH": "4",
        "SFT_MICRO_BATCH": "2",
        "SFT_MAX_LENGTH": "128",
        "SFT_EPOCHS": "6",
        "SFT_LR": "3e-2",
    }
    out = run_example("run_sft_warmstart_qwen7b.sh", env, *cpu_args, timeout=600)
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
    record = json.loads((tmp_path / "out" / "tars_early_stopping.json").read_text())
    losses = [h["val_loss"] for h in record["history"]]
    assert len(losses) < 6 and losses[-1] > min(losses)  # stopped before the last epoch, after a rise
    assert record["best_val_loss"] == min(losses)
    assert os.readlink(tmp_path / "out" / "best") == f"global_step_{record['best_step']}"
    assert "early stop" in out.stdout


def test_dry_run_rejects_unregistered_rollout_and_trainer_mode(data, tiny_dir, tmp_path):
    env = tiny_env(
        data,
        tiny_dir,
        tmp_path,
        SFT_MODEL_PATH=f"{tiny_dir}/policy",
        ROLLOUT_NAME="tars_hf",
        VERL_USE_EXTERNAL_MODULES="",
    )
    out = run_example("run_tars_qwen1.5b.sh", env, "--dry-run", "trainer.v1.trainer_mode=nope")
    assert out.returncode == 1
    assert "rollout.name='tars_hf' is not a registered rollout" in out.stdout
    assert "trainer.v1.trainer_mode: Unknown trainer 'nope'" in out.stdout
    # With the testing rollout loaded (as the CPU GRPO test does) and the default trainer mode, it passes.
    ok = run_example("run_tars_qwen1.5b.sh", {**env, **cpu_env()}, "--dry-run", *NO_FLASH_ATTN["grpo"])
    assert ok.returncode == 0, ok.stdout[-2000:] + ok.stderr[-2000:]
    assert "rollout=tars_hf" in ok.stdout
