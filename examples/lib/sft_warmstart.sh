# The SFT warm start on verl's SFT trainer (tars_verl.training.sft adds early stopping on validation loss), then node 0
# exports the best checkpoint with verl's model merger. Sourced by launch.sh; knobs and defaults: defaults.sh.

# tars_sft_stage: the SFT stage's commands with SFT_ARGS appended, run (or printed, or dry-run).
tars_sft_stage() {
  local torchrun_flags=()
  if [ -n "$TORCHRUN_ARGS" ]; then
    read -r -a torchrun_flags <<<"$TORCHRUN_ARGS"  # flags have no spaces; read -a splits on them, never globs
  elif [ "$NNODES" -gt 1 ]; then
    if [ -z "$NODE_RANK" ] || [ -z "$MASTER_ADDR" ]; then
      cat >&2 <<MSG
[tars] NNODES=$NNODES: the SFT stage runs torchrun on every node; a --standalone run on one node would wait
forever for the others. Set SFT_OUT to a folder on a filesystem every node shares, then run on each node
i = 0 .. $((NNODES - 1)) (node 0 first; it links \$SFT_OUT/best and exports \$SFT_EXPORT):
  NNODES=$NNODES NODE_RANK=<i> MASTER_ADDR=<node 0's address> MASTER_PORT=$MASTER_PORT SFT_OUT=$SFT_OUT \\
    bash examples/run_sft_warmstart_$TARS_MODEL.sh
MSG
      exit 2
    fi
    torchrun_flags=(--node_rank="$NODE_RANK" --master_addr="$MASTER_ADDR" --master_port="$MASTER_PORT")
  else
    torchrun_flags=(--standalone)
  fi
  # Node 0 (or a single node) exports; torchrun takes --node_rank=N, --node-rank=N or the value as the next word.
  local flag node_rank=0
  for flag in "${torchrun_flags[@]}"; do
    case "$flag" in
      --node_rank=* | --node-rank=*) node_rank=${flag#*=} ;;
      --node_rank | --node-rank) node_rank= ;;
      *) [ -n "$node_rank" ] || node_rank=$flag ;;
    esac
  done

  local overrides=(
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
    "${SFT_ARGS[@]}"
  )
  tars_stage "SFT stage: $SFT_TRAIN -> $SFT_OUT"
  if [ "$DRY_RUN" = 1 ]; then
    tars_run python -m tars_verl.training.dry_run sft "${overrides[@]}"
    return
  fi
  tars_run torchrun --nnodes="$NNODES" --nproc_per_node="$NPROC_PER_NODE" "${torchrun_flags[@]}" \
    -m tars_verl.training.sft "${overrides[@]}"
  if [ "$node_rank" != 0 ]; then
    tars_note "SFT on node $node_rank; node 0 exports the best checkpoint to $SFT_EXPORT"
    return
  fi
  # The lowest-validation-loss checkpoint (tars_sft links it as $SFT_OUT/best), as a Hugging Face model.
  tars_run python -m verl.model_merger merge --backend fsdp --local_dir "$SFT_OUT/best" --target_dir "$SFT_EXPORT"
  if [ "$PRINT_CMD" != 1 ]; then
    echo "SFT warm start exported to $SFT_EXPORT (set SFT_MODEL_PATH=$SFT_EXPORT for the GRPO stage)"
  fi
}
