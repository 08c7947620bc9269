# TARS GRPO on verl's main_ppo with the `tars` reward manager. Sourced by launch.sh; knobs and defaults: defaults.sh.

# tars_grpo_stage POLICY: the GRPO command from the warm-start checkpoint POLICY, GRPO_ARGS appended; run (or
# printed, or dry-run: composes and checks the full config exactly as the run would get it).
tars_grpo_stage() {
  local policy=$1
  local -a DATA MODEL ACTOR ROLLOUT REF ALGO REWARD TRAINER
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
    actor_rollout_ref.model.path="$policy"
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
  if [ "$TARS_SERVE_RM" = 1 ]; then
    REWARD+=(
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
  local overrides=("${DATA[@]}" "${MODEL[@]}" "${ACTOR[@]}" "${ROLLOUT[@]}" "${REF[@]}" "${ALGO[@]}" "${REWARD[@]}"
    "${TRAINER[@]}" "${GRPO_ARGS[@]}")
  tars_stage "GRPO stage: warm start $policy -> $CKPT_DIR"
  if [ "$DRY_RUN" = 1 ]; then
    # The dry run's memory plan reads GPU_MEM_GIB (memory of one GPU) from its environment.
    tars_run --exec env GPU_MEM_GIB="$GPU_MEM_GIB" python -m tars_verl.training.dry_run grpo "${overrides[@]}"
    return
  fi
  # tars_verl.training.main_ppo: verl's main_ppo plus the scorers' env vars and secrets (by name) for Ray workers on all nodes.
  tars_run --exec python -m tars_verl.training.main_ppo --config-path=pkg://tars_verl.config --config-name=tars_grpo \
    "${overrides[@]}"
}
