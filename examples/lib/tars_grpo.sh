#!/usr/bin/env bash
# TARS GRPO on verl's main_ppo with the `tars` reward manager, shared by run_tars_qwen{1.5b,7b}.sh.
# Every knob is an environment variable (defaults: the paper's hyperparameters); extra Hydra
# overrides pass through ("$@"). --dry-run (or TARS_DRY_RUN=1) composes and checks the full config
# exactly as the run would get it, then exits.
set -euo pipefail

# shellcheck source=args.sh
source "$(dirname "${BASH_SOURCE[0]}")/args.sh"

SFT_MODEL_PATH=${SFT_MODEL_PATH:?the caller resolves the warm-start checkpoint}
TRAIN_FILE=${TRAIN_FILE:-data/tars/train.parquet}              # data_prep/build_rl_mix.py
VAL_FILE=${VAL_FILE:-data/eval/strongreject_small.parquet}     # data_prep/build_eval_sets.py
TARS_PRESET=${TARS_PRESET:-paper}                              # paper | open | tiny_cpu
NNODES=${NNODES:-1}
GPUS_PER_NODE=${GPUS_PER_NODE:-4}
ROLLOUT_NAME=${ROLLOUT_NAME:-vllm}                             # vllm | sglang (tars_hf: CPU tests only)
ROLLOUT_TP=${ROLLOUT_TP:-1}
GPU_MEM_UTIL=${GPU_MEM_UTIL:-0.5}
TRAIN_BATCH=${TRAIN_BATCH:-32}          # prompts per step
N_ROLLOUTS=${N_ROLLOUTS:-8}             # responses per prompt
LR=${LR:-1e-6}
EPOCHS=${EPOCHS:-3}
MAX_PROMPT=${MAX_PROMPT:-512}
MAX_RESPONSE=${MAX_RESPONSE:-4096}
TEMPERATURE=${TEMPERATURE:-0.6}       # train and validation sampling temperature (paper: 0.6)
VAL_N=${VAL_N:-8}                     # validation samples per prompt (paper: 8 on StrongREJECT-small)
MAX_TOKENS_PER_GPU=${MAX_TOKENS_PER_GPU:-$(( (MAX_PROMPT + MAX_RESPONSE) * 2 ))}
TEST_FREQ=${TEST_FREQ:-10}
SAVE_FREQ=${SAVE_FREQ:-20}
PROJECT=${PROJECT:-tars}
EXPERIMENT=${EXPERIMENT:-tars_grpo}
CKPT_DIR=${CKPT_DIR:-checkpoints/$PROJECT/$EXPERIMENT}
LOGGER=${LOGGER:-[console]}
# The paper's helpfulness RM (GRM-llama3-8B-distill) is served by verl itself for paper/open presets.
case "$TARS_PRESET" in paper|open) SERVE_RM_DEFAULT=1 ;; *) SERVE_RM_DEFAULT=0 ;; esac
SERVE_RM=${TARS_SERVE_RM:-$SERVE_RM_DEFAULT}
RM_PATH=${RM_PATH:-Ray2333/GRM-llama3-8B-distill}
RM_TP=${RM_TP:-1}
RM_GPU_MEM_UTIL=${RM_GPU_MEM_UTIL:-0.2}
# verl queries an SGLang-served RM over /v1/embeddings, not /classify: keep the RM on vLLM with ROLLOUT_NAME=sglang.
RM_ROLLOUT_NAME=${RM_ROLLOUT_NAME:-$ROLLOUT_NAME}
# GPU_MEM_GIB (memory of one GPU) feeds the --dry-run memory plan; the run scripts set their layout's.

DATA=(
  data.train_files="$TRAIN_FILE"
  data.val_files="$VAL_FILE"
  data.train_batch_size="$TRAIN_BATCH"
  data.max_prompt_length="$MAX_PROMPT"
  data.max_response_length="$MAX_RESPONSE"
  data.filter_overlong_prompts=True
  data.truncation=error
)
MODEL=(
  actor_rollout_ref.model.path="$SFT_MODEL_PATH"
  actor_rollout_ref.model.use_remove_padding=True
  actor_rollout_ref.model.enable_gradient_checkpointing=True
)
ACTOR=(
  actor_rollout_ref.actor.optim.lr="$LR"
  actor_rollout_ref.actor.ppo_mini_batch_size="$TRAIN_BATCH"   # one policy update per step
  actor_rollout_ref.actor.use_dynamic_bsz=True
  actor_rollout_ref.actor.ppo_max_token_len_per_gpu="$MAX_TOKENS_PER_GPU"
  actor_rollout_ref.actor.use_kl_loss=True
  actor_rollout_ref.actor.kl_loss_coef=0.001
  actor_rollout_ref.actor.kl_loss_type=low_var_kl
  actor_rollout_ref.actor.entropy_coeff=0.001
  actor_rollout_ref.actor.clip_ratio=0.2
  actor_rollout_ref.actor.grad_clip=1.0
)
ROLLOUT=(
  actor_rollout_ref.rollout.name="$ROLLOUT_NAME"
  actor_rollout_ref.rollout.n="$N_ROLLOUTS"
  actor_rollout_ref.rollout.temperature="$TEMPERATURE"
  actor_rollout_ref.rollout.val_kwargs.temperature="$TEMPERATURE"
  actor_rollout_ref.rollout.val_kwargs.do_sample=True
  actor_rollout_ref.rollout.val_kwargs.n="$VAL_N"
  actor_rollout_ref.rollout.tensor_model_parallel_size="$ROLLOUT_TP"
  actor_rollout_ref.rollout.gpu_memory_utilization="$GPU_MEM_UTIL"
  actor_rollout_ref.rollout.log_prob_use_dynamic_bsz=True
  actor_rollout_ref.rollout.log_prob_max_token_len_per_gpu="$MAX_TOKENS_PER_GPU"
)
REF=(
  actor_rollout_ref.ref.log_prob_use_dynamic_bsz=True
  actor_rollout_ref.ref.log_prob_max_token_len_per_gpu="$MAX_TOKENS_PER_GPU"
)
ALGO=(
  algorithm.adv_estimator=grpo
  algorithm.use_kl_in_reward=False
)
REWARD=(tars@reward.tars="$TARS_PRESET")
if [ "$SERVE_RM" = "1" ]; then
  REWARD+=(
    reward.reward_model.enable=True
    reward.reward_model.model_path="$RM_PATH"
    reward.reward_model.rollout.name="$RM_ROLLOUT_NAME"
    reward.reward_model.rollout.tensor_model_parallel_size="$RM_TP"
    reward.reward_model.rollout.gpu_memory_utilization="$RM_GPU_MEM_UTIL"
    reward.custom_reward_function.path=pkg://tars_verl.verl_plugin
    reward.custom_reward_function.name=compute_score
  )
fi
TRAINER=(
  trainer.nnodes="$NNODES"
  trainer.n_gpus_per_node="$GPUS_PER_NODE"
  trainer.total_epochs="$EPOCHS"
  trainer.test_freq="$TEST_FREQ"
  trainer.save_freq="$SAVE_FREQ"
  trainer.val_before_train=True
  trainer.project_name="$PROJECT"
  trainer.experiment_name="$EXPERIMENT"
  trainer.default_local_dir="$CKPT_DIR"
  trainer.logger="$LOGGER"
  hydra.run.dir="$CKPT_DIR/hydra"
)
OVERRIDES=("${DATA[@]}" "${MODEL[@]}" "${ACTOR[@]}" "${ROLLOUT[@]}" "${REF[@]}" "${ALGO[@]}" "${REWARD[@]}"
           "${TRAINER[@]}" "${EXTRA[@]}")

if [ "$DRY_RUN" = "1" ]; then
  exec python -m tars_verl.training.dry_run grpo "${OVERRIDES[@]}"
fi
# tars_verl.training.main_ppo is verl's main_ppo plus the scorers' env vars and secrets (by name) for Ray workers on every node.
exec python -m tars_verl.training.main_ppo --config-path=pkg://tars_verl.config --config-name=tars_grpo "${OVERRIDES[@]}"
