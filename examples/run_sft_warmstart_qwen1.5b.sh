#!/usr/bin/env bash
# TARS SFT warm start, Qwen2.5-1.5B-Instruct (paper: lr 3e-5, 3 epochs, batch 16, stop when val loss rises).
#   bash examples/run_sft_warmstart_qwen1.5b.sh [--dry-run] [hydra overrides...]
# Knobs (environment): MODEL_PATH SFT_TRAIN SFT_VAL SFT_OUT NPROC_PER_NODE NNODES SFT_LR SFT_EPOCHS SFT_BATCH
#   SFT_MICRO_BATCH SFT_MAX_LENGTH SFT_PATIENCE SFT_EXPORT TORCHRUN_ARGS (see examples/lib/sft_warmstart.sh)
set -euo pipefail
export MODEL_PATH=${MODEL_PATH:-Qwen/Qwen2.5-1.5B-Instruct}
export NPROC_PER_NODE=${NPROC_PER_NODE:-4}
export SFT_MICRO_BATCH=${SFT_MICRO_BATCH:-4}
export SFT_OUT=${SFT_OUT:-checkpoints/tars_sft_qwen1.5b}
export SFT_SCRIPT=run_sft_warmstart_qwen1.5b.sh
exec bash "$(dirname "$0")/lib/sft_warmstart.sh" "$@"
