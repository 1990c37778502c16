# Overrides that run the real verl trainer on CPU (sourced by the CPU scripts and the tests).
# Each one answers a specific failure of stock verl 0.9.1 on a machine without a GPU; docs/design.md lists why.
export VERL_PLATFORM=cpu                  # uec_recipe.cpu.platform: gloo, logical GPUs for Ray
export HF_HUB_OFFLINE=1 WANDB_MODE=disabled RAY_USAGE_STATS_ENABLED=0 TOKENIZERS_PARALLELISM=false
CPU_OVERRIDES=(
  trainer.device=cpu trainer.n_gpus_per_node=1 trainer.nnodes=1
  ray_kwargs.ray_init.num_cpus=16 +ray_kwargs.ray_init.num_gpus=1
  transfer_queue.backend.SimpleStorage.num_data_storage_units=1
  +actor_rollout_ref.model.override_config.attn_implementation=eager
  actor_rollout_ref.model.use_remove_padding=False
  actor_rollout_ref.actor.fsdp_config.model_dtype=fp32 actor_rollout_ref.ref.fsdp_config.model_dtype=fp32
  # verl's FSDP2 engine computes in bf16 unless told otherwise: slow on CPUs and ~1e-2 off the rollout's fp32
  '+actor_rollout_ref.actor.fsdp_config.mixed_precision={param_dtype:fp32,reduce_dtype:fp32,buffer_dtype:fp32}'
  '+actor_rollout_ref.ref.fsdp_config.mixed_precision={param_dtype:fp32,reduce_dtype:fp32,buffer_dtype:fp32}'
  actor_rollout_ref.rollout.name=hf actor_rollout_ref.rollout.tensor_model_parallel_size=1
  actor_rollout_ref.rollout.agent.num_workers=1 reward.num_workers=1 data.dataloader_num_workers=0
  uec.sample_poll_interval_s=0.05           # verl polls for finished rollouts every 2 s; a CPU step is shorter
)

