#!/usr/bin/env bash
# Resolve `pip install -e ".[gpu]"` for a Linux x86_64 GPU machine WITHOUT a GPU and without downloading
# wheels, and check it lands on verl 0.9.1's tested stack (torch 2.11.0, vllm 0.24.0, transformers 5.9.0).
#   bash scripts/check_gpu_install.sh [python version, default 3.11]
# Uses `uv pip compile`, which reads wheel metadata only (PEP 658 files or HTTP range requests): about
# 25 s and 55 MB of cache on a 2-core CI machine. (`pip install --dry-run --report` resolves the same but
# downloads every wheel it considers when the index serves no separate metadata: several GB, ~4 min.)
# Needs network access to PyPI; CI runs it as its own step (tests/test_install_on_cpu.py is the offline part).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PYVER=${1:-3.11}
PY=${PYTHON:-python}
if ! "$PY" -m uv --version >/dev/null 2>&1; then "$PY" -m pip install -q "uv>=0.5"; fi
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
"$PY" -m uv pip compile "$ROOT/pyproject.toml" --extra gpu --python-version "$PYVER" \
  --python-platform x86_64-manylinux_2_28 \
  --no-header --quiet -o "$OUT/gpu.txt"
status=0
for pin in torch==2.11.0 vllm==0.24.0 transformers==5.9.0 verl==0.9.1; do
  if grep -qx "$pin" "$OUT/gpu.txt"; then echo "ok  $pin"; else
    echo "MISMATCH: expected $pin, resolved: $(grep -E "^${pin%%==*}==" "$OUT/gpu.txt" || echo none)"; status=1; fi
done
echo "[check_gpu_install] .[gpu] for Python $PYVER resolves to $(grep -c '==' "$OUT/gpu.txt") packages"
exit $status
