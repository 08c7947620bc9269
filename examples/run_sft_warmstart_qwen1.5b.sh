#!/usr/bin/env bash
# TARS SFT warm start, Qwen2.5-1.5B-Instruct (paper: lr 3e-5, 3 epochs, batch 16, stop when val loss rises).
#   bash examples/run_sft_warmstart_qwen1.5b.sh [--dry-run] [--print-cmd] [Hydra overrides for the SFT stage...]
# Knobs (environment) and their defaults: examples/lib/defaults.sh (layout qwen1.5b).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/launch.sh
source "$(dirname "$0")/lib/launch.sh"
tars_launch sft qwen1.5b "$@"
