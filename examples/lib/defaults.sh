# Every default of the example launch scripts that varies per model or cluster, and the only place one is set in
# bash (tests/test_examples_on_cpu.py checks). Each knob is an environment variable: a value you export wins over the
# default written here. The paper's fixed GRPO settings are YAML, tars_verl/config/tars_grpo_recipe.yaml; the knobs in
# TARS_GRPO_KNOBS below have no default here and, when set, override the key named next to them.
# Sourced by launch.sh; tars_defaults MODEL applies MODEL's layout first, because some recipe defaults derive from
# it (SFT_EXPORT from SFT_OUT, CKPT_DIR from EXPERIMENT, NPROC_PER_NODE from GPUS_PER_NODE).

# shellcheck disable=SC2034  # read by launch.sh, which sources this file
TARS_GRPO_KNOBS=(
  TRAIN_BATCH=data.train_batch_size                  # prompts per step (the PPO mini-batch follows: one update a step)
  N_ROLLOUTS=actor_rollout_ref.rollout.n             # responses per prompt
  LR=actor_rollout_ref.actor.optim.lr
  EPOCHS=trainer.total_epochs
  TEMPERATURE=actor_rollout_ref.rollout.temperature  # train and validation sampling temperature
  VAL_N=actor_rollout_ref.rollout.val_kwargs.n       # validation samples per prompt (paper: 8 on StrongREJECT-small)
  TEST_FREQ=trainer.test_freq
  SAVE_FREQ=trainer.save_freq
)
# Numeric knobs, checked before anything runs (a typo must not reach torchrun or a GPU job).
# shellcheck disable=SC2034
TARS_WHOLE_NUMBER_KNOBS=(NNODES GPUS_PER_NODE NPROC_PER_NODE NODE_RANK MASTER_PORT SFT_BATCH SFT_MICRO_BATCH
  SFT_EPOCHS SFT_MAX_LENGTH SFT_PATIENCE ROLLOUT_TP RM_TP MAX_PROMPT MAX_RESPONSE MAX_TOKENS_PER_GPU TRAIN_BATCH
  N_ROLLOUTS EPOCHS VAL_N)
TARS_STEP_KNOBS=(TEST_FREQ SAVE_FREQ)  # whole numbers, or -1 (never)
TARS_NUMBER_KNOBS=(SFT_LR LR TEMPERATURE GPU_MEM_UTIL RM_GPU_MEM_UTIL GPU_MEM_GIB)

# shellcheck disable=SC2034  # the values are read by the stage functions that launch.sh sources next to this file
tars_defaults() {
  TARS_MODEL=$1
  case "$TARS_MODEL" in
    qwen1.5b)  # the paper's main model: 4 x A6000 (48 GB), 5-10 hours
      : "${MODEL_PATH:=Qwen/Qwen2.5-1.5B-Instruct}"
      RELEASED_SFT=danielkty22/TARS-SFT-1.5B  # named in the "no warm start" message; not a knob
      : "${SFT_OUT:=checkpoints/tars_sft_qwen1.5b}"
      : "${SFT_MICRO_BATCH:=4}"
      : "${GPUS_PER_NODE:=4}"
      : "${ROLLOUT_TP:=1}"
      # GRM-llama3-8B's bf16 weights are 14 GiB: TP 2 puts 7 GiB per GPU, in a 0.25 x 48 GiB = 12 GiB share.
      : "${RM_TP:=2}"
      : "${RM_GPU_MEM_UTIL:=0.25}"
      : "${EXPERIMENT:=tars_qwen1.5b}"
      : "${GPU_MEM_GIB:=48}"  # memory of one GPU, for the --dry-run memory plan
      ;;
    qwen7b)  # 1 x 8 GPUs of 80 GB
      : "${MODEL_PATH:=Qwen/Qwen2.5-7B-Instruct}"
      RELEASED_SFT=danielkty22/TARS-SFT-7B
      : "${SFT_OUT:=checkpoints/tars_sft_qwen7b}"
      : "${SFT_MICRO_BATCH:=1}"
      : "${GPUS_PER_NODE:=8}"
      : "${ROLLOUT_TP:=2}"
      : "${RM_TP:=2}"
      : "${RM_GPU_MEM_UTIL:=0.2}"
      : "${EXPERIMENT:=tars_qwen7b}"
      : "${GPU_MEM_GIB:=80}"
      ;;
    *)
      echo "[tars] unknown model layout '$TARS_MODEL' (examples/lib/defaults.sh has qwen1.5b and qwen7b)" >&2
      exit 2
      ;;
  esac

  # --- both stages -----------------------------------------------------------------------------------------
  : "${TARS_DRY_RUN:=0}"   # 1: the same as --dry-run
  : "${NNODES:=1}"         # multi-node: README "Multi-node"
  : "${SFT_MODEL_PATH:=}"  # warm-start checkpoint for GRPO; empty: run the SFT stage (or reuse $SFT_EXPORT)
  : "${SFT_TRAIN:=data/sft/sft_train.parquet}"  # data_prep/build_sft_traces.py
  : "${SFT_VAL:=data/sft/sft_val.parquet}"
  : "${SFT_EXPORT:=$SFT_OUT/hf_best}"  # the Hugging Face checkpoint the SFT stage writes and GRPO loads

  # --- SFT warm start (paper: lr 3e-5, 3 epochs, batch 16, stop when the validation loss rises) --------------
  : "${NPROC_PER_NODE:=$GPUS_PER_NODE}"
  : "${SFT_LR:=3e-5}"
  : "${SFT_EPOCHS:=3}"
  : "${SFT_BATCH:=16}"
  : "${SFT_MAX_LENGTH:=8192}"
  : "${SFT_PATIENCE:=1}"  # validations without improvement before the early stop
  # torchrun on EVERY node: NNODES=N NODE_RANK=i MASTER_ADDR=<node 0's address> [MASTER_PORT], SFT_OUT on a
  # filesystem all nodes share. Or TORCHRUN_ARGS: torchrun's rendezvous flags yourself, whitespace-separated
  # (read as words, never globbed; replaces --standalone / the three above; must then name --node_rank).
  : "${NODE_RANK:=}"
  : "${MASTER_ADDR:=}"
  : "${MASTER_PORT:=29500}"
  : "${TORCHRUN_ARGS:=}"

  # --- GRPO: what varies per model and cluster (the paper's fixed settings: tars_grpo_recipe.yaml) ----------------
  : "${TRAIN_FILE:=data/tars/train.parquet}"           # data_prep/build_rl_mix.py
  : "${VAL_FILE:=data/eval/strongreject_small.parquet}"  # data_prep/build_eval_sets.py
  : "${TARS_PRESET:=paper}"                            # paper | open | tiny_cpu; swap scorers with overrides
  : "${ROLLOUT_NAME:=vllm}"                            # vllm | sglang (tars_hf: CPU tests only)
  : "${GPU_MEM_UTIL:=0.5}"
  # Sequence lengths and the token budget per GPU they set: memory, so per cluster (--dry-run plans it).
  : "${MAX_PROMPT:=512}"
  : "${MAX_RESPONSE:=4096}"
  : "${MAX_TOKENS_PER_GPU:=$(((MAX_PROMPT + MAX_RESPONSE) * 2))}"
  : "${PROJECT:=tars}"
  : "${CKPT_DIR:=checkpoints/$PROJECT/$EXPERIMENT}"
  : "${LOGGER:=[console]}"
  # The paper's helpfulness RM (GRM-llama3-8B-distill) is served by verl itself for the paper and open presets.
  case "$TARS_PRESET" in
    paper | open) : "${TARS_SERVE_RM:=1}" ;;
    *) : "${TARS_SERVE_RM:=0}" ;;
  esac
  : "${RM_PATH:=Ray2333/GRM-llama3-8B-distill}"
  # verl queries an SGLang-served RM over /v1/embeddings, not /classify: keep the RM on vLLM with ROLLOUT_NAME=sglang.
  : "${RM_ROLLOUT_NAME:=$ROLLOUT_NAME}"
}
