# The example launch scripts' one library: `tars_launch recipe|sft MODEL "$@"` (at the bottom) runs the TARS recipe
# (the SFT warm start unless SFT_MODEL_PATH is set, then GRPO) or the SFT stage alone, in one shell, so the stages
# share plain shell variables and arrays (nothing is exported from one script to the next).
#   knobs and their defaults: defaults.sh (sourced here); the paper's fixed GRPO settings:
#   tars_verl/config/tars_grpo_recipe.yaml. Each stage is one function that builds one Hydra override array.
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/defaults.sh"

TARS_USAGE="usage: bash examples/<script> [--dry-run] [--print-cmd] [OVERRIDE...] [--sft OVERRIDE...] [--grpo OVERRIDE...]
  --dry-run    check each stage's config, data, models and reward (python -m tars_verl.training.dry_run); no GPU, no training
  --print-cmd  print each stage's exact command, shell-quoted (paste it to run it), and run nothing
  --sft/--grpo the Hydra overrides that follow go to that stage (before either: the script's own stage)
  -h, --help   this text
  OVERRIDE     a Hydra override (key=value, +key=value, ~key, group@pkg=option), kept as ONE argument
  knobs: environment variables, every default in examples/lib/defaults.sh"

# -- the command line -----------------------------------------------------------------------------------------------
# tars_parse_args recipe|sft "$@": sets DRY_RUN, PRINT_CMD and the arrays SFT_ARGS and GRPO_ARGS. Overrides before
# any separator go to the script's own stage (GRPO for run_tars_*.sh, SFT for run_sft_warmstart_*.sh). Each one stays
# ONE argument, spaces and quotes included: they live in bash arrays, never in a string the shell splits again.
# Every argument is read before anything runs: a misspelt flag (--dryrun, -n) stops here instead of reaching Hydra
# as an override while the real job starts.
tars_parse_args() {
  local stage=grpo only=  # the recipe runs both stages, GRPO's overrides first; run_sft_warmstart_*.sh only SFT
  if [ "$1" = sft ]; then stage=sft only=sft; fi
  shift
  if [ -n "${SFT_EXTRA_ARGS:-}" ]; then
    # The old way split this string on spaces, so an override with a space broke into pieces; not read any more.
    echo "[tars] SFT_EXTRA_ARGS is no longer read: pass the SFT stage's overrides after --sft, each as one" \
      "argument (bash examples/<script> [GRPO overrides] --sft <SFT overrides>), and unset SFT_EXTRA_ARGS" >&2
    exit 2
  fi
  DRY_RUN=$TARS_DRY_RUN
  PRINT_CMD=0
  SFT_ARGS=()
  GRPO_ARGS=()
  local arg
  for arg in "$@"; do
    case "$arg" in
      --dry-run) DRY_RUN=1 ;;
      --print-cmd) PRINT_CMD=1 ;;
      --sft | --grpo)
        stage=${arg#--}
        if [ -n "$only" ] && [ "$stage" != "$only" ]; then
          echo "[tars] $arg: this script runs the $only stage only (run_tars_*.sh runs both)" >&2
          exit 2
        fi
        ;;
      -h | --help)
        echo "$TARS_USAGE"
        exit 0
        ;;
      -*)
        echo "[tars] unknown option '$arg'; the options are --dry-run, --print-cmd, --sft, --grpo and -h/--help" \
          "(a Hydra override never starts with '-'). Nothing was run." >&2
        exit 2
        ;;
      *) if [ "$stage" = sft ]; then SFT_ARGS+=("$arg"); else GRPO_ARGS+=("$arg"); fi ;;
    esac
  done
}

# tars_check_knobs: every numeric knob set in the environment is a number, before bash does arithmetic with it
# (`$((MAX_PROMPT + 1))` reads MAX_PROMPT=abc as an unset variable, and `[ "$NNODES" -gt 1 ]` is simply false for
# NNODES=abc: the run would go on as a single node) and before any command runs.
tars_check_knobs() {
  local name
  for name in "${TARS_WHOLE_NUMBER_KNOBS[@]}"; do tars_check_knob "$name" '^[0-9]+$' "a whole number"; done
  for name in "${TARS_STEP_KNOBS[@]}"; do tars_check_knob "$name" '^(-1|[0-9]+)$' "a whole number, or -1 (never)"; done
  for name in "${TARS_NUMBER_KNOBS[@]}"; do
    tars_check_knob "$name" '^([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][-+]?[0-9]+)?$' "a number (3e-5, 0.6, 80)"
  done
}

tars_check_knob() {  # NAME REGEX WHAT: stop unless the knob NAME is unset, empty or matches REGEX
  local value=${!1-}
  if [ -n "$value" ] && [[ ! $value =~ $2 ]]; then
    echo "[tars] $1 must be $3, not '$value' (knobs: examples/lib/defaults.sh). Nothing was run." >&2
    exit 2
  fi
}

# -- running or printing a command ------------------------------------------------------------------------------------
# tars_note TEXT: a progress line; with --print-cmd a comment, so the printed commands still paste as they are.
tars_note() {
  if [ "$PRINT_CMD" = 1 ]; then echo "# $*"; else echo "[tars] $*"; fi
}

# tars_stage TEXT: with --print-cmd, a comment that names the stage whose commands follow.
tars_stage() {
  if [ "$PRINT_CMD" = 1 ]; then echo "# $*"; fi
}

# tars_quote WORD...: one line of shell words that bash reads back as exactly these words (as `bash -x` shows
# a command): plain words as they are, any other in single quotes, a ' inside as '\''.
tars_quote() {
  local word quoted=() q="'\\''"
  for word in "$@"; do
    if [[ -n $word && $word != *[!A-Za-z0-9_@%+=:,./-]* ]]; then
      quoted+=("$word")
    else
      quoted+=("'${word//\'/$q}'")
    fi
  done
  printf '%s\n' "${quoted[*]}"
}

# tars_run [--exec] CMD...: run one stage command (--exec: in place of this shell), or with --print-cmd print it.
tars_run() {
  local replace=0
  if [ "$1" = --exec ]; then
    replace=1
    shift
  fi
  if [ "$PRINT_CMD" = 1 ]; then
    tars_quote "$@"
  elif [ "$replace" = 1 ]; then
    exec "$@"
  else
    "$@"
  fi
}

# -- the SFT warm start -----------------------------------------------------------------------------------------------
# tars_sft_stage: verl's SFT trainer (tars_verl.training.sft adds early stopping on validation loss) with SFT_ARGS
# appended, then node 0 exports the best checkpoint with verl's model merger; run, printed, or dry-run.
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

# -- GRPO ---------------------------------------------------------------------------------------------------------------
# tars_grpo_stage POLICY: verl's main_ppo with the `tars` reward on tars_grpo_recipe.yaml (the paper's fixed settings)
# from the warm-start checkpoint POLICY: what varies per model and cluster, the GRPO knobs that are set, then
# GRPO_ARGS; run, printed, or dry-run (composes and checks the full config exactly as the run would get it).
tars_grpo_stage() {
  local policy=$1 knob name
  local overrides=(
    data.train_files="$TRAIN_FILE"
    data.val_files="$VAL_FILE"
    data.max_prompt_length="$MAX_PROMPT"
    data.max_response_length="$MAX_RESPONSE"
    actor_rollout_ref.model.path="$policy"
    actor_rollout_ref.actor.ppo_max_token_len_per_gpu="$MAX_TOKENS_PER_GPU"
    actor_rollout_ref.rollout.name="$ROLLOUT_NAME"
    actor_rollout_ref.rollout.tensor_model_parallel_size="$ROLLOUT_TP"
    actor_rollout_ref.rollout.gpu_memory_utilization="$GPU_MEM_UTIL"
    tars@reward.tars="$TARS_PRESET"
    trainer.nnodes="$NNODES"
    trainer.n_gpus_per_node="$GPUS_PER_NODE"
    trainer.project_name="$PROJECT"
    trainer.experiment_name="$EXPERIMENT"
    trainer.default_local_dir="$CKPT_DIR"
    trainer.logger="$LOGGER"
    hydra.run.dir="$CKPT_DIR/hydra"
  )
  if [ "$TARS_SERVE_RM" = 1 ]; then
    overrides+=(
      reward.reward_model.enable=True
      reward.reward_model.model_path="$RM_PATH"
      reward.reward_model.rollout.name="$RM_ROLLOUT_NAME"
      reward.reward_model.rollout.tensor_model_parallel_size="$RM_TP"
      reward.reward_model.rollout.gpu_memory_utilization="$RM_GPU_MEM_UTIL"
      # Keeps verl from bypassing the TARS manager when it serves an RM: workaround served_rm_routing. The values
      # are served_rm_overrides() in tars_verl/verl_workarounds.py, written out here because building a command
      # must not start Python (--print-cmd, and the recording stubs of tests/test_examples_on_cpu.py);
      # tests/test_verl_workarounds_on_cpu.py fails if the two differ.
      reward.custom_reward_function.path=pkg://tars_verl.verl_plugin
      reward.custom_reward_function.name=compute_score
    )
  fi
  for knob in "${TARS_GRPO_KNOBS[@]}"; do  # NAME=hydra.key: the knob overrides the recipe YAML only when set
    name=${knob%%=*}
    if [ -n "${!name-}" ]; then overrides+=("${knob#*=}=${!name}"); fi
  done
  overrides+=("${GRPO_ARGS[@]}")
  tars_stage "GRPO stage: warm start $policy -> $CKPT_DIR"
  if [ "$DRY_RUN" = 1 ]; then
    # The dry run's memory plan reads GPU_MEM_GIB (memory of one GPU) from its environment.
    tars_run --exec env GPU_MEM_GIB="$GPU_MEM_GIB" python -m tars_verl.training.dry_run grpo \
      --config-name=tars_grpo_recipe "${overrides[@]}"
    return
  fi
  # tars_verl.training.main_ppo: verl's main_ppo plus the scorers' env vars and secrets (by name) for Ray workers
  # on all nodes (docs/multinode.md).
  tars_run --exec python -m tars_verl.training.main_ppo --config-path=pkg://tars_verl.config \
    --config-name=tars_grpo_recipe "${overrides[@]}"
}

# -- the recipe -------------------------------------------------------------------------------------------------------
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

# tars_launch recipe|sft MODEL "$@": the scripts' one entry. Knobs are checked and the command line read before
# anything runs; then the recipe (or the SFT stage alone) runs with MODEL's defaults.
tars_launch() {
  local what=$1 model=$2
  shift 2
  tars_check_knobs
  tars_defaults "$model"
  tars_parse_args "$what" "$@"
  if [ "$what" = sft ]; then tars_sft_stage; else tars_recipe; fi
}
