#!/usr/bin/env bash
# TARS on Qwen2.5-7B-Instruct: SFT warm start (if SFT_MODEL_PATH is not set), then GRPO with the
# `tars` reward manager. The paper's settings are the defaults; everything below is an env knob.
#   bash examples/run_tars_qwen7b.sh [--dry-run] [--print-cmd] [GRPO overrides...] [--sft SFT overrides...]
#     --dry-run    check config, data, models and reward of each stage (no GPU)
#     --print-cmd  print each stage's exact command (shell-quoted, pastes back) and run nothing
#     --sft/--grpo the Hydra overrides that follow go to that stage (before either: GRPO)
#
#   SFT_MODEL_PATH  warm-start checkpoint (default: run the SFT stage, or reuse $SFT_EXPORT)
#   TRAIN_FILE      RL mix parquet           (data/tars/train.parquet; data_prep/build_rl_mix.py)
#   VAL_FILE        validation parquet       (data/eval/strongreject_small.parquet)
#   TARS_PRESET     reward preset            (paper | open | tiny_cpu; swap scorers with overrides)
#   VAL_N           validation samples/prompt (8, at TEMPERATURE 0.6, as the paper)
#   NNODES, GPUS_PER_NODE                    (1 x 8 here)
#   every knob and its default: examples/lib/defaults.sh (layout qwen7b); the paper's fixed GRPO settings:
#   tars_verl/config/tars_grpo_recipe.yaml. The command each stage runs: examples/lib/launch.sh
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/launch.sh
source "$(dirname "$0")/lib/launch.sh"
tars_launch recipe qwen7b "$@"
