"""--dry-run's GPU checks on CPU: flash-attn, the per-GPU memory plan (config.json shapes, no weights),
multi-node reachability and secrets, sglang with a served RM; and the multi-node SFT stage failing fast."""

import json
import os

import pytest
from conftest import run_example

from tars_verl.data.rl_mix import MixConfig, write_mixes
from tars_verl.testing.source_files import write_rl_sources
from tars_verl.training.gpu_plan import flash_attn_installed, shape_from_config

QWEN15 = dict(
    architectures=["Qwen2ForCausalLM"],
    model_type="qwen2",
    hidden_size=1536,
    num_hidden_layers=28,
    num_attention_heads=12,
    num_key_value_heads=2,
    intermediate_size=8960,
    vocab_size=151936,
    tie_word_embeddings=True,
)
QWEN7 = dict(
    architectures=["Qwen2ForCausalLM"],
    model_type="qwen2",
    hidden_size=3584,
    num_hidden_layers=28,
    num_attention_heads=28,
    num_key_value_heads=4,
    intermediate_size=18944,
    vocab_size=152064,
    tie_word_embeddings=False,
)
GRM8 = dict(
    architectures=["LlamaForSequenceClassification"],
    model_type="llama",
    hidden_size=4096,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=8,
    intermediate_size=14336,
    vocab_size=128256,
    tie_word_embeddings=False,
    num_labels=1,
)
NO_FLASH_ATTN = [
    "+actor_rollout_ref.model.override_config.attn_implementation=sdpa",
    "actor_rollout_ref.model.use_remove_padding=False",
]


def test_parameter_counts_from_config_json_match_the_published_models():
    assert shape_from_config(QWEN15).params == 1_543_714_304  # Qwen2.5-1.5B-Instruct
    assert shape_from_config(QWEN7).params == 7_615_616_512  # Qwen2.5-7B-Instruct
    # Llama-3-8B (8,030,261,248) without its LM head (vocab x hidden) plus a one-logit score head.
    assert shape_from_config(GRM8, classifier=True).params == 8_030_261_248 - 128256 * 4096 + 4096


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    for name, cfg in (("qwen1.5b", QWEN15), ("qwen7b", QWEN7), ("grm8b", GRM8)):
        os.makedirs(root / name)
        (root / name / "config.json").write_text(json.dumps(cfg))  # no weights: the plan reads shapes only
    paths = write_rl_sources(str(root / "src"), n=60)
    write_mixes(
        MixConfig(total=24, val_size=6, paths=paths, pools={"wildjailbreak": 6, "rainbow_teaming": 6, "aegis2": 6}),
        str(root / "tars"),
    )
    return root


def env_for(shapes, tmp_path, policy, **kw):
    env = {
        "SFT_MODEL_PATH": str(shapes / policy),
        "RM_PATH": str(shapes / "grm8b"),
        "TARS_PRESET": "paper",
        "OPENAI_API_KEY": "sk-test-not-a-key",
        "TRAIN_FILE": str(shapes / "tars" / "train.parquet"),
        "VAL_FILE": str(shapes / "tars" / "val.parquet"),
        "CKPT_DIR": str(tmp_path / "ckpt"),
        "NNODES": None,
        "GPU_MEM_GIB": None,
        "TARS_GUARD_URL": None,
        "ROLLOUT_NAME": None,
        "RM_TP": None,
        "RM_GPU_MEM_UTIL": None,
        "GPU_MEM_UTIL": None,
        "VERL_USE_EXTERNAL_MODULES": "",
    }
    env.update(kw)
    return env


def problems(out):
    return [line for line in out.stdout.splitlines() if line.startswith("  - ")]


def test_paper_layouts_fit_with_the_script_defaults(shapes, tmp_path):
    """1.5B on the paper's 4 x 48 GB with GRM-8B served by verl; 7B on 8 x 80 GB."""
    for script, policy in (("run_tars_qwen1.5b.sh", "qwen1.5b"), ("run_tars_qwen7b.sh", "qwen7b")):
        out = run_example(script, env_for(shapes, tmp_path, policy), "--dry-run", *NO_FLASH_ATTN)
        assert out.returncode == 0, (script, out.stdout[-3000:] + out.stderr[-2000:])
        assert "[dry-run] grpo OK" in out.stdout


def test_a_share_that_cannot_hold_grm_says_which_number_to_set(shapes, tmp_path):
    # The old 1.5B defaults: RM_TP=1 and 0.2 x 48 GiB = 9.6 GiB for 14 GiB of bf16 weights.
    out = run_example(
        "run_tars_qwen1.5b.sh",
        env_for(shapes, tmp_path, "qwen1.5b", RM_TP="1", RM_GPU_MEM_UTIL="0.2"),
        "--dry-run",
        *NO_FLASH_ATTN,
    )
    assert out.returncode == 1
    found = [p for p in problems(out) if p.startswith("  - served reward model")]
    assert len(found) == 1, out.stdout
    assert "RM_GPU_MEM_UTIL) gives 9.6 GiB" in found[0] and "need 14.0 GiB" in found[0]
    assert "set RM_GPU_MEM_UTIL >= 0.33" in found[0]


def test_the_whole_gpu_budget_is_checked(shapes, tmp_path):
    out = run_example(
        "run_tars_qwen7b.sh", env_for(shapes, tmp_path, "qwen7b", GPU_MEM_GIB="40"), "--dry-run", *NO_FLASH_ATTN
    )
    assert out.returncode == 1
    plan = [p for p in problems(out) if "memory plan per GPU" in p]
    assert len(plan) == 1 and "optimizer_offload=True" in plan[0] and "> 40 GiB" in plan[0], out.stdout


@pytest.mark.skipif(flash_attn_installed(), reason="flash-attn is installed here")
def test_missing_flash_attn_is_reported_with_the_keys_to_set(shapes, tmp_path):
    out = run_example("run_tars_qwen1.5b.sh", env_for(shapes, tmp_path, "qwen1.5b"), "--dry-run")
    assert out.returncode == 1
    assert any(
        "flash-attn is not installed" in p
        and "attn_implementation=flash_attention_2" in p
        and "use_remove_padding=False" in p
        for p in problems(out)
    ), out.stdout
    # SFT loads the same way (verl's model config); its dry run says so too.
    sft = run_example(
        "run_sft_warmstart_qwen1.5b.sh",
        {
            "MODEL_PATH": str(shapes / "qwen1.5b"),
            "SFT_TRAIN": str(shapes / "tars" / "train.parquet"),
            "SFT_VAL": str(shapes / "tars" / "val.parquet"),
            "SFT_OUT": str(tmp_path / "sft"),
        },
        "--dry-run",
    )
    assert "flash-attn is not installed but model.override_config.attn_implementation" in sft.stdout


def test_multi_node_needs_reachable_scorer_urls_and_secrets_here(shapes, tmp_path):
    env = env_for(shapes, tmp_path, "qwen7b", NNODES="2", TARS_PRESET="open")
    out = run_example("run_tars_qwen7b.sh", env, "--dry-run", *NO_FLASH_ATTN)
    assert out.returncode == 1
    assert any(
        "reward.tars.safety.url=http://127.0.0.1:8001/v1 with trainer.nnodes=2" in p and "TARS_GUARD_URL" in p
        for p in problems(out)
    ), out.stdout
    ok = run_example(
        "run_tars_qwen7b.sh", {**env, "TARS_GUARD_URL": "http://10.1.2.3:8001/v1"}, "--dry-run", *NO_FLASH_ATTN
    )
    assert ok.returncode == 0, ok.stdout[-3000:]
    paper = run_example(
        "run_tars_qwen7b.sh", {**env, "TARS_PRESET": "paper", "OPENAI_API_KEY": None}, "--dry-run", *NO_FLASH_ATTN
    )
    assert "OPENAI_API_KEY is not set" in paper.stdout


def test_sglang_rollout_keeps_the_served_rm_on_vllm(shapes, tmp_path):
    env = env_for(shapes, tmp_path, "qwen7b", ROLLOUT_NAME="sglang")
    out = run_example("run_tars_qwen7b.sh", env, "--dry-run", *NO_FLASH_ATTN)
    assert any(
        "rollout.name=sglang" in p and "/v1/embeddings" in p and "RM_ROLLOUT_NAME=vllm" in p for p in problems(out)
    ), out.stdout
    ok = run_example("run_tars_qwen7b.sh", {**env, "RM_ROLLOUT_NAME": "vllm"}, "--dry-run", *NO_FLASH_ATTN)
    assert not any("/v1/embeddings" in p for p in problems(ok)), ok.stdout


def test_multi_node_sft_fails_fast_with_the_per_node_command(shapes, tmp_path):
    sft = {
        "SFT_TRAIN": str(shapes / "tars" / "train.parquet"),
        "SFT_VAL": str(shapes / "tars" / "val.parquet"),
        "SFT_OUT": str(tmp_path / "sft"),
        "NNODES": "2",
    }
    out = run_example("run_tars_qwen1.5b.sh", sft, timeout=60)  # not a dry run: it must not start torchrun
    assert out.returncode == 2
    assert "NNODES=2 NODE_RANK=<i> MASTER_ADDR=<node 0's address>" in out.stderr
    assert "bash examples/run_sft_warmstart_qwen1.5b.sh" in out.stderr
    assert "SFT_MODEL_PATH=" + str(tmp_path / "sft" / "hf_best") + " bash examples/run_tars_qwen1.5b.sh" in out.stderr
    direct = run_example("run_sft_warmstart_qwen7b.sh", {**sft, "MODEL_PATH": str(shapes / "qwen7b")}, timeout=60)
    assert direct.returncode == 2 and "NODE_RANK=<i>" in direct.stderr, direct.stderr[-2000:]
