"""The launch scripts users run: every one in --dry-run mode, the commands they run (--print-cmd, each stage's
overrides, defaults in one file), and the SFT warm start for real on CPU."""

import json
import os
import re
import shutil
import subprocess
import sys

import pandas as pd
import pytest
from conftest import ROOT, run_example
from omegaconf import OmegaConf

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
    # Each stage's dry run passes only with its own flash-attn overrides: a mix-up of --sft and GRPO's would fail.
    env = tiny_env(data, tiny_dir, tmp_path)
    out = run_example("run_tars_qwen7b.sh", env, "--dry-run", *NO_FLASH_ATTN["grpo"], "--sft", *NO_FLASH_ATTN["sft"])
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


# -- the commands the scripts run: a stub `python` and `torchrun` first on PATH record each argv instead -----------
LIB = os.path.join(ROOT, "examples", "lib")
DEFAULTS_SH = open(os.path.join(LIB, "defaults.sh")).read()
# NAME=hydra.key: the GRPO knobs whose default is the recipe YAML's (tars_verl/config/tars_grpo_recipe.yaml).
_TABLE = re.search(r"^TARS_GRPO_KNOBS=\((.*?)^\)", DEFAULTS_SH, re.M | re.S)
GRPO_KNOBS = dict(re.findall(r"^\s*(\w+)=([\w.]+)", _TABLE[1] if _TABLE else "", re.M))
KNOBS = sorted(set(re.findall(r"\$\{(\w+):=", DEFAULTS_SH)) | set(GRPO_KNOBS))
SFT_OVERRIDE = """trainer.experiment_name=it's a "quoted" $HOME run"""  # one argument: spaces, both quotes, a `$`
GRPO_OVERRIDE = "trainer.experiment_name=grpo with spaces"
STUB = """#!{python}
import json, os, sys
with open(os.environ["TARS_ARGV_LOG"], "a") as f:
    record = {{"argv": [os.path.basename(sys.argv[0]), *sys.argv[1:]], "GPU_MEM_GIB": os.environ.get("GPU_MEM_GIB")}}
    f.write(json.dumps(record) + "\\n")
"""


@pytest.fixture
def stubs(tmp_path):
    """PATH with recording stubs first, every knob of defaults.sh unset (so the defaults apply), SFT data present."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("python", "torchrun"):
        (bin_dir / name).write_text(STUB.format(python=sys.executable))
        (bin_dir / name).chmod(0o755)
    for name in ("train", "val"):
        (tmp_path / f"sft_{name}.parquet").touch()  # the recipe only checks that they exist
    env = {name: None for name in KNOBS}
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        TARS_ARGV_LOG=str(tmp_path / "argv.jsonl"),
        SFT_TRAIN=str(tmp_path / "sft_train.parquet"),
        SFT_VAL=str(tmp_path / "sft_val.parquet"),
        SFT_OUT=str(tmp_path / "sft out"),  # a space in a path, too
        SFT_EXTRA_ARGS=None,
    )
    return env


def recorded(env) -> list[dict]:
    log = env["TARS_ARGV_LOG"]
    if not os.path.exists(log):
        return []
    with open(log) as f:
        records = [json.loads(line) for line in f]
    os.remove(log)
    return records


def run_pasted(commands: str, env) -> subprocess.CompletedProcess:
    """What a user gets who pastes the --print-cmd output into bash (comments included)."""
    full = {k: v for k, v in {**os.environ, **env}.items() if v is not None}
    return subprocess.run(["bash", "-e"], input=commands, cwd=ROOT, env=full, capture_output=True, text=True)


CASES = {
    "recipe": ("run_tars_qwen1.5b.sh", {}, [], ["torchrun", "python", "python"]),
    "recipe --dry-run": ("run_tars_qwen1.5b.sh", {}, ["--dry-run"], ["python", "python"]),
    "sft, node 1 of 2": (
        "run_sft_warmstart_qwen7b.sh",
        {"NNODES": "2", "NODE_RANK": "1", "MASTER_ADDR": "10.0.0.1"},
        [],
        ["torchrun"],  # node 0 exports, not this one
    ),
    "sft, own torchrun flags": (
        "run_sft_warmstart_qwen7b.sh",
        {"NNODES": "2", "TORCHRUN_ARGS": "--rdzv_backend=c10d  --rdzv_endpoint=h:29400 --node_rank 0"},
        [],
        ["torchrun", "python"],
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_print_cmd_prints_the_commands_that_run(case, stubs):
    script, env_extra, flags, programs = CASES[case]
    env = {**stubs, **env_extra}
    stage_args = ["--sft", SFT_OVERRIDE] if "sft" in script else [GRPO_OVERRIDE, "--sft", SFT_OVERRIDE, "--grpo", "x=1"]
    printed = run_example(script, env, "--print-cmd", *flags, *stage_args)
    assert printed.returncode == 0, printed.stderr
    assert recorded(env) == []  # printed, nothing run
    ran = run_example(script, env, *flags, *stage_args)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    run_records = recorded(env)
    assert [r["argv"][0] for r in run_records] == programs, run_records
    pasted = run_pasted(printed.stdout, env)
    assert pasted.returncode == 0, pasted.stderr
    assert recorded(env) == run_records, printed.stdout  # the same argv, word for word, and GPU_MEM_GIB

    # Each stage got its own overrides, each as one argument.
    assert run_records[0]["argv"][-1] == SFT_OVERRIDE  # torchrun, or the SFT dry run: the SFT stage comes first
    if "sft" not in script:
        grpo = run_records[-1]
        assert grpo["argv"][-2:] == [GRPO_OVERRIDE, "x=1"] and SFT_OVERRIDE not in grpo["argv"]
        assert grpo["GPU_MEM_GIB"] == ("48" if "--dry-run" in flags else None)  # the layout's, for the memory plan
    assert not any("--sft" in r["argv"] or "--grpo" in r["argv"] for r in run_records)


def test_sft_extra_args_and_a_misplaced_separator_are_refused(stubs):
    out = run_example("run_tars_qwen7b.sh", {**stubs, "SFT_EXTRA_ARGS": "data.max_length=64"}, "--print-cmd")
    assert out.returncode == 2 and "SFT_EXTRA_ARGS is no longer read" in out.stderr and "--sft" in out.stderr
    out = run_example("run_sft_warmstart_qwen7b.sh", stubs, "--grpo", "x=1")
    assert out.returncode == 2 and "runs the sft stage only" in out.stderr
    assert recorded(stubs) == []


def test_unused_sft_overrides_are_named(stubs):
    env = {**stubs, "SFT_MODEL_PATH": "some/warm-start"}
    out = run_example("run_tars_qwen7b.sh", env, "--print-cmd", "--sft", "a=1")
    assert out.returncode == 0 and "the 1 override(s) after --sft are unused" in out.stdout
    assert "torchrun" not in out.stdout and "actor_rollout_ref.model.path=some/warm-start" in out.stdout


def test_no_default_is_set_outside_defaults_sh():
    """`${X:-value}` / `${X:=value}` anywhere else would be a second default that can disagree with the first."""
    scripts = [os.path.join(ROOT, "examples", f) for f in os.listdir(os.path.join(ROOT, "examples"))]
    scripts += [os.path.join(LIB, f) for f in os.listdir(LIB) if f != "defaults.sh"]
    found = {}
    for path in scripts:
        if path.endswith(".sh"):
            text = open(path).read()
            hits = re.findall(r"\$\{\w+:?[-=][^}]+\}", text) + re.findall(r"^\s*export\s+\w+=", text, re.M)
            if hits:
                found[os.path.relpath(path, ROOT)] = hits
    assert found == {}
    assert {"SFT_TRAIN", "SFT_OUT", "NNODES", "GPU_MEM_GIB", "MODEL_PATH", "TRAIN_FILE"} <= set(KNOBS)


def test_grpo_knobs_default_to_the_recipe_yaml_and_override_it_when_set(stubs):
    """The paper's GRPO settings have one home, tars_grpo_recipe.yaml: no bash default for these knobs, a key there
    for each, and a knob set in the environment reaches its key (and only then)."""
    from tars_verl.config import compose

    assert {"LR", "TRAIN_BATCH", "N_ROLLOUTS", "EPOCHS", "TEMPERATURE", "VAL_N"} <= set(GRPO_KNOBS)
    assert not set(GRPO_KNOBS) & set(re.findall(r"\$\{(\w+):=", DEFAULTS_SH))  # no second default in bash
    recipe = compose("tars_grpo_recipe", ["tars@reward.tars=tiny_cpu"])
    for key in GRPO_KNOBS.values():
        assert OmegaConf.select(recipe, key) is not None, key

    env = {**stubs, "SFT_MODEL_PATH": "org/warm"}
    plain = run_example("run_tars_qwen7b.sh", env, "--print-cmd").stdout.splitlines()[-1]
    assert not any(f" {key}=" in plain for key in GRPO_KNOBS.values())
    values = {name: str(i + 2) for i, name in enumerate(GRPO_KNOBS)}
    grpo = run_example("run_tars_qwen7b.sh", {**env, **values}, "--print-cmd", "x=1").stdout.splitlines()[-1]
    for name, key in GRPO_KNOBS.items():
        assert f" {key}={values[name]} " in grpo + " ", name
    assert grpo.endswith(" x=1")  # the user's overrides still come last, so they win


@pytest.mark.parametrize("flag", ["--dryrun", "--print_cmd", "-n", "--dry-run=1", "--cfg"])
def test_a_misspelt_flag_stops_before_anything_runs(flag, stubs):
    """Once passed on as a Hydra override while the real SFT stage started (issue 21)."""
    out = run_example("run_tars_qwen7b.sh", stubs, flag, "trainer.total_epochs=1")
    assert out.returncode == 2, out.stdout + out.stderr
    assert f"unknown option '{flag}'" in out.stderr
    assert all(known in out.stderr for known in ("--dry-run", "--print-cmd", "--sft", "--grpo", "--help"))
    assert recorded(stubs) == []
    out = run_example("run_sft_warmstart_qwen1.5b.sh", stubs, "--sft", flag)
    assert out.returncode == 2 and recorded(stubs) == []


@pytest.mark.parametrize(
    "knob,value",
    [
        ("NNODES", "abc"),
        ("GPUS_PER_NODE", "8x"),
        ("NPROC_PER_NODE", "1.5"),
        ("MASTER_PORT", "29500 "),
        ("TRAIN_BATCH", "-4"),
        ("LR", "fast"),
        ("SFT_LR", "1e-5e"),
        ("TEST_FREQ", "-2"),
        ("GPU_MEM_GIB", "80GB"),
    ],
)
def test_a_non_numeric_knob_stops_with_its_name_before_anything_runs(knob, value, stubs):
    out = run_example("run_tars_qwen7b.sh", {**stubs, knob: value}, "--dry-run")
    assert out.returncode == 2, out.stdout + out.stderr
    assert f"[tars] {knob} must be" in out.stderr and "Nothing was run" in out.stderr
    assert recorded(stubs) == []


def test_a_knob_is_never_evaluated_as_shell_arithmetic(stubs, tmp_path):
    """bash arithmetic expands `$(...)` in an array index: MAX_PROMPT='HOME[$(cmd)]' once ran cmd (set -u or not)."""
    marker = tmp_path / "ran"
    out = run_example("run_tars_qwen7b.sh", {**stubs, "MAX_PROMPT": f"HOME[$(touch {marker})]"}, "--print-cmd")
    assert out.returncode == 2 and "MAX_PROMPT must be a whole number" in out.stderr
    assert not marker.exists()
    assert recorded(stubs) == []


def test_one_edit_of_defaults_sh_changes_both_stages(stubs, tmp_path):
    """SFT_OUT's default decides where the SFT stage writes and what GRPO loads; SFT_TRAIN's what the recipe checks
    and what SFT trains on (the recipe and the SFT script once had one copy each)."""
    examples = tmp_path / "examples"
    shutil.copytree(os.path.join(ROOT, "examples"), examples)
    defaults = examples / "lib" / "defaults.sh"
    text = defaults.read_text()
    edited = text.replace("${SFT_OUT:=checkpoints/tars_sft_qwen1.5b}", "${SFT_OUT:=elsewhere/sft15}")
    edited = edited.replace("${SFT_TRAIN:=data/sft/sft_train.parquet}", f"${{SFT_TRAIN:={tmp_path}/other.parquet}}")
    assert edited.count("elsewhere/sft15") == 1 and edited.count("other.parquet") == 1
    defaults.write_text(edited)
    (tmp_path / "other.parquet").touch()
    env = {**stubs, "SFT_OUT": None, "SFT_TRAIN": None}

    out = run_example("run_tars_qwen1.5b.sh", env, "--print-cmd", examples=str(examples))
    assert out.returncode == 0, out.stderr
    sft, merge, grpo = (line for line in out.stdout.splitlines() if not line.startswith("#"))
    assert f"data.train_files={tmp_path}/other.parquet" in sft and "trainer.default_local_dir=elsewhere/sft15 " in sft
    assert merge.endswith("--target_dir elsewhere/sft15/hf_best")
    assert "actor_rollout_ref.model.path=elsewhere/sft15/hf_best " in grpo
    alone = run_example("run_sft_warmstart_qwen1.5b.sh", env, "--print-cmd", examples=str(examples))
    assert alone.stdout.splitlines()[1:] == [sft, merge]
