#!/usr/bin/env bash
# The test suite, slow tests included (CPU only, no hub, no network beyond 127.0.0.1), and every docstring
# example in the package (--doctest-modules tars_verl).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh
bash scripts/setup_vllm_venv.sh  # .venv-vllm: the real vLLM server the served-scorer tests start
# Lint and format as verl does (ruff, 120 columns; settings in pyproject.toml): fails before any test runs.
.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/python -m pytest -q -p no:cacheprovider --doctest-modules "$@" tests tars_verl
