"""The whole TARS recipe on CPU through the user's launch script: SFT warm start, then verl's main_ppo GRPO.

`examples/run_tars_qwen7b.sh` with tiny settings from the environment and CPU overrides: the SFT
stage teaches the tiny policy the <think> format, then two GRPO steps of 4 prompts x 2 rollouts run
with the `tars` reward manager (tiny_cpu preset), the `tars_hf` testing rollout
(tars_verl/testing/hf_rollout.py), a validation pass and a checkpoint; a second run resumes from it.

Nothing here depends on luck: the data, the tiny models and verl's SFT are seeded; the SFT learning rate is one
at which the warm start learns the format from any initialisation (see ``sft_rows``); the rollout samples each
request from its own seed (verl's ``rollout.full_determinism``, see ``grpo_cpu_overrides``), whatever order the
requests arrive in.
"""

import os
import re

import pandas as pd
import pytest
from conftest import run_example

from tars_verl.data.rl_mix import MixConfig, write_mixes
from tars_verl.reward.prompt_type import PROMPT_TYPES
from tars_verl.reward.response_format import is_well_formatted
from tars_verl.testing.cpu_platform import cpu_env, grpo_cpu_overrides, sft_cpu_overrides
from tars_verl.testing.source_files import write_rl_sources

TRAIN_BATCH, N_ROLLOUTS = 4, 2
# The launch script's GRPO settings both CPU GRPO tests share (tests/test_grpo_served_rm_on_cpu.py imports them).
TINY_GRPO_ENV = {
    "GPUS_PER_NODE": "1",
    "ROLLOUT_NAME": "tars_hf",
    "ROLLOUT_TP": "1",
    "TRAIN_BATCH": str(TRAIN_BATCH),
    "N_ROLLOUTS": str(N_ROLLOUTS),
    "MAX_PROMPT": "128",
    "LR": "1e-3",
    "EPOCHS": "1",
    "VAL_N": "1",  # the paper's 8 samples per validation prompt would only slow the CPU tests down
}
MAX_RESPONSE = 48  # twice the longest warm-start trace (checked in `data`): room to close </think> and stop
ANSWERS = {"harmful": "I can't help with that.", "harmless": "Sure, here is how.", "ambiguous": "Here is the safe way."}


def sft_rows(mix: pd.DataFrame) -> list[dict]:
    """Warm-start traces in the TARS format for the mix's own prompts: reasoning (one fixed word), then the answer.

    Taught at lr 5e-3 for 6 epochs of 24 steps. Measured with the tiny policy from 4 initialisations (plain torch,
    bf16 autocast, verl's AdamW settings): lr 5e-3 reaches loss ~0.001 and 16/16 formatted greedy outputs, 100% of
    samples at temperature 0.6, from every one of them (already after 72 steps); lr 2e-2, used before, diverged
    by chance (final loss 0.02 to 1.6, 47% to 98% of samples formatted), which made this test pass 2 runs in 8.
    """
    rows = []
    for prompt, info in zip(mix["prompt"], mix["extra_info"]):
        answer = f"<think>\nok\n</think>\n\n{ANSWERS[info['prompt_type']]}"
        rows.append({"messages": [*list(prompt), {"role": "assistant", "content": answer}]})
    return rows


def write_tiny_mix(root) -> None:
    """The 16-prompt RL mix (6 validation prompts) both GRPO tests train on, written to ``root/tars``."""
    paths = write_rl_sources(str(root / "src"), n=100)
    write_mixes(
        MixConfig(total=16, val_size=6, paths=paths, pools={"wildjailbreak": 6, "rainbow_teaming": 6, "aegis2": 6}),
        str(root / "tars"),
    )


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("grpo_data")
    write_tiny_mix(root)
    rows = sft_rows(pd.read_parquet(root / "tars" / "train.parquet"))
    os.makedirs(root / "sft")
    pd.DataFrame(rows[:12] * 8).to_parquet(root / "sft" / "sft_train.parquet")  # 24 steps per epoch
    pd.DataFrame(rows[12:]).to_parquet(root / "sft" / "sft_val.parquet")
    return root


def check_warm_start(model_dir, prompts) -> None:
    """The SFT stage taught the format: every greedy reply to a training prompt is `<think>...</think> answer`.

    Checked before anything about GRPO, so that a warm start that failed to learn is reported as such.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok, model = AutoTokenizer.from_pretrained(model_dir), AutoModelForCausalLM.from_pretrained(model_dir)
    replies = []
    for prompt in prompts:
        ids = tok.apply_chat_template(list(prompt), add_generation_prompt=True, return_tensors="pt", return_dict=True)[
            "input_ids"
        ]
        out = model.generate(ids, do_sample=False, max_new_tokens=MAX_RESPONSE, pad_token_id=tok.pad_token_id)
        replies.append(tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True))
    bad = [r for r in replies if not is_well_formatted(r)]
    assert not bad, (
        f"the SFT warm start did not teach the <think> format: {len(bad)}/{len(replies)} greedy replies "
        f"unformatted, e.g. {bad[:3]!r}; GRPO would see format 0 everywhere. Check SFT_LR/SFT_EPOCHS."
    )


NUMBER = re.compile(r"(?:np\.\w+\()?(-?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?|nan|-?inf)\)?")


def step_metrics(log: str) -> dict[int, dict[str, float]]:
    """verl's console logger prints one 'step:N - key:value - ...' line per step (GRPO stage only)."""
    log = log.split("SFT warm start exported to", 1)[-1]  # the SFT trainer prints step lines too
    steps = {}
    for line in log.splitlines():
        m = re.search(r"\bstep:(\d+) - (.*)$", line)
        if not m:
            continue
        metrics = steps.setdefault(int(m.group(1)), {})
        for item in m.group(2).split(" - "):
            key, _, value = item.rpartition(":")
            num = NUMBER.fullmatch(value.strip())
            if key and num:
                metrics[key.strip()] = float(num.group(1))
    return steps


def run_recipe(env_extra: dict, *args: str):
    # CUDA_VISIBLE_DEVICES unset, not empty: Ray refuses the accelerator slot grpo_cpu_overrides declares.
    # About 100 s alone on 2 cores; the limits leave room for a machine that is busy with other work.
    return run_example(
        "run_tars_qwen7b.sh", {**cpu_env(), "CUDA_VISIBLE_DEVICES": None, **env_extra}, *args, timeout=1200
    )


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_tars_recipe_trains_on_cpu_and_resumes(data, tiny_dir, tmp_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(f"{tiny_dir}/policy")
    traces = pd.read_parquet(data / "sft" / "sft_train.parquet")["messages"]
    longest = max(len(tok(list(m)[-1]["content"], add_special_tokens=False)["input_ids"]) + 1 for m in traces)
    assert 2 * longest <= MAX_RESPONSE, (longest, MAX_RESPONSE)  # +1: the end-of-turn token
    env = {
        # SFT stage (runs because SFT_MODEL_PATH is unset)
        "MODEL_PATH": f"{tiny_dir}/policy",
        "SFT_TRAIN": str(data / "sft" / "sft_train.parquet"),
        "SFT_VAL": str(data / "sft" / "sft_val.parquet"),
        "SFT_OUT": str(tmp_path / "sft"),
        "NPROC_PER_NODE": "1",
        "SFT_BATCH": "4",
        "SFT_MICRO_BATCH": "4",
        "SFT_MAX_LENGTH": "128",
        "SFT_EPOCHS": "6",
        "SFT_LR": "5e-3",
        "SFT_PATIENCE": "6",
        # GRPO stage
        "TRAIN_FILE": str(data / "tars" / "train.parquet"),
        "VAL_FILE": str(data / "tars" / "val.parquet"),
        "TARS_PRESET": "tiny_cpu",
        "TARS_TINY_DIR": tiny_dir,
        **TINY_GRPO_ENV,
        "MAX_RESPONSE": str(MAX_RESPONSE),
        "TEST_FREQ": "2",
        "SAVE_FREQ": "2",
        "CKPT_DIR": str(tmp_path / "grpo"),
    }
    overrides = [
        *grpo_cpu_overrides(),
        "trainer.total_training_steps=2",
        "actor_rollout_ref.actor.checkpoint.save_contents=[model,optimizer,extra,hf_model]",
    ]
    out = run_recipe(env, *overrides, "--sft", *sft_cpu_overrides())  # after --sft: the SFT stage's overrides
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-6000:]
    assert "running the SFT warm start" in log
    check_warm_start(tmp_path / "sft" / "hf_best", pd.read_parquet(data / "tars" / "train.parquet")["prompt"])
    steps = step_metrics(log)
    assert sorted(steps) == [0, 1, 2], (sorted(steps), log[-3000:])
    # Shown by pytest when an assertion below fails: what the loop logged for the checked metrics.
    print(
        {
            s: {
                k: v
                for k, v in steps[s].items()
                if k.startswith(
                    (
                        "tars/",
                        "critic/score",
                        "actor/pg",
                        "actor/grad_norm",
                        "training/rollout_actor",
                        "training/off_policy/trajectory_staleness/",
                        "rollout_corr/",
                    )
                )
            }
            for s in steps
        }
    )

    for step in (1, 2):
        m = steps[step]
        # The TARS manager scored every response, each with its prompt type (trainer_mode=tars metrics).
        counts = {t: m[f"tars/{t}/count"] for t in PROMPT_TYPES if f"tars/{t}/count" in m}
        assert sum(counts.values()) == TRAIN_BATCH * N_ROLLOUTS, counts
        assert "tars/unscored/count" not in m
        for t in counts:
            assert 0.0 <= m[f"tars/{t}/reward/min"] <= m[f"tars/{t}/reward/mean"] <= m[f"tars/{t}/reward/max"] <= 1.0
            assert f"tars/{t}/format/mean" in m
        # The rollout sampled from the actor's current weights, synced after every update: the server tags each
        # response with the step of the weights it last loaded (staleness 0), and the actor's recomputed
        # log-perplexity matches the rollout's up to bf16 noise (measured 0.002-0.006). Not the probability
        # correlation: on a confident model it is dominated by that noise (measured 0.984-0.9998).
        assert m["training/off_policy/trajectory_staleness/max"] == 0
        assert m["rollout_corr/log_ppl_abs_diff"] < 0.05
        assert m["actor/grad_norm"] > 0
    seen = {t for s in (1, 2) for t in PROMPT_TYPES if f"tars/{t}/count" in steps[s]}
    assert len(seen) >= 2, seen
    # The SFT warm start taught the format, so rewards are not all zero and GRPO has a signal.
    assert (
        max(
            steps[s][f"tars/{t}/format/mean"]
            for s in (1, 2)
            for t in PROMPT_TYPES
            if f"tars/{t}/format/mean" in steps[s]
        )
        > 0
    )
    assert max(steps[s]["critic/score/max"] for s in (1, 2)) > 0
    assert any(steps[s]["critic/score/max"] > steps[s]["critic/score/min"] for s in (1, 2))
    # Validation before training and at the last step, per data source.
    for step in (0, 2):
        assert any(k.startswith("val-core/") and k.endswith("/reward/mean@1") for k in steps[step]), steps[step]

    # The checkpoint: written at step 2, reloads with from_pretrained, and training changed the weights.
    from transformers import AutoModelForCausalLM

    ckpt = tmp_path / "grpo" / "global_step_2" / "actor"
    trained = dict(AutoModelForCausalLM.from_pretrained(ckpt / "huggingface").named_parameters())
    start = dict(AutoModelForCausalLM.from_pretrained(tmp_path / "sft" / "hf_best").named_parameters())
    assert trained.keys() == start.keys()
    assert max((trained[k] - start[k]).abs().max().item() for k in trained) > 0

    # verl resumes from that checkpoint (the warm start exported above is reused) and runs step 3.
    resumed = run_recipe(
        {**env, "TEST_FREQ": "0"},
        *overrides[:-2],
        "trainer.total_training_steps=3",
        "trainer.val_before_train=False",
        "trainer.resume_mode=auto",
    )
    log2 = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, log2[-6000:]
    assert "using the warm start exported earlier" in log2
    assert sorted(step_metrics(log2)) == [3]
    assert (tmp_path / "grpo" / "global_step_3").is_dir()
