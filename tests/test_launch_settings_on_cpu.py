"""The launch scripts' EFFECTIVE settings did not change when their fixed GRPO settings moved to YAML.

``examples/run_tars_*.sh`` once wrote every GRPO hyperparameter of the paper into the ``main_ppo`` command (8 bash
files deep); now the fixed ones live in ``tars_verl/config/tars_grpo_recipe.yaml`` and bash passes only what varies
per model and cluster. The commands therefore differ as text; what must not differ is the config verl trains with.

The "before" is recorded data: ``tests/data/launch_print_cmd_before.json`` holds the ``--print-cmd`` output of
every case in :data:`CASES` from the scripts as they were at commit 667c68c (the last commit with the 8-file chain),
recorded once with

    mkdir /tmp/tars_old && git archive 667c68c examples | tar -x -C /tmp/tars_old
    PYTHONPATH=$PWD python tests/test_launch_settings_on_cpu.py record /tmp/tars_old/examples \\
        tests/data/launch_print_cmd_before.json

Recorded commands rather than recorded configs: each test run composes the old command and the new one with the
verl installed NOW, so a verl upgrade (new keys, new defaults) changes both sides alike and never this test's
verdict; and the old scripts need no git history at test time (CI may clone shallow). Both sides compose against
this tree's ``tars_grpo.yaml`` and presets, which this change leaves alone (a change there moves both sides too:
that is a change of TARS's settings, not of the launch path, and other tests guard it).

For each case: the SFT stage's commands (torchrun, the model merger, the SFT dry run) must be the same argv word
for word; each GRPO command (``main_ppo``, the GRPO dry run) must compose (Hydra, as verl's entry point does) to the
same resolved config, and its ``GPU_MEM_GIB`` (the dry run's memory plan) must be the same.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BEFORE = os.path.join(ROOT, "tests", "data", "launch_print_cmd_before.json")

# Every knob the scripts read at 667c68c: unset for each case, so that the defaults apply unless a case sets one.
KNOBS = (
    "CKPT_DIR EPOCHS EXPERIMENT GPUS_PER_NODE GPU_MEM_GIB GPU_MEM_UTIL LOGGER LR MASTER_ADDR MASTER_PORT MAX_PROMPT "
    "MAX_RESPONSE MAX_TOKENS_PER_GPU MODEL_PATH NNODES NODE_RANK NPROC_PER_NODE N_ROLLOUTS PROJECT RM_GPU_MEM_UTIL "
    "RM_PATH RM_ROLLOUT_NAME RM_TP ROLLOUT_NAME ROLLOUT_TP SAVE_FREQ SFT_BATCH SFT_EPOCHS SFT_EXPORT SFT_LR "
    "SFT_MAX_LENGTH SFT_MICRO_BATCH SFT_MODEL_PATH SFT_OUT SFT_PATIENCE SFT_TRAIN SFT_VAL TARS_DRY_RUN TARS_PRESET "
    "TARS_SERVE_RM TEMPERATURE TEST_FREQ TORCHRUN_ARGS TRAIN_BATCH TRAIN_FILE VAL_FILE VAL_N SFT_EXTRA_ARGS"
).split()

# Every GRPO knob set to a value other than its default (the CPU GRPO tests set most of these).
ALL_GRPO_KNOBS = {
    "TRAIN_BATCH": "4",
    "N_ROLLOUTS": "2",
    "LR": "1e-3",
    "EPOCHS": "1",
    "MAX_PROMPT": "128",
    "MAX_RESPONSE": "48",
    "TEMPERATURE": "0.7",
    "VAL_N": "1",
    "TEST_FREQ": "2",
    "SAVE_FREQ": "0",
    "ROLLOUT_NAME": "tars_hf",
    "GPUS_PER_NODE": "1",
    "ROLLOUT_TP": "1",
    "GPU_MEM_UTIL": "0.4",
    "PROJECT": "p",
    "EXPERIMENT": "e",
    "LOGGER": "[console,tensorboard]",
    "NNODES": "2",
}

# name: (script, environment, arguments). {TMP} is a fresh folder holding sft_train.parquet and sft_val.parquet.
CASES: dict[str, tuple[str, dict[str, str], list[str]]] = {
    "qwen1.5b paper": ("run_tars_qwen1.5b.sh", {"TARS_PRESET": "paper"}, ["--print-cmd"]),
    "qwen1.5b open": ("run_tars_qwen1.5b.sh", {"TARS_PRESET": "open"}, ["--print-cmd"]),
    "qwen7b paper": ("run_tars_qwen7b.sh", {"TARS_PRESET": "paper"}, ["--print-cmd"]),
    "qwen7b open": ("run_tars_qwen7b.sh", {"TARS_PRESET": "open"}, ["--print-cmd"]),
    "qwen7b default preset, dry run": ("run_tars_qwen7b.sh", {}, ["--print-cmd", "--dry-run"]),
    "qwen7b tiny_cpu, every GRPO knob set, overrides": (
        "run_tars_qwen7b.sh",
        {"TARS_PRESET": "tiny_cpu", "SFT_MODEL_PATH": "org/warm", **ALL_GRPO_KNOBS},
        ["--print-cmd", "actor_rollout_ref.rollout.n=3", "trainer.total_training_steps=2"],
    ),
    "qwen1.5b paper, served RM knobs": (
        "run_tars_qwen1.5b.sh",
        {
            "TARS_PRESET": "paper",
            "SFT_MODEL_PATH": "org/warm",
            "RM_TP": "1",
            "RM_GPU_MEM_UTIL": "0.3",
            "RM_PATH": "a/b",
        },
        ["--print-cmd"],
    ),
    "sft 7b": ("run_sft_warmstart_qwen7b.sh", {}, ["--print-cmd", "optim.lr=1e-5"]),
}


def case_env(tmp: str, env_extra: dict[str, str]) -> dict[str, str]:
    """The environment of one case: every knob unset, SFT data present under ``tmp``, then the case's own knobs."""
    for name in ("sft_train", "sft_val"):
        open(os.path.join(tmp, f"{name}.parquet"), "a").close()  # the recipe only checks that they exist
    env = {k: v for k, v in os.environ.items() if k not in KNOBS}
    env.update(
        PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"],
        SFT_TRAIN=os.path.join(tmp, "sft_train.parquet"),
        SFT_VAL=os.path.join(tmp, "sft_val.parquet"),
    )
    env.update({k: v.replace("{TMP}", tmp) for k, v in env_extra.items()})
    return env


def print_cmd(examples: str, case: str, tmp: str) -> dict:
    script, env_extra, args = CASES[case]
    out = subprocess.run(
        ["bash", os.path.join(examples, script), *args],
        env=case_env(tmp, env_extra),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    return {"returncode": out.returncode, "stdout": out.stdout.replace(tmp, "{TMP}"), "stderr": out.stderr}


def record(examples: str, out_path: str) -> None:
    """Write every case's --print-cmd output from the scripts in ``examples`` to ``out_path`` (the "before")."""
    import tempfile

    records = {}
    for case in CASES:
        with tempfile.TemporaryDirectory() as tmp:
            got = print_cmd(examples, case, tmp)
        assert got["returncode"] == 0, (case, got["stderr"])
        records[case] = {"stdout": got["stdout"]}
    with open(out_path, "w") as f:
        json.dump(records, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__" and sys.argv[1:2] == ["record"]:
    record(sys.argv[2], sys.argv[3])


# -- comparing a recorded output with today's ------------------------------------------------------------------------
def commands(stdout: str) -> list[list[str]]:
    """The commands of a --print-cmd output: every line that is not a `# ...` comment, as its argv."""
    return [shlex.split(line) for line in stdout.splitlines() if line and not line.startswith("#")]


def grpo_config(argv: list[str]) -> tuple[str, list[str], str | None] | None:
    """(config name, overrides, GPU_MEM_GIB) of a GRPO command (main_ppo or the GRPO dry run); None for another."""
    gpu_mem = None
    if argv[0] == "env":  # env GPU_MEM_GIB=48 python -m tars_verl.training.dry_run grpo ...
        gpu_mem = argv[1].removeprefix("GPU_MEM_GIB=")
        argv = argv[2:]
    module = argv[2] if argv[:2] == ["python", "-m"] else None
    if module == "tars_verl.training.main_ppo":
        rest = argv[3:]
    elif module == "tars_verl.training.dry_run" and argv[3] == "grpo":
        rest = argv[4:]
    else:
        return None
    name = "tars_grpo"  # what both entry points compose without --config-name
    overrides = []
    for arg in rest:
        if arg.startswith("--config-name="):
            name = arg.split("=", 1)[1]
        elif arg.startswith("--config-path="):
            assert arg == "--config-path=pkg://tars_verl.config", arg
        else:
            overrides.append(arg)
    return name, overrides, gpu_mem


def resolved(name: str, overrides: list[str]) -> dict:
    from omegaconf import OmegaConf

    from tars_verl.config import compose

    return OmegaConf.to_container(compose(name, overrides), resolve=True)


def differences(a, b, path="") -> list[str]:
    """Where two resolved configs differ, as `key: before -> after` lines."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b), key=str):
            out += differences(a.get(key, "<absent>"), b.get(key, "<absent>"), f"{path}.{key}" if path else str(key))
        return out
    return [] if a == b else [f"{path}: {a!r} -> {b!r}"]


@pytest.fixture(scope="module")
def before() -> dict:
    with open(BEFORE) as f:
        return json.load(f)


@pytest.mark.parametrize("case", CASES)
def test_print_cmd_effective_settings_are_unchanged(case, before, tmp_path, monkeypatch):
    # The presets read these when resolved; fixed values, so that both sides resolve alike on any machine.
    for name, value in {
        "TARS_TINY_DIR": "/tiny",
        "TARS_GUARD_URL": "http://guard:8001/v1",
        "TARS_GUARD_MODEL": "g",
    }.items():
        monkeypatch.setenv(name, value)
    now = print_cmd(os.path.join(ROOT, "examples"), case, str(tmp_path))
    assert now["returncode"] == 0, now["stderr"]
    old_cmds, new_cmds = commands(before[case]["stdout"]), commands(now["stdout"])
    assert len(old_cmds) == len(new_cmds), (before[case]["stdout"], now["stdout"])
    grpo_seen = 0
    for old, new in zip(old_cmds, new_cmds):
        old_grpo, new_grpo = grpo_config(old), grpo_config(new)
        if old_grpo is None:  # the SFT stage and the model merger: word for word
            assert new == old
            continue
        assert new_grpo is not None, new
        grpo_seen += 1
        assert new_grpo[2] == old_grpo[2]  # GPU_MEM_GIB for the dry run's memory plan
        # The same checkpoint and data paths: tmp_path replaced the recording's {TMP}, so compare with it put back.
        old_cfg = resolved(old_grpo[0], [o.replace("{TMP}", str(tmp_path)) for o in old_grpo[1]])
        new_cfg = resolved(new_grpo[0], new_grpo[1])
        assert differences(old_cfg, new_cfg) == []
        assert len(new_grpo[1]) < len(old_grpo[1])  # the fixed settings left the command for the YAML
    assert grpo_seen == (0 if "sft" in CASES[case][0] else 1)
