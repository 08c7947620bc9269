#!/usr/bin/env bash
# TARS SFT warm start on verl's SFT trainer, shared by run_sft_warmstart_qwen{1.5b,7b}.sh.
# Every knob is an environment variable (defaults: the paper's "lightweight" SFT); extra Hydra
# overrides pass through ("$@"). --dry-run (or TARS_DRY_RUN=1) checks the config and exits.
set -euo pipefail

# shellcheck source=args.sh
source "$(dirname "${BASH_SOURCE[0]}")/args.sh"

MODEL_PATH=${MODEL_PATH:?set MODEL_PATH (e.g. Qwen/Qwen2.5-7B-Instruct)}
SFT_TRAIN=${SFT_TRAIN:-data/sft/sft_train.parquet}   # data_prep/build_sft_traces.py
SFT_VAL=${SFT_VAL:-data/sft/sft_val.parquet}
SFT_OUT=${SFT_OUT:-checkpoints/tars_sft}
NNODES=${NNODES:-1}
NPROC_PER_NODE=${NPROC_PER_NODE:-8}
SFT_LR=${SFT_LR:-3e-5}
SFT_EPOCHS=${SFT_EPOCHS:-3}
SFT_BATCH=${SFT_BATCH:-16}
SFT_MICRO_BATCH=${SFT_MICRO_BATCH:-2}
SFT_MAX_LENGTH=${SFT_MAX_LENGTH:-8192}
SFT_PATIENCE=${SFT_PATIENCE:-1}
SFT_EXPORT=${SFT_EXPORT:-$SFT_OUT/hf_best}   # the Hugging Face checkpoint the RL stage loads
# Multi-node (torchrun on EVERY node): NNODES=N NODE_RANK=i MASTER_ADDR=<node 0's address> [MASTER_PORT=29500],
# with SFT_OUT on a filesystem all nodes share (each rank writes its checkpoint shard there; node 0 links
# `best` and exports it). Or give TORCHRUN_ARGS yourself (it then must include --node_rank).
NODE_RANK=${NODE_RANK:-}
MASTER_ADDR=${MASTER_ADDR:-}
MASTER_PORT=${MASTER_PORT:-29500}
if [ "$NNODES" -gt 1 ] && [ -z "${TORCHRUN_ARGS:-}" ]; then
  if [ -z "$NODE_RANK" ] || [ -z "$MASTER_ADDR" ]; then
    cat >&2 <<MSG
[tars] NNODES=$NNODES: the SFT stage runs torchrun on every node; a --standalone run on one node would wait
forever for the others. Set SFT_OUT to a folder on a filesystem every node shares, then run on each node
i = 0 .. $((NNODES - 1)) (node 0 first; it links \$SFT_OUT/best and exports \$SFT_EXPORT):
  NNODES=$NNODES NODE_RANK=<i> MASTER_ADDR=<node 0's address> MASTER_PORT=$MASTER_PORT SFT_OUT=$SFT_OUT \\
    bash examples/${SFT_SCRIPT:-run_sft_warmstart_qwen7b.sh}
MSG
    exit 2
  fi
  TORCHRUN_ARGS="--node_rank=$NODE_RANK --master_addr=$MASTER_ADDR --master_port=$MASTER_PORT"
fi
TORCHRUN_ARGS=${TORCHRUN_ARGS:---standalone}
case " $TORCHRUN_ARGS " in
  *" --node_rank=0 "*|*"--standalone"*) IS_NODE0=1 ;;
  *"--node_rank="*) IS_NODE0=0 ;;
  *) IS_NODE0=1 ;;
esac

OVERRIDES=(
  model.path="$MODEL_PATH"
  data.train_files="$SFT_TRAIN"
  data.val_files="$SFT_VAL"
  data.train_batch_size="$SFT_BATCH"
  data.micro_batch_size_per_gpu="$SFT_MICRO_BATCH"
  data.max_length="$SFT_MAX_LENGTH"
  optim.lr="$SFT_LR"
  trainer.total_epochs="$SFT_EPOCHS"
  trainer.nnodes="$NNODES"
  trainer.n_gpus_per_node="$NPROC_PER_NODE"
  trainer.default_local_dir="$SFT_OUT"
  tars_sft.patience="$SFT_PATIENCE"
  hydra.run.dir="$SFT_OUT/hydra"
  "${EXTRA[@]}"
)

if [ "$DRY_RUN" = "1" ]; then
  exec python -m tars_verl.training.dry_run sft "${OVERRIDES[@]}"
fi

# shellcheck disable=SC2086  # TORCHRUN_ARGS is a list of flags
torchrun --nnodes="$NNODES" --nproc_per_node="$NPROC_PER_NODE" $TORCHRUN_ARGS -m tars_verl.training.sft "${OVERRIDES[@]}"

if [ "$IS_NODE0" != "1" ]; then
  echo "[tars] SFT done on this node; node 0 exports the best checkpoint to $SFT_EXPORT"
  exit 0
fi
# Export the lowest-validation-loss checkpoint (tars_sft links it as $SFT_OUT/best) with verl's merger.
python -m verl.model_merger merge --backend fsdp --local_dir "$SFT_OUT/best" --target_dir "$SFT_EXPORT"
echo "SFT warm start exported to $SFT_EXPORT (set SFT_MODEL_PATH=$SFT_EXPORT for the GRPO stage)"
