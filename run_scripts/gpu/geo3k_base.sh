# Qwen2.5-VL-7B-Instruct trained and validated on Geometry3K (train 2,101 / test 601).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
MODEL_PATH="${MODEL_PATH:-Qwen/Qwen2.5-VL-7B-Instruct}"
# Memory and kernel settings of verl's own Qwen2.5-VL-7B GRPO example that common.sh does not already set
# (verl-project/verl examples/grpo_trainer/run_qwen2_5_vl_7b_fsdp.sh at v0.9.0, EXTRA and ACTOR arrays; every
# key exists in verl 0.9.1's trainer/config/_generated_ppo_trainer.yaml). The smoke test runs them on its VLM.
# Not adopted from it: rollout.multi_stage_wake_up=True, which verl 0.9.1's rollout.yaml calls effective for
# SGLang only and which no 0.9.1 code reads; trainer.balance_batch=True, verl's default and not a memory setting.
GEO3K_ENGINE_OVERRIDES=(
  # fused output layer + log-prob/entropy, 512 tokens at a time (verl/utils/experimental/torch_functional.py): the
  # 152k-vocabulary logits of a whole micro-batch are never held at once. It needs one temperature per micro-batch,
  # which holds: the UEC step recomputes log-probs at the base temperature.
  actor_rollout_ref.model.use_fused_kernels=True
  actor_rollout_ref.rollout.enable_chunked_prefill=False  # the example's setting for the VLM rollout
  actor_rollout_ref.rollout.free_cache_engine=True        # free vLLM's KV cache while the trainer updates (0.9.1 default)
  actor_rollout_ref.rollout.enforce_eager=False           # CUDA graphs in the rollout (0.9.1 default)
  # the actor keeps parameters and optimizer state on GPU; only the reference policy is offloaded (common.sh)
  actor_rollout_ref.actor.fsdp_config.param_offload=False actor_rollout_ref.actor.fsdp_config.optimizer_offload=False
)
GEO3K_OVERRIDES=(
  actor_rollout_ref.model.path="$MODEL_PATH"
  data.train_files="$DATA_DIR/geo3k_train.parquet" data.val_files="$DATA_DIR/geo3k_test.parquet"
  data.image_key=images data.filter_overlong_prompts=True data.truncation=error
  # image pixel limits of the paper's setup (§4): 512x512 .. 2048x2048 pixels
  '+data.mm_processor_kwargs={min_pixels:262144,max_pixels:4194304}'
  "${GEO3K_ENGINE_OVERRIDES[@]}"
)
