#!/usr/bin/env bash
# UEC-RL in a verl 0.9.1 run: grpo.sh plus only what UEC-RL needs, still launched with verl's own entry point.
# `diff grpo.sh uec.sh` shows the lines; README.md explains each.
#
#   bash examples/verl_grpo_to_uec/{grpo,uec}.sh [hydra overrides...]
#
# Knobs (environment variables): MODEL TRAIN TEST (default: the CPU demo policy and its digit-sum data), STEPS, OUT,
# PYTHON, CPU=1|0 (pass the CPU backend's overrides), DRY_RUN=1 (print the composed configuration and exit).
set -euo pipefail

NAME="$(basename "${BASH_SOURCE[0]}" .sh)"                  # names the run and its output folder
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
STEPS="${STEPS:-4}"                                         # training steps
OUT="${OUT:-$ROOT/outputs/verl_grpo_to_uec/$NAME}"          # metrics.jsonl, train.log, checkpoints/
CPU="${CPU:-1}"                                             # 1: this machine has no GPU (uec_recipe/config/platform/)
DRY_RUN="${DRY_RUN:-0}"

die() {
  echo "$NAME.sh: $*" >&2
  exit 2
}
[ -x "$PYTHON" ] || die "no Python at $PYTHON: run 'bash run_scripts/setup_env.sh' or set PYTHON"
[[ "$STEPS" =~ ^[1-9][0-9]*$ ]] || die "STEPS must be a positive integer, got '$STEPS'"
case "$CPU" in 0 | 1) ;; *) die "CPU must be 1 or 0, got '$CPU'" ;; esac

# Model and data: all three given, or none (then the CPU demo's, built and cached on first use).
if [ -z "${MODEL:-}${TRAIN:-}${TEST:-}" ]; then
  demo_env="$("$PYTHON" -m uec_lab.demo.build --print-env)" || die "building the CPU demo failed (see above)"
  eval "$demo_env"
  MODEL="$DEMO_MODEL" TRAIN="$DEMO_TRAIN" TEST="$DEMO_TEST"
fi
for var in MODEL TRAIN TEST; do
  [ -n "${!var:-}" ] || die "$var is not set: give MODEL, TRAIN and TEST together, or none of them for the CPU demo"
done
# Ray workers do not share this shell's working directory: the data and output paths must be absolute.
for var in TRAIN TEST; do
  [ -f "${!var}" ] || die "$var=${!var}: no such file (a parquet file in verl's RL layout)"
  printf -v "$var" '%s' "$(realpath -- "${!var}")"
done
# MODEL is a local folder or a Hugging Face model id.
if [ -e "$MODEL" ]; then MODEL="$(realpath -- "$MODEL")"; fi
OUT="$(realpath -m -- "$OUT")"

# CPU only. Stock verl 0.9.1 cannot train without a GPU; the CPU platform and the "hf" rollout of this project
# (uec_recipe/cpu/, loaded with the package when VERL_PLATFORM=cpu) and the settings of its platform config group
# (uec_recipe/config/platform/, put on hydra's search path) make it run. On a GPU machine set CPU=0 and pass your
# cluster's settings instead (actor_rollout_ref.rollout.name=vllm, trainer.n_gpus_per_node=8, ...).
CPU_ARGS=()
if [ "$CPU" = 1 ]; then
  export VERL_PLATFORM=cpu HF_HUB_OFFLINE=1 WANDB_MODE=disabled RAY_USAGE_STATS_ENABLED=0 TOKENIZERS_PARALLELISM=false
  CPU_ARGS=(hydra.searchpath=[pkg://uec_recipe.config] +platform=cpu)       # cpu_verl plus uec.sample_poll_interval_s
fi

# The run, in the shape of verl's GRPO example scripts (verl-project/verl, examples/grpo_trainer/), sized for
# the tiny CPU demo policy: 16 prompts x 4 samples per step, responses of at most 16 tokens.
ARGS=(
  algorithm.adv_estimator=uec
  algorithm.use_kl_in_reward=False
  data.train_files="$TRAIN" data.val_files="$TEST"
  data.train_batch_size=16 data.max_prompt_length=64 data.max_response_length=16
  actor_rollout_ref.model.path="$MODEL"
  actor_rollout_ref.actor.strategy=fsdp2
  actor_rollout_ref.actor.optim.lr=1e-4
  actor_rollout_ref.actor.ppo_mini_batch_size=16 actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=32
  actor_rollout_ref.actor.use_kl_loss=True actor_rollout_ref.actor.kl_loss_coef=0.01
  actor_rollout_ref.actor.kl_loss_type=low_var_kl actor_rollout_ref.actor.entropy_coeff=0
  actor_rollout_ref.rollout.n=4
  actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=32
  actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=32
  # the demo task's grader on the recipe's reward entry point; verl imports a "pkg://" path by module name in every
  # reward worker
  reward.custom_reward_function.path=pkg://uec_lab.demo.reward reward.custom_reward_function.name=compute_score
  trainer.total_training_steps="$STEPS" trainer.test_freq="$STEPS" trainer.val_before_train=False
  trainer.save_freq=-1 trainer.default_local_dir="$OUT/checkpoints"
  trainer.logger='["console","file"]' trainer.project_name=verl_grpo_to_uec trainer.experiment_name="$NAME"
  hydra.run.dir="$OUT/hydra"                                    # hydra's launch log (default: ./outputs/DATE/TIME)
  # UEC-RL (uec_recipe/config/uec_trainer.yaml documents every key). Without a uec section, or with
  # uec.enable=false, the uec trainer runs verl's own GRPO step. Keys set here take later overrides without "+".
  trainer.v1.trainer_mode=uec                                   # the UEC step (uec_recipe/trainer.py)
  actor_rollout_ref.rollout.agent.default_agent_loop=uec_agent  # per-row temperature, for T' re-samples
  +uec.enable=true
  +uec.exploration.n=8                                          # G', re-samples per difficult prompt (paper: 20)
  +uec.exploration.temperature=1.2                              # T' (paper)
  +uec.replay.adv_threshold=0.5                                 # A0, replay admission (paper: 1.0)
  +uec.replay.frequency=2                                       # f_replay, steps between replays (paper: 5)
)

# verl imports uec_recipe.plugin in every process (driver, Ray task runner, workers) inside `import verl`: through
# the package's verl.plugins entry point once it is installed (pip install -e .), or through
# VERL_USE_EXTERNAL_MODULES=uec_recipe.plugin with the checkout on PYTHONPATH.
if [[ ",${VERL_USE_EXTERNAL_MODULES:-}," != *,uec_recipe.plugin,* ]]; then
  "$PYTHON" -c 'import importlib.metadata as m, sys
sys.exit(not any(e.value == "uec_recipe.plugin" for e in m.entry_points(group="verl.plugins")))' ||
    die "verl would not load UEC-RL: pip install -e $ROOT, or set VERL_USE_EXTERNAL_MODULES=uec_recipe.plugin"
fi

if [ "$DRY_RUN" = 1 ]; then
  # hydra composes verl's ppo_trainer with every override, prints it and stops: no Ray, no weights loaded.
  exec "$PYTHON" -m verl.trainer.main_ppo "${ARGS[@]}" "${CPU_ARGS[@]+"${CPU_ARGS[@]}"}" "$@" --cfg job --resolve
fi
mkdir -p "$OUT"
export VERL_FILE_LOGGER_PATH="$OUT/metrics.jsonl"           # verl's "file" logger: one JSON line per step
rm -f "$VERL_FILE_LOGGER_PATH"
echo "[$NAME] training $STEPS steps of $MODEL (Ray and the workers start first, about a minute)" >&2
echo "[$NAME] verl's log: $OUT/train.log" >&2
start=$(date +%s)
rc=0
"$PYTHON" -m verl.trainer.main_ppo "${ARGS[@]}" "${CPU_ARGS[@]+"${CPU_ARGS[@]}"}" "$@" >"$OUT/train.log" 2>&1 || rc=$?
if [ "$rc" -ne 0 ]; then
  echo "[$NAME] training failed (exit $rc); the end of $OUT/train.log:" >&2
  tail -n 40 "$OUT/train.log" >&2
  exit "$rc"
fi
echo "[$NAME] done in $(($(date +%s) - start))s; per step, from $OUT/metrics.jsonl:" >&2
"$PYTHON" "$ROOT/examples/verl_grpo_to_uec/show_steps.py" "$OUT/metrics.jsonl"
