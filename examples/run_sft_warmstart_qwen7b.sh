#!/usr/bin/env bash
# TARS SFT warm start, Qwen2.5-7B-Instruct (paper: lr 3e-5, 3 epochs, batch 16, stop when val loss rises).
#   bash examples/run_sft_warmstart_qwen7b.sh [--dry-run] [hydra overrides...]
# Knobs (environment): see examples/lib/sft_warmstart.sh
set -euo pipefail
export MODEL_PATH=${MODEL_PATH:-Qwen/Qwen2.5-7B-Instruct}
export NPROC_PER_NODE=${NPROC_PER_NODE:-8}
export SFT_MICRO_BATCH=${SFT_MICRO_BATCH:-1}
export SFT_OUT=${SFT_OUT:-checkpoints/tars_sft_qwen7b}
export SFT_SCRIPT=run_sft_warmstart_qwen7b.sh
exec bash "$(dirname "$0")/lib/sft_warmstart.sh" "$@"
