#!/usr/bin/env bash
# TARS on Qwen2.5-7B-Instruct: SFT warm start (if SFT_MODEL_PATH is not set), then GRPO with the
# `tars` reward manager. The paper's settings are the defaults; everything below is an env knob.
#   bash examples/run_tars_qwen7b.sh [--dry-run] [hydra overrides for the GRPO stage...]
#
#   SFT_MODEL_PATH  warm-start checkpoint (default: run the SFT stage, or reuse $SFT_OUT/hf_best)
#   TRAIN_FILE      RL mix parquet           (data/tars/train.parquet; data_prep/build_rl_mix.py)
#   VAL_FILE        validation parquet       (data/eval/strongreject_small.parquet)
#   TARS_PRESET     reward preset            (paper | open | tiny_cpu; swap scorers with overrides)
#   VAL_N           validation samples/prompt (8, at TEMPERATURE 0.6, as the paper)
#   NNODES, GPUS_PER_NODE                    (1 x 8 here)
#   more: examples/lib/tars_grpo.sh (GRPO), examples/lib/sft_warmstart.sh (SFT)
set -euo pipefail
export MODEL_PATH=${MODEL_PATH:-Qwen/Qwen2.5-7B-Instruct}
export RELEASED_SFT=danielkty22/TARS-SFT-7B
export SFT_OUT=${SFT_OUT:-checkpoints/tars_sft_qwen7b}
export NPROC_PER_NODE=${NPROC_PER_NODE:-8}
export SFT_MICRO_BATCH=${SFT_MICRO_BATCH:-1}
export GPUS_PER_NODE=${GPUS_PER_NODE:-8}
export ROLLOUT_TP=${ROLLOUT_TP:-2}
export RM_TP=${RM_TP:-2}
export EXPERIMENT=${EXPERIMENT:-tars_qwen7b}
export SFT_SCRIPT=run_sft_warmstart_qwen7b.sh RUN_SCRIPT=run_tars_qwen7b.sh
export GPU_MEM_GIB=${GPU_MEM_GIB:-80}   # memory of one GPU, for the --dry-run memory plan
exec bash "$(dirname "$0")/lib/tars_recipe.sh" "$@"
