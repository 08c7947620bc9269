#!/usr/bin/env bash
# The whole TARS recipe for one model: SFT warm start (when no warm-start checkpoint is given), then GRPO.
# Called by run_tars_qwen{1.5b,7b}.sh with MODEL_PATH, SFT_* and GRPO knobs in the environment.
set -euo pipefail
LIB=$(cd "$(dirname "$0")" && pwd)

DRY_RUN=${TARS_DRY_RUN:-0}
for arg in "$@"; do [ "$arg" = "--dry-run" ] && DRY_RUN=1; done
export TARS_DRY_RUN=$DRY_RUN

SFT_TRAIN=${SFT_TRAIN:-data/sft/sft_train.parquet}
SFT_VAL=${SFT_VAL:-data/sft/sft_val.parquet}
export SFT_EXPORT=${SFT_EXPORT:-${SFT_OUT}/hf_best}

if [ -z "${SFT_MODEL_PATH:-}" ]; then
  if [ -f "$SFT_EXPORT/config.json" ]; then
    echo "[tars] using the warm start exported earlier: $SFT_EXPORT"
    export SFT_MODEL_PATH=$SFT_EXPORT
  elif [ "${NNODES:-1}" -gt 1 ] && [ -f "$SFT_TRAIN" ] && [ -f "$SFT_VAL" ]; then
    # torchrun needs all nodes, this script runs on the head only: run the SFT stage per node first.
    cat >&2 <<MSG
[tars] NNODES=$NNODES and no warm-start checkpoint: the SFT stage runs on every node, so run it first.
  1. On each node i = 0 .. $((NNODES - 1)), with SFT_OUT=$SFT_OUT on a filesystem all nodes share:
       NNODES=$NNODES NODE_RANK=<i> MASTER_ADDR=<node 0's address> MASTER_PORT=29500 SFT_OUT=$SFT_OUT \\
         bash examples/${SFT_SCRIPT:-run_sft_warmstart_qwen7b.sh}
  2. Then GRPO, once, on the Ray head (ray start --head here, ray start --address=<head>:6379 elsewhere):
       NNODES=$NNODES SFT_MODEL_PATH=$SFT_EXPORT bash examples/${RUN_SCRIPT:-run_tars_qwen7b.sh}
MSG
    exit 2
  elif [ -f "$SFT_TRAIN" ] && [ -f "$SFT_VAL" ]; then
    echo "[tars] SFT_MODEL_PATH is not set: running the SFT warm start on $SFT_TRAIN first"
    # SFT_EXTRA_ARGS: Hydra overrides for the SFT stage only (the script's own arguments go to GRPO).
    # shellcheck disable=SC2086
    bash "$LIB/sft_warmstart.sh" ${SFT_EXTRA_ARGS:-}
    if [ "$DRY_RUN" = "1" ]; then
      # Nothing is trained in a dry run: check GRPO against the base model, which has the same shape.
      export SFT_MODEL_PATH=$MODEL_PATH
    else
      export SFT_MODEL_PATH=$SFT_EXPORT
    fi
  else
    cat >&2 <<MSG
[tars] No warm-start checkpoint. Either
  - set SFT_MODEL_PATH to one (your own, or the released ${RELEASED_SFT:-danielkty22/TARS-SFT-7B}), or
  - build SFT traces (python data_prep/build_sft_traces.py generate ... --out data/sft) so that
    $SFT_TRAIN and $SFT_VAL exist; this script then runs the SFT warm start first.
MSG
    exit 2
  fi
fi

exec bash "$LIB/tars_grpo.sh" "$@"
