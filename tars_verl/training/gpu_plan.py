"""GPU checks for ``--dry-run``: what would fail only once GPUs are allocated, found on any machine.

Each function returns a list of problems, each naming the config key (and the launch-script knob)
to set and the value that works. Nothing is loaded and no weights are downloaded: model sizes come
from ``config.json`` (a local folder, or the Hugging Face cache).

- :func:`check_flash_attn`: verl loads models with ``attn_implementation=flash_attention_2`` unless
  ``override_config.attn_implementation`` says otherwise, and ``use_remove_padding=True`` packs
  sequences, which only a varlen attention kernel handles; both need the ``flash_attn`` package.
- :func:`check_memory_plan`: one GPU of the colocated layout (actor, reference, vLLM rollout and the
  reward model verl serves all share each GPU): FSDP shards of the policy's fp32 weights, gradients
  and Adam state, the reference's bf16 shard, and the two vLLM ``gpu_memory_utilization`` shares,
  each of which must hold its bf16 weights (divided by tensor parallelism) plus KV cache for one
  ``max_prompt_length + max_response_length`` sequence.
- :func:`check_sglang_served_rm`: verl queries an SGLang-served reward model through
  ``/v1/embeddings``; TARS's ``served_reward_model`` posts vLLM's ``/classify``.

The GPU size comes from ``GPU_MEM_GIB`` (the launch scripts set the paper's layout), else from the
first visible GPU; without either the memory plan is skipped with a note.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass

from omegaconf import DictConfig, OmegaConf

from tars_verl.data.files import read_json_file

GIB = 1024**3
# CUDA context, NCCL buffers and allocator slack per process group on one GPU.
CUDA_CONTEXT_GIB = 1.0
# vLLM's own non-KV needs inside its share: activations of the profiling run, CUDA graphs, sampler.
VLLM_OVERHEAD_GIB = 1.0


@dataclass
class ModelShape:
    """What the memory plan needs from a ``config.json``."""

    params: int
    layers: int
    kv_heads: int
    head_dim: int

    def kv_bytes_per_token(self, tp: int) -> float:
        """bf16 K and V of one token on one GPU of a tensor-parallel group (KV heads are split, or replicated)."""
        heads_per_gpu = max(self.kv_heads / max(tp, 1), 1.0)
        return 2 * self.layers * heads_per_gpu * self.head_dim * 2


def shape_from_config(cfg: dict, classifier: bool = False) -> ModelShape:
    """Parameter count of a Llama/Qwen/Mistral-style decoder from its config (embeddings, attention, MLP, norms)."""
    text = cfg.get("text_config") or cfg
    h, layers = int(text["hidden_size"]), int(text["num_hidden_layers"])
    heads = int(text["num_attention_heads"])
    kv_heads = int(text.get("num_key_value_heads") or heads)
    head_dim = int(text.get("head_dim") or h // heads)
    inter, vocab = int(text["intermediate_size"]), int(text["vocab_size"])
    attn = h * heads * head_dim + 2 * h * kv_heads * head_dim + heads * head_dim * h
    if text.get("attention_bias") or text.get("model_type", "").startswith("qwen2"):
        attn += heads * head_dim + 2 * kv_heads * head_dim  # q/k/v biases (Qwen2)
    per_layer = attn + 3 * h * inter + 2 * h
    if classifier:
        head = h * int(cfg.get("num_labels") or len(cfg.get("id2label") or {0: 0}))
    else:
        head = 0 if cfg.get("tie_word_embeddings", text.get("tie_word_embeddings", False)) else vocab * h
    return ModelShape(vocab * h + layers * per_layer + h + head, layers, kv_heads, head_dim)


def read_model_config(path: str) -> dict | None:
    """``config.json`` of a local folder or of a hub id already in the Hugging Face cache; never downloads."""
    local = os.path.join(os.path.expanduser(path), "config.json")
    if os.path.isfile(local):
        return read_json_file(local, "model config")
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(path, "config.json")
    except Exception:  # noqa: BLE001 - not a hub id
        return None
    if isinstance(cached, str) and os.path.isfile(cached):
        return read_json_file(cached, "model config")
    return None


def gpu_memory_gib() -> float | None:
    """``GPU_MEM_GIB`` if set, else the first visible GPU's memory, else None."""
    if os.environ.get("GPU_MEM_GIB"):
        return float(os.environ["GPU_MEM_GIB"])
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_properties(0).total_memory / GIB
    except Exception:  # noqa: BLE001
        pass
    return None


def _on_gpu(cfg: DictConfig) -> bool:
    return OmegaConf.select(cfg, "trainer.device", default="cuda") not in ("cpu",)


def flash_attn_installed() -> bool:
    return importlib.util.find_spec("flash_attn") is not None


def check_flash_attn(cfg: DictConfig, model_key: str) -> list[str]:
    """flash-attn must be importable when the model at ``model_key`` asks for it (verl's defaults do)."""
    if not _on_gpu(cfg) or flash_attn_installed():
        return []
    model = OmegaConf.select(cfg, model_key)
    attn = OmegaConf.select(model, "override_config.attn_implementation", default=None) or "flash_attention_2"
    remove_padding = bool(OmegaConf.select(model, "use_remove_padding", default=False))
    wants = []
    if attn == "flash_attention_2":
        wants.append(f"{model_key}.override_config.attn_implementation={attn} (verl's default)")
    if remove_padding:
        wants.append(f"{model_key}.use_remove_padding=True (packed sequences need flash-attn's varlen kernels)")
    if not wants:
        return []
    return [
        f"flash-attn is not installed but {' and '.join(wants)}: install flash-attn built for this torch "
        "(docs/gpu_install.md), or run without it: "
        f"+{model_key}.override_config.attn_implementation=sdpa {model_key}.use_remove_padding=False (slower)"
    ]


def _share_problem(
    what: str,
    util_key: str,
    knob: str,
    util: float,
    gpu: float,
    weights: float,
    kv: float,
    tp: int,
    tp_key: str,
    tp_knob: str,
    seq: int,
) -> str | None:
    need = weights + kv + VLLM_OVERHEAD_GIB
    have = util * gpu
    if have >= need:
        return None
    return (
        f"{what}: {util_key}={util} ({knob}) gives {have:.1f} GiB of a {gpu:.0f} GiB GPU, but its bf16 weights "
        f"need {weights:.1f} GiB at {tp_key}={tp} ({tp_knob}), plus {kv:.2f} GiB KV cache for one "
        f"{seq}-token sequence and ~{VLLM_OVERHEAD_GIB:.0f} GiB for vLLM: set {knob} >= {need / gpu + 0.005:.2f}"
        f" or raise {tp_knob}"
    )


def check_memory_plan(cfg: DictConfig) -> list[str]:
    """The per-GPU memory plan of the colocated GRPO layout; a problem for each share that cannot fit."""
    if not _on_gpu(cfg):
        return []
    gpu = gpu_memory_gib()
    if gpu is None:
        print("[dry-run] note: memory plan skipped: set GPU_MEM_GIB (memory of one GPU) or run on a GPU node")
        return []
    arr = cfg.actor_rollout_ref
    policy_cfg = read_model_config(arr.model.path)
    if policy_cfg is None:
        print(
            f"[dry-run] note: memory plan skipped: no local config.json for {arr.model.path} "
            f"(huggingface-cli download {arr.model.path} config.json)"
        )
        return []
    policy = shape_from_config(policy_cfg)
    world = int(cfg.trainer.nnodes) * int(cfg.trainer.n_gpus_per_node)
    seq = int(cfg.data.max_prompt_length) + int(cfg.data.max_response_length)
    problems: list[str] = []

    fsdp = arr.actor.get("fsdp_config", {})
    actor = (0 if fsdp.get("param_offload", False) else 8) + (0 if fsdp.get("optimizer_offload", False) else 8)
    actor_gib = actor * policy.params / world / GIB  # fp32 weights + grads, Adam m and v; FSDP full shard
    uses_ref = bool(arr.actor.get("use_kl_loss", False)) or bool(cfg.algorithm.get("use_kl_in_reward", False))
    ref_offload = OmegaConf.select(arr, "ref.fsdp_config.param_offload", default=False)
    ref_gib = 2 * policy.params / world / GIB if uses_ref and not ref_offload else 0.0

    tp = int(arr.rollout.tensor_model_parallel_size)
    util = float(arr.rollout.gpu_memory_utilization)
    p = _share_problem(
        f"rollout ({arr.model.path}, {policy.params / 1e9:.2f}B params)",
        "actor_rollout_ref.rollout.gpu_memory_utilization",
        "GPU_MEM_UTIL",
        util,
        gpu,
        2 * policy.params / tp / GIB,
        seq * policy.kv_bytes_per_token(tp) / GIB,
        tp,
        "actor_rollout_ref.rollout.tensor_model_parallel_size",
        "ROLLOUT_TP",
        seq,
    )
    problems += [p] if p else []

    rm = cfg.reward.reward_model
    rm_util = 0.0
    if rm.enable and rm.model_path:
        rm_cfg = read_model_config(rm.model_path)
        if rm_cfg is None:
            print(
                f"[dry-run] note: reward model share not checked: no local config.json for {rm.model_path} "
                f"(huggingface-cli download {rm.model_path} config.json)"
            )
        else:
            rm_shape = shape_from_config(rm_cfg, classifier=True)
            rm_tp = int(rm.rollout.tensor_model_parallel_size)
            rm_util = float(rm.rollout.gpu_memory_utilization)
            p = _share_problem(
                f"served reward model ({rm.model_path}, {rm_shape.params / 1e9:.2f}B params)",
                "reward.reward_model.rollout.gpu_memory_utilization",
                "RM_GPU_MEM_UTIL",
                rm_util,
                gpu,
                2 * rm_shape.params / rm_tp / GIB,
                seq * rm_shape.kv_bytes_per_token(rm_tp) / GIB,
                rm_tp,
                "reward.reward_model.rollout.tensor_model_parallel_size",
                "RM_TP",
                seq,
            )
            problems += [p] if p else []

    total = actor_gib + ref_gib + (util + rm_util) * gpu + CUDA_CONTEXT_GIB
    if total > gpu:
        spare = gpu - actor_gib - ref_gib - CUDA_CONTEXT_GIB
        problems.append(
            f"memory plan per GPU: actor {actor_gib:.1f} GiB (FSDP shard of fp32 weights, grads, Adam over {world} "
            f"GPUs) + reference {ref_gib:.1f} + rollout {util * gpu:.1f} (GPU_MEM_UTIL={util}) + reward model "
            f"{rm_util * gpu:.1f} (RM_GPU_MEM_UTIL={rm_util}) + CUDA context {CUDA_CONTEXT_GIB:.0f} = {total:.1f} GiB "
            f"> {gpu:.0f} GiB: keep GPU_MEM_UTIL + RM_GPU_MEM_UTIL <= {max(spare, 0) / gpu:.2f}, or set "
            "actor_rollout_ref.actor.fsdp_config.optimizer_offload=True, or use more GPUs"
        )
    return problems


def check_sglang_served_rm(cfg: DictConfig) -> list[str]:
    """verl serves a reward model with SGLang through /v1/embeddings; served_reward_model posts /classify."""
    rm = cfg.reward.reward_model
    if not rm.enable or OmegaConf.select(rm, "rollout.name") != "sglang":
        return []
    tars = OmegaConf.select(cfg, "reward.tars")
    uses_verl_url = [
        role
        for role in ("safety", "helpfulness")
        if tars is not None and OmegaConf.select(tars, f"{role}.url", default=None) == "verl"
    ]
    if not uses_verl_url:
        return []
    return [
        f"reward.reward_model.rollout.name=sglang: verl serves the reward model over /v1/embeddings, but "
        f"reward.tars.{uses_verl_url[0]} (url: verl) posts vLLM's /classify: serve the reward model with vLLM "
        "(reward.reward_model.rollout.name=vllm; the launch scripts' RM_ROLLOUT_NAME=vllm) while the policy "
        "rolls out with sglang"
    ]


def check_gpu_grpo(cfg: DictConfig) -> list[str]:
    """Every GPU check of a GRPO config (``tars_verl.training.dry_run grpo``)."""
    return check_flash_attn(cfg, "actor_rollout_ref.model") + check_memory_plan(cfg) + check_sglang_served_rm(cfg)


def check_gpu_sft(cfg: DictConfig) -> list[str]:
    """Every GPU check of an SFT config (``tars_verl.training.dry_run sft``)."""
    return check_flash_attn(cfg, "model")
