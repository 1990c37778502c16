# Shared by every GPU script: the knobs users change (environment variables, defaults below), the paper's
# reference settings (arXiv 2604.14646 §3-§4, docs/algorithm.md) and the launcher. Each experiment script holds
# only its delta. Values marked "guess" are not stated by the paper.
#
#   DRY_RUN=1 bash run_scripts/gpu/<script>.sh   composes and validates the exact configuration, prints it, exits
#                                                 (no Ray, no GPU, no weights); extra args are hydra overrides.
set -euo pipefail
GPU_SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$GPU_SCRIPTS/../.." && pwd)"

DATA_DIR="${DATA_DIR:-$HOME/data/uec-rl}"            # output of: bash data_prep/prepare_all.sh $DATA_DIR
CKPT_DIR="${CKPT_DIR:-$HOME/checkpoints/uec-rl}"
NNODES="${NNODES:-1}"                                 # paper: 1 node x 8 GPUs
GPUS_PER_NODE="${GPUS_PER_NODE:-8}"
ROLLOUT="${ROLLOUT:-vllm}"                            # vllm | sglang
TP="${TP:-2}"                                         # rollout tensor parallel size (paper: 2)
PROJECT="${PROJECT:-uec-rl}"
LOGGER="${LOGGER:-[\"console\",\"wandb\"]}"
TOTAL_EPOCHS="${TOTAL_EPOCHS:-15}"                    # guess: verl's example scripts use 15 epochs
SAVE_FREQ="${SAVE_FREQ:-20}"                          # guess
TEST_FREQ="${TEST_FREQ:-5}"                           # guess
PYTHON="${PYTHON:-python3}"

# The paper's settings (§3): 512 prompts x 5 samples, T = 1.0, top_p 0.99, lengths 2048/2048, lr 1e-6 constant,
# k3 KL 1e-2, mini-batch 128 prompts, 1 PPO epoch, validation T = 0.5, n = 1. Most are already the defaults of
# uec_recipe/config/uec_trainer.yaml; they are repeated here so a script shows what defines the run. Loss settings
# (clip ratios, KL) are left to the method presets (config/algo/*.yaml): DAPO, for one, has no KL term.
PAPER_OVERRIDES=(
  data.train_batch_size=512 actor_rollout_ref.rollout.n=5
  actor_rollout_ref.rollout.temperature=1.0 actor_rollout_ref.rollout.top_p=0.99
  data.max_prompt_length=2048 data.max_response_length=2048
  actor_rollout_ref.actor.optim.lr=1e-6
  actor_rollout_ref.actor.ppo_mini_batch_size=128 actor_rollout_ref.actor.ppo_epochs=1
  actor_rollout_ref.rollout.val_kwargs.temperature=0.5 actor_rollout_ref.rollout.val_kwargs.n=1
)

# Cluster and engine settings (not from the paper): verl's GPU example scripts (docs/design.md).
CLUSTER_OVERRIDES=(
  trainer.nnodes="$NNODES" trainer.n_gpus_per_node="$GPUS_PER_NODE"
  actor_rollout_ref.rollout.name="$ROLLOUT" actor_rollout_ref.rollout.tensor_model_parallel_size="$TP"
  actor_rollout_ref.rollout.gpu_memory_utilization=0.6
  actor_rollout_ref.model.use_remove_padding=True actor_rollout_ref.model.enable_gradient_checkpointing=True
  actor_rollout_ref.actor.use_dynamic_bsz=True actor_rollout_ref.actor.ppo_max_token_len_per_gpu=24576
  actor_rollout_ref.rollout.log_prob_use_dynamic_bsz=True actor_rollout_ref.rollout.log_prob_max_token_len_per_gpu=24576
  actor_rollout_ref.ref.log_prob_use_dynamic_bsz=True actor_rollout_ref.ref.log_prob_max_token_len_per_gpu=24576
  actor_rollout_ref.ref.fsdp_config.param_offload=True
  reward.custom_reward_function.path="$ROOT/uec_recipe/reward.py" reward.custom_reward_function.name=compute_score
  trainer.project_name="$PROJECT" trainer.logger="$LOGGER"
  trainer.total_epochs="$TOTAL_EPOCHS" trainer.save_freq="$SAVE_FREQ" trainer.test_freq="$TEST_FREQ"
)

# run_experiment ALGO EXPERIMENT_NAME [overrides...]: the launcher every script ends with.
run_experiment() {
  local algo="$1" experiment="$2"
  shift 2
  local overrides=(algo="$algo" "${PAPER_OVERRIDES[@]}" "${CLUSTER_OVERRIDES[@]}" "$@"
    trainer.experiment_name="${EXPERIMENT:-$experiment}" trainer.default_local_dir="$CKPT_DIR/${EXPERIMENT:-$experiment}"
    "${USER_OVERRIDES[@]+"${USER_OVERRIDES[@]}"}")
  if [ "${DRY_RUN:-0}" = 1 ]; then
    UEC_DRY_RUN=1 "$PYTHON" -m uec_recipe.main_uec "${overrides[@]}"
  elif [ -n "${RAY_ADDRESS:-}" ]; then
    # Multi-node: submit to a running Ray cluster; the runtime env makes every worker import the plugin.
    ray job submit --address="$RAY_ADDRESS" --no-wait \
      --runtime-env-json='{"env_vars": {"VERL_USE_EXTERNAL_MODULES": "uec_recipe.plugin"}}' \
      -- "$PYTHON" -m uec_recipe.main_uec "${overrides[@]}"
  else
    "$PYTHON" -m uec_recipe.main_uec "${overrides[@]}"
  fi
}
