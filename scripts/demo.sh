#!/usr/bin/env bash
# TARS in miniature on CPU (docs/demo.md): a tiny policy goes through the real recipe (SFT warm start, GRPO with the
# `tars` reward, python -m tars_verl.eval before/after) and learns to refuse harmful requests and answer the rest.
#   bash scripts/demo.sh [--lam 1.0] [--seed N] [--steps N] [--out runs/demo]   (python -m tars_verl.learning_demo -h)
#   bash scripts/demo.sh --reward-only [...]   score fixed sample responses through verl's reward loop (tars_verl.demo)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh
if [ "${1:-}" = "--reward-only" ]; then
  shift
  exec .venv/bin/python -m tars_verl.demo "$@"
fi
exec .venv/bin/python -m tars_verl.learning_demo "$@"
