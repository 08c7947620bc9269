#!/usr/bin/env bash
# The main job's embedded default: score sample responses through verl's reward loop with the
# TARS reward manager (tiny local CPU models) and print the per-prompt-type table.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh
exec .venv/bin/python -m tars_verl.demo "$@"
