# Shared by every GPU script: the knobs users change (environment variables, defaults below), the paper's
# reference settings (arXiv 2604.14646 §3-§4, docs/algorithm.md), the engine settings and the launcher. Each
# experiment script holds only its delta. Values marked "guess" are not stated by the paper. docs/gpu.md has the
# install sequence for GPU nodes and every variable.
#
#   DRY_RUN=1 bash run_scripts/gpu/<script>.sh   composes and validates the exact configuration, prints it, exits
#                                                 (no Ray, no GPU, no weights); extra args are hydra overrides.
set -euo pipefail
GPU_SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$GPU_SCRIPTS/../.." && pwd)"

die() {
  echo "error: $*" >&2
  exit 2
}

DATA_DIR="${DATA_DIR:-$HOME/data/uec-rl}"            # output of: bash data_prep/prepare_all.sh $DATA_DIR
CKPT_DIR="${CKPT_DIR:-$HOME/checkpoints/uec-rl}"      # each run writes CKPT_DIR/EXPERIMENT (checkpoints and logs)
NNODES="${NNODES:-1}"                                 # paper: 1 node x 8 GPUs
GPUS_PER_NODE="${GPUS_PER_NODE:-8}"
TP="${TP:-2}"                                         # rollout tensor parallel size (paper: 2)
PROJECT="${PROJECT:-uec-rl}"
LOGGER="${LOGGER:-console,file}"                      # comma list of verl loggers; console,file needs no account
ATTN="${ATTN:-flash_attention_2}"                     # flash_attention_2 (needs flash-attn) | sdpa (no flash-attn)
TOTAL_EPOCHS="${TOTAL_EPOCHS:-15}"                    # guess: verl's example scripts use 15 epochs
SAVE_FREQ="${SAVE_FREQ:-20}"                          # guess
TEST_FREQ="${TEST_FREQ:-5}"                           # guess
PYTHON="${PYTHON:-python3}"
# Ray workers do not share the launcher's working directory: make the folders absolute.
DATA_DIR="$(realpath -m -- "$DATA_DIR")" CKPT_DIR="$(realpath -m -- "$CKPT_DIR")"

# The rollout is vLLM, the engine the `gpu` extra installs (docs/gpu.md). SGLang is not offered: nothing here
# installs it, verl 0.9.1 pins it in an extra that excludes vLLM's, and no run of this recipe has exercised it.
if [ "${ROLLOUT:-vllm}" != vllm ]; then
  die "ROLLOUT=$ROLLOUT: the GPU scripts run vLLM only (the engine the gpu extra installs); unset ROLLOUT"
fi

# ATTN switches the trainer's attention. flash_attention_2 is verl's default and packs each micro-batch without
# padding (use_remove_padding, verl's GPU examples); sdpa runs without the flash-attn package, on padded
# micro-batches, since packed rows would attend across samples without a varlen kernel (docs/gpu.md).
case "$ATTN" in
  flash_attention_2) ATTN_OVERRIDES=(actor_rollout_ref.model.use_remove_padding=True) ;;
  sdpa)
    ATTN_OVERRIDES=(+actor_rollout_ref.model.override_config.attn_implementation=sdpa
      actor_rollout_ref.model.use_remove_padding=False) ;;
  *) die "ATTN=$ATTN: use flash_attention_2 (needs the flash-attn package) or sdpa (runs without it)" ;;
esac

# LOGGER: console,file by default (no account needed); add wandb, tensorboard, ... as a comma list. The old
# hydra-list form '["console","wandb"]' is accepted too. Names are checked against verl 0.9.1's Tracking backends.
VERL_LOGGERS=(console file wandb tensorboard mlflow swanlab vemlp_wandb clearml trackio rl_insight)
LOGGER_NAMES=()
IFS=',' read -r -a _logger_items <<<"$(printf '%s' "$LOGGER" | tr -d '[]"'"'"' ')"
for _name in "${_logger_items[@]}"; do
  [ -n "$_name" ] || continue
  [[ " ${VERL_LOGGERS[*]} " == *" $_name "* ]] || die "LOGGER=$LOGGER: '$_name' is not a verl logger (${VERL_LOGGERS[*]})"
  LOGGER_NAMES+=("$_name")
done
[ ${#LOGGER_NAMES[@]} -gt 0 ] || die "LOGGER is empty; use e.g. LOGGER=console,file"
LOGGER_HYDRA="[$(IFS=,; echo "${LOGGER_NAMES[*]}")]"
uses_logger() { [[ " ${LOGGER_NAMES[*]} " == *" $1 "* ]]; }

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

# Engine and memory settings (not from the paper), as verl's GPU examples set them: rollout memory share,
# gradient checkpointing, token-budget micro-batches, the reference policy's parameters offloaded to CPU
# (verl-project/verl examples/grpo_trainer/run_qwen2_5_vl_7b_fsdp.sh at v0.9.0; geo3k_base.sh adds that script's
# remaining memory settings). The smoke test runs these too.
ENGINE_OVERRIDES=(
  actor_rollout_ref.rollout.name=vllm
  actor_rollout_ref.rollout.gpu_memory_utilization=0.6
  "${ATTN_OVERRIDES[@]}" actor_rollout_ref.model.enable_gradient_checkpointing=True
  actor_rollout_ref.actor.use_dynamic_bsz=True actor_rollout_ref.actor.ppo_max_token_len_per_gpu=24576
  actor_rollout_ref.rollout.log_prob_use_dynamic_bsz=True actor_rollout_ref.rollout.log_prob_max_token_len_per_gpu=24576
  actor_rollout_ref.ref.log_prob_use_dynamic_bsz=True actor_rollout_ref.ref.log_prob_max_token_len_per_gpu=24576
  actor_rollout_ref.ref.fsdp_config.param_offload=True
)

# The reward is referenced through the installed package, not a file of the launching checkout: verl 0.9.1's
# verl/utils/import_utils.py::load_module imports a "pkg://" path with importlib, so a reward worker on any node
# finds the function wherever that node's copy of the project is installed.
REWARD_OVERRIDES=(reward.custom_reward_function.path=pkg://uec_recipe.reward reward.custom_reward_function.name=compute_score)

CLUSTER_OVERRIDES=(
  trainer.nnodes="$NNODES" trainer.n_gpus_per_node="$GPUS_PER_NODE"
  actor_rollout_ref.rollout.tensor_model_parallel_size="$TP"
  trainer.project_name="$PROJECT" trainer.logger="$LOGGER_HYDRA"
  trainer.total_epochs="$TOTAL_EPOCHS" trainer.save_freq="$SAVE_FREQ" trainer.test_freq="$TEST_FREQ"
)

# Environment variables the Ray workers need, passed in the runtime environment verl starts Ray with
# (ray_kwargs.ray_init.runtime_env.env_vars): it reaches every actor of the run whether the launcher starts a
# local Ray, joins one started with `ray start`, or is a `ray job` entrypoint. verl's FileLogger and tensorboard
# writer run in the task runner, the request log in the agent-loop workers (uec_recipe/rollout/agent_loop.py).
FORWARDED_ENV=(VERL_FILE_LOGGER_PATH TENSORBOARD_DIR UEC_AGENT_REQUEST_LOG WANDB_MODE WANDB_ENTITY)

# run_logging RUN_DIR: point the file and tensorboard loggers into the run's folder (unless set by the user).
run_logging() {
  local run_dir="$1"
  if uses_logger file; then export VERL_FILE_LOGGER_PATH="${VERL_FILE_LOGGER_PATH:-$run_dir/metrics.jsonl}"; fi
  if uses_logger tensorboard; then export TENSORBOARD_DIR="${TENSORBOARD_DIR:-$run_dir/tensorboard}"; fi
}

# env_overrides: one hydra override per forwarded variable that is set, quoted for hydra.
env_overrides() {
  local name value
  ENV_OVERRIDES=()
  for name in "${FORWARDED_ENV[@]}"; do
    value="${!name:-}"
    [ -n "$value" ] || continue
    case "$name" in  # paths are read in the workers' working directories: make them absolute
      VERL_FILE_LOGGER_PATH | TENSORBOARD_DIR | UEC_AGENT_REQUEST_LOG)
        value="$(realpath -m -- "$value")"
        export "$name=$value" ;;
    esac
    [[ "$value" != *"'"* && "$value" != *\\* ]] || die "$name=$value: quotes and backslashes cannot be passed to Ray"
    ENV_OVERRIDES+=("+ray_kwargs.ray_init.runtime_env.env_vars.$name='$value'")
  done
}

# preflight RUN_DIR: the checks that can fail in seconds before a run spends minutes starting Ray and loading
# weights. Skipped under DRY_RUN (a dry run may be composed on a machine without GPU packages).
preflight() {
  local run_dir="$1" module
  local modules=(vllm)
  if [ "$ATTN" = flash_attention_2 ]; then modules+=(flash_attn); fi
  for module in "${modules[@]}"; do
    if ! "$PYTHON" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$module') is None)"; then
      case "$module" in
        vllm) die "$PYTHON has no vllm: install the gpu extra (docs/gpu.md) or set PYTHON to that environment" ;;
        flash_attn) die "$PYTHON has no flash_attn: install flash-attn (docs/gpu.md) or set ATTN=sdpa" ;;
      esac
    fi
  done
  if uses_logger wandb && [ -z "${WANDB_API_KEY:-}" ] && [[ ! "${WANDB_MODE:-}" =~ ^(offline|disabled|dryrun)$ ]] \
    && ! grep -qs "api.wandb.ai" "${NETRC:-$HOME/.netrc}"; then
    die "LOGGER includes wandb but no wandb credentials were found: set WANDB_API_KEY, run 'wandb login'," \
      "set WANDB_MODE=offline, or drop wandb from LOGGER"
  fi
  if [ -n "${UEC_AGENT_REQUEST_LOG:-}" ] && [ ! -d "$(dirname "$UEC_AGENT_REQUEST_LOG")" ]; then
    die "UEC_AGENT_REQUEST_LOG=$UEC_AGENT_REQUEST_LOG: its folder does not exist"
  fi
  mkdir -p "$run_dir"
  # verl's FileLogger opens its file with "wb": keep the lines of an earlier launch (a run being resumed).
  if [ -n "${VERL_FILE_LOGGER_PATH:-}" ] && [ -s "$VERL_FILE_LOGGER_PATH" ]; then
    local kept="${VERL_FILE_LOGGER_PATH%.jsonl}.$(date -r "$VERL_FILE_LOGGER_PATH" +%Y%m%d-%H%M%S).jsonl"
    mv "$VERL_FILE_LOGGER_PATH" "$kept"
    echo "[uec] kept the previous launch's metrics as $kept" >&2
  fi
}

# launch RUN_DIR [overrides...]: dry run, ray job submission (RAY_ADDRESS set) or a local run.
launch() {
  local run_dir="$1"
  shift
  run_logging "$run_dir"
  env_overrides
  local overrides=("$@" "${ENV_OVERRIDES[@]+"${ENV_OVERRIDES[@]}"}")
  if [ "${DRY_RUN:-0}" = 1 ]; then
    UEC_DRY_RUN=1 "$PYTHON" -m uec_recipe.main_uec "${overrides[@]}"
    return
  fi
  preflight "$run_dir"
  if [ -n "${RAY_ADDRESS:-}" ]; then
    # Multi-node: submit to a running Ray cluster; the runtime env makes every worker import the plugin.
    ray job submit --address="$RAY_ADDRESS" --no-wait \
      --runtime-env-json='{"env_vars": {"VERL_USE_EXTERNAL_MODULES": "uec_recipe.plugin"}}' \
      -- "$PYTHON" -m uec_recipe.main_uec "${overrides[@]}"
  else
    "$PYTHON" -m uec_recipe.main_uec "${overrides[@]}"
  fi
}

# run_experiment ALGO EXPERIMENT_NAME [overrides...]: the launcher every experiment script ends with.
run_experiment() {
  local algo="$1" experiment="${EXPERIMENT:-$2}"
  shift 2
  local run_dir="$CKPT_DIR/$experiment"
  launch "$run_dir" algo="$algo" "${PAPER_OVERRIDES[@]}" "${ENGINE_OVERRIDES[@]}" "${REWARD_OVERRIDES[@]}" \
    "${CLUSTER_OVERRIDES[@]}" "$@" trainer.experiment_name="$experiment" trainer.default_local_dir="$run_dir" \
    "${USER_OVERRIDES[@]+"${USER_OVERRIDES[@]}"}"
}
