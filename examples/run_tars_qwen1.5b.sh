#!/usr/bin/env bash
# TARS on Qwen2.5-1.5B-Instruct (the paper's main model; 4 x A6000, 5-10 hours): SFT warm start
# (if SFT_MODEL_PATH is not set), then GRPO with the `tars` reward manager.
#   bash examples/run_tars_qwen1.5b.sh [--dry-run] [--print-cmd] [GRPO overrides...] [--sft SFT overrides...]
# Knobs (environment) and their defaults: examples/lib/defaults.sh (layout qwen1.5b); more in run_tars_qwen7b.sh.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/launch.sh
source "$(dirname "$0")/lib/launch.sh"
tars_launch recipe qwen1.5b "$@"
