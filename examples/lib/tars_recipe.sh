# The whole TARS recipe for one model: the SFT warm start (when no warm-start checkpoint is given), then GRPO.
# Sourced by launch.sh; knobs and defaults: defaults.sh.

# tars_recipe: decide where the warm start comes from, then run the stages that follow from it.
tars_recipe() {
  local policy=$SFT_MODEL_PATH have_sft_data=0 sft_ran=0
  if [ -f "$SFT_TRAIN" ] && [ -f "$SFT_VAL" ]; then have_sft_data=1; fi
  if [ -z "$policy" ]; then
    if [ -f "$SFT_EXPORT/config.json" ]; then
      tars_note "using the warm start exported earlier: $SFT_EXPORT"
      policy=$SFT_EXPORT
    elif [ "$NNODES" -gt 1 ] && [ "$have_sft_data" = 1 ]; then
      # torchrun needs all nodes, this script runs on the head only: run the SFT stage per node first.
      cat >&2 <<MSG
[tars] NNODES=$NNODES and no warm-start checkpoint: the SFT stage runs on every node, so run it first.
  1. On each node i = 0 .. $((NNODES - 1)), with SFT_OUT=$SFT_OUT on a filesystem all nodes share:
       NNODES=$NNODES NODE_RANK=<i> MASTER_ADDR=<node 0's address> MASTER_PORT=$MASTER_PORT SFT_OUT=$SFT_OUT \\
         bash examples/run_sft_warmstart_$TARS_MODEL.sh
  2. Then GRPO, once, on the Ray head (ray start --head here, ray start --address=<head>:6379 elsewhere):
       NNODES=$NNODES SFT_MODEL_PATH=$SFT_EXPORT bash examples/run_tars_$TARS_MODEL.sh
MSG
      exit 2
    elif [ "$have_sft_data" = 1 ]; then
      tars_note "SFT_MODEL_PATH is not set: running the SFT warm start on $SFT_TRAIN first"
      tars_sft_stage
      sft_ran=1
      # Nothing is trained in a dry run: check GRPO against the base model, which has the same shape.
      if [ "$DRY_RUN" = 1 ]; then policy=$MODEL_PATH; else policy=$SFT_EXPORT; fi
    else
      cat >&2 <<MSG
[tars] No warm-start checkpoint. Either
  - set SFT_MODEL_PATH to one (your own, or the released $RELEASED_SFT), or
  - build SFT traces (python data_prep/build_sft_traces.py generate ... --out data/sft) so that
    $SFT_TRAIN and $SFT_VAL exist; this script then runs the SFT warm start first.
MSG
      exit 2
    fi
  fi
  if [ "$sft_ran" = 0 ] && [ "${#SFT_ARGS[@]}" -gt 0 ]; then
    tars_note "no SFT stage runs (the warm start is $policy): the ${#SFT_ARGS[@]} override(s) after --sft are unused"
  fi
  tars_grpo_stage "$policy"
}
