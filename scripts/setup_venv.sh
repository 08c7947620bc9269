#!/usr/bin/env bash
# Create .venv and install tars-verl with its test extra. Safe to re-run (skips when up to date).
# torch first: on machines without CUDA, torch==2.13.0 resolves to a local CPU build; installing the
# project before it would pull several GB of CUDA wheels. Set TARS_TORCH_SPEC to choose another torch.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TORCH_SPEC=${TARS_TORCH_SPEC:-torch==2.13.0}
stamp=.venv/.tars_installed
if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ]; then
  exit 0
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "$TORCH_SPEC"
.venv/bin/python -m pip install -q -e ".[test]" "$TORCH_SPEC"
touch "$stamp"
