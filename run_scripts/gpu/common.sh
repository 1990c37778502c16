# Shared by every GPU script: the launcher. It turns the knobs users change (environment variables, below) into
# config-group selections and overrides, checks what it can before a run spends minutes starting Ray, and runs
# python -m uec_recipe.main_uec locally or submits it to a Ray cluster. Every configuration value lives in
# uec_recipe/config/ (the paper's in uec_trainer.yaml; the hardware, cadence and checkpoint retention in
# cluster/paper.yaml; verl's GPU-example engine settings in gpu_engine/; each experiment in task/). Each experiment
# script holds only its task and method. docs/gpu.md has the install sequence for GPU nodes and every variable.
#
#   DRY_RUN=1 bash run_scripts/gpu/<script>.sh   composes and validates the exact configuration, prints it, exits
#                                                 (no Ray, no GPU, no weights); extra args are hydra overrides.
#   DRY_RUN=1 PRINT_COMMAND=1 bash ...           prints the command line it would run instead (no python started)
set -euo pipefail
GPU_SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$GPU_SCRIPTS/../.." && pwd)"

die() {
  echo "error: $*" >&2
  exit 2
}

# Where things are (launcher paths, not configuration values):
DATA_DIR="${DATA_DIR:-$HOME/data/uec-rl}"            # output of: bash data_prep/prepare_all.sh $DATA_DIR
CKPT_DIR="${CKPT_DIR:-$HOME/checkpoints/uec-rl}"      # each run writes CKPT_DIR/EXPERIMENT (checkpoints and logs)
PYTHON="${PYTHON:-python3}"
# Ray workers do not share the launcher's working directory: make the folders absolute.
DATA_DIR="$(realpath -m -- "$DATA_DIR")" CKPT_DIR="$(realpath -m -- "$CKPT_DIR")"
# Launcher choices: the attention kernel (a config group) and the loggers (the launcher routes their files).
ATTN="${ATTN:-flash_attention_2}"                     # flash_attention_2 (needs flash-attn) | sdpa (no flash-attn)
LOGGER="${LOGGER:-console,file}"                      # comma list of verl loggers; console,file needs no account

# The rollout is vLLM, the engine the `gpu` extra installs (docs/gpu.md). SGLang is not offered: nothing here
# installs it, verl 0.9.1 pins it in an extra that excludes vLLM's, and no run of this recipe has exercised it.
if [ "${ROLLOUT:-vllm}" != vllm ]; then
  die "ROLLOUT=$ROLLOUT: the GPU scripts run vLLM only (the engine the gpu extra installs); unset ROLLOUT"
fi

# ATTN selects uec_recipe/config/attn/ATTN.yaml: flash_attention_2 packs each micro-batch without padding (verl's
# GPU examples); sdpa runs without the flash-attn package, on padded micro-batches (docs/gpu.md).
case "$ATTN" in
  flash_attention_2 | sdpa) ;;
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

# verl's GPU-example engine settings and the attention kernel (config groups gpu_engine/ and attn/); the geo3k
# scripts and the smoke test's VLM run add GEO3K_ENGINE_OVERRIDES (geo3k_base.sh), which selects gpu_engine again.
ENGINE_OVERRIDES=(gpu_engine=fsdp_vllm attn="$ATTN")

# The paper's node and the run cadence (cluster/paper.yaml); each variable, when set, overrides its value there.
CLUSTER_OVERRIDES=(cluster=paper trainer.logger="$LOGGER_HYDRA")
add_knob() {  # add_knob VARIABLE KEY: pass $VARIABLE as KEY when the user set it
  local value="${!1:-}"
  if [ -n "$value" ]; then CLUSTER_OVERRIDES+=("$2=$value"); fi
}
add_knob NNODES trainer.nnodes
add_knob GPUS_PER_NODE trainer.n_gpus_per_node
add_knob TP actor_rollout_ref.rollout.tensor_model_parallel_size
add_knob PROJECT trainer.project_name
add_knob TOTAL_EPOCHS trainer.total_epochs
add_knob SAVE_FREQ trainer.save_freq
add_knob TEST_FREQ trainer.test_freq
add_knob MAX_CKPT_TO_KEEP trainer.max_actor_ckpt_to_keep

# Files every run needs on shared paths, checked before a real launch (the experiment scripts append theirs).
SHARED_DATA_FILES=()

# Environment variables the Ray workers need, passed in the runtime environment verl starts Ray with
# (ray_kwargs.ray_init.runtime_env.env_vars): it reaches every actor of the run whether the launcher starts a
# local Ray, joins one started with `ray start`, or is a `ray job` entrypoint. verl's FileLogger and tensorboard
# writer run in the task runner, the request log in the agent-loop workers (uec_recipe/rollout/agent_loop.py).
FORWARDED_ENV=(VERL_FILE_LOGGER_PATH TENSORBOARD_DIR UEC_AGENT_REQUEST_LOG UEC_SERVER_LOG WANDB_MODE WANDB_ENTITY)

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
      VERL_FILE_LOGGER_PATH | TENSORBOARD_DIR | UEC_AGENT_REQUEST_LOG | UEC_SERVER_LOG)
        value="$(realpath -m -- "$value")"
        export "$name=$value" ;;
    esac
    [[ "$value" != *"'"* && "$value" != *\\* ]] || die "$name=$value: quotes and backslashes cannot be passed to Ray"
    ENV_OVERRIDES+=("+ray_kwargs.ray_init.runtime_env.env_vars.$name='$value'")
  done
}

# ray_job_server_url: RAY_ADDRESS as the HTTP address of Ray's job server (http:// added when it has no scheme).
ray_job_server_url() {
  case "$RAY_ADDRESS" in
    http://* | https://*) printf '%s' "${RAY_ADDRESS%/}" ;;
    *://*) die "RAY_ADDRESS=$RAY_ADDRESS: give the job server's HTTP address, http://HEAD:8265 (docs/gpu.md)" ;;
    *) printf 'http://%s' "${RAY_ADDRESS%/}" ;;
  esac
}

# check_ray_address: the job server must answer before anything is submitted. `ray start --head` binds the
# dashboard, and with it the job server, to localhost unless --dashboard-host is given (ray 2.60,
# ray/scripts/scripts.py), so from any other machine http://HEAD:8265 refuses the connection.
check_ray_address() {
  local url
  url="$(ray_job_server_url)"
  if ! "$PYTHON" - "$url" <<'PY' 2>/dev/null; then
import sys, urllib.request
urllib.request.urlopen(sys.argv[1] + "/api/version", timeout=5).read()
PY
    die "RAY_ADDRESS=$RAY_ADDRESS: no Ray job server answers at $url/api/version; nothing was submitted." \
      "Start the head with 'ray start --head --dashboard-host=0.0.0.0' (Ray binds the job server to localhost" \
      "otherwise), join the other nodes with 'ray start --address=HEAD:6379', and check that port 8265 of the head" \
      "is reachable from here (docs/gpu.md, Multi-node runs)"
  fi
}

# check_shared_paths RUN_DIR: what must exist at the same path on the nodes of a run, checked here on this machine
# (existence only: this machine cannot see the other nodes' disks).
check_shared_paths() {
  local cluster="" path
  if [ -n "${RAY_ADDRESS:-}" ]; then cluster=" and at the same path on every node of the Ray cluster"; fi
  [ -d "$DATA_DIR" ] || die "DATA_DIR=$DATA_DIR: no such folder; prepare it with 'bash data_prep/prepare_all.sh" \
    "$DATA_DIR'. It must exist on this machine$cluster (verl's task runner reads the data on whichever node Ray" \
    "places it)"
  for path in "${SHARED_DATA_FILES[@]+"${SHARED_DATA_FILES[@]}"}"; do
    [ -f "$path" ] || die "$path: no such data file in DATA_DIR=$DATA_DIR; prepare it with" \
      "'bash data_prep/prepare_all.sh $DATA_DIR'. It must exist on this machine$cluster"
  done
  # A model given as a local path (not a Hugging Face id) is loaded from that path by the workers of every node.
  if [ -n "${MODEL_PATH:-}" ] && [[ "$MODEL_PATH" == /* || "$MODEL_PATH" == .* ]]; then
    [ -d "$MODEL_PATH" ] || die "MODEL_PATH=$MODEL_PATH: no such folder; a local model must exist at this path on" \
      "this machine$cluster (the workers load it from there); a Hugging Face id (e.g. Qwen/Qwen2.5-Math-7B) is" \
      "downloaded instead"
  fi
  if [ -n "${UEC_AGENT_REQUEST_LOG:-}" ] && [ ! -d "$(dirname "$UEC_AGENT_REQUEST_LOG")" ]; then
    die "UEC_AGENT_REQUEST_LOG=$UEC_AGENT_REQUEST_LOG: its folder does not exist; it must exist on this" \
      "machine$cluster (the agent-loop workers of each node append to it)"
  fi
  # On a cluster the launcher does not create CKPT_DIR: created on this machine only, it would hide that the other
  # nodes' ranks write their checkpoint shards elsewhere.
  if [ -n "$cluster" ] && [ ! -d "$CKPT_DIR" ]; then
    die "CKPT_DIR=$CKPT_DIR: no such folder. On a Ray cluster it must be storage every node mounts at the same" \
      "path (every rank writes its checkpoint shards into it); create it on that shared storage first"
  fi
}

# preflight RUN_DIR: the checks that can fail in seconds before a run spends minutes starting Ray and loading
# weights. Skipped under DRY_RUN (a dry run may be composed on a machine without GPU packages or data).
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
  check_shared_paths "$run_dir"
  if [ -n "${RAY_ADDRESS:-}" ]; then check_ray_address; fi
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
    if [ "${PRINT_COMMAND:-0}" = 1 ]; then  # the command line only, shell-quoted, one line per run
      printf '%q ' "$PYTHON" -m uec_recipe.main_uec "${overrides[@]}"
      echo
    else
      UEC_DRY_RUN=1 "$PYTHON" -m uec_recipe.main_uec "${overrides[@]}"
    fi
    return
  fi
  preflight "$run_dir"
  if [ -n "${RAY_ADDRESS:-}" ]; then
    # Multi-node: submit to a running Ray cluster; the runtime env makes every worker import the plugin.
    ray job submit --address="$(ray_job_server_url)" --no-wait \
      --runtime-env-json='{"env_vars": {"VERL_USE_EXTERNAL_MODULES": "uec_recipe.plugin"}}' \
      -- "$PYTHON" -m uec_recipe.main_uec "${overrides[@]}"
  else
    "$PYTHON" -m uec_recipe.main_uec "${overrides[@]}"
  fi
}

# run_experiment ALGO EXPERIMENT_NAME [overrides...]: the launcher every experiment script ends with; the
# overrides are the task's (TASK_OVERRIDES of text_base.sh / geo3k_base.sh), the user's arguments come last.
run_experiment() {
  local algo="$1" experiment="${EXPERIMENT:-$2}"
  shift 2
  local run_dir="$CKPT_DIR/$experiment"
  launch "$run_dir" algo="$algo" "${ENGINE_OVERRIDES[@]}" "${CLUSTER_OVERRIDES[@]}" "$@" \
    trainer.experiment_name="$experiment" trainer.default_local_dir="$run_dir" \
    "${USER_OVERRIDES[@]+"${USER_OVERRIDES[@]}"}"
}
