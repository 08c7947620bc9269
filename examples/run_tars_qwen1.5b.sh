#!/usr/bin/env bash
# TARS on Qwen2.5-1.5B-Instruct (the paper's main model; 4 x A6000, 5-10 hours): SFT warm start
# (if SFT_MODEL_PATH is not set), then GRPO with the `tars` reward manager.
#   bash examples/run_tars_qwen1.5b.sh [--dry-run] [hydra overrides for the GRPO stage...]
# Knobs: see examples/run_tars_qwen7b.sh and examples/lib/tars_grpo.sh
set -euo pipefail
export MODEL_PATH=${MODEL_PATH:-Qwen/Qwen2.5-1.5B-Instruct}
export RELEASED_SFT=danielkty22/TARS-SFT-1.5B
export SFT_OUT=${SFT_OUT:-checkpoints/tars_sft_qwen1.5b}
export NPROC_PER_NODE=${NPROC_PER_NODE:-4}
export SFT_MICRO_BATCH=${SFT_MICRO_BATCH:-4}
export GPUS_PER_NODE=${GPUS_PER_NODE:-4}
export ROLLOUT_TP=${ROLLOUT_TP:-1}
# GRM-llama3-8B's bf16 weights are 14 GiB: TP 2 puts 7 GiB per GPU, in a 0.25 x 48 GiB = 12 GiB share.
export RM_TP=${RM_TP:-2}
export RM_GPU_MEM_UTIL=${RM_GPU_MEM_UTIL:-0.25}
export EXPERIMENT=${EXPERIMENT:-tars_qwen1.5b}
export SFT_SCRIPT=run_sft_warmstart_qwen1.5b.sh RUN_SCRIPT=run_tars_qwen1.5b.sh
export GPU_MEM_GIB=${GPU_MEM_GIB:-48}   # memory of one GPU, for the --dry-run memory plan
exec bash "$(dirname "$0")/lib/tars_recipe.sh" "$@"
