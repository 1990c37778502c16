#!/usr/bin/env bash
# The CPU quickstart: trains the shipped task-v2 policy (carry-less chain sums) with the real verl trainer on CPU.
#   bash run_scripts/quickstart_cpu.sh [--steps N] [--algo NAME] [--task chains|digits|vlm] [--out DIR] [-- overrides...]
# Creates .venv on first use, takes the tiny model and data (chains: shipped in assets/chain_sum/, hash-checked;
# digits, vlm: built on this machine and cached), trains, and writes
# DIR/metrics.jsonl (verl's metrics, one line per step), DIR/curves.png and DIR/summary.md.
set -euo pipefail

# The whole script is one function that bash reads before running it, called on a line that also exits:
# editing or updating the file during a long run cannot change what the run executes.
main() {
  ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

  STEPS=20
  ALGO=uec
  TASK=chains
  OUT="$ROOT/outputs/quickstart"
  EXTRA_OVERRIDES=()
  usage() {
    echo "usage: bash run_scripts/quickstart_cpu.sh [--steps N] [--algo NAME] [--task chains|digits|vlm] [--out DIR]" \
      "[-- hydra overrides...]" >&2
    exit 2
  }
  while [ $# -gt 0 ]; do
    case "$1" in
      --steps) [ $# -ge 2 ] || usage; STEPS="$2"; shift 2 ;;
      --algo) [ $# -ge 2 ] || usage; ALGO="$2"; shift 2 ;;
      --task) [ $# -ge 2 ] || usage; TASK="$2"; shift 2 ;;
      --out) [ $# -ge 2 ] || usage; OUT="$2"; shift 2 ;;
      --) shift; EXTRA_OVERRIDES=("$@"); break ;;
      -h|--help) usage ;;
      *) echo "unknown argument: $1" >&2; usage ;;
    esac
  done
  [[ "$STEPS" =~ ^[1-9][0-9]*$ ]] || { echo "--steps must be a positive integer, got '$STEPS'" >&2; exit 2; }
  [ -f "$ROOT/uec_recipe/config/algo/$ALGO.yaml" ] || {
    echo "--algo must be one of: $(ls "$ROOT/uec_recipe/config/algo" | sed 's/\.yaml$//' | tr '\n' ' ')" >&2; exit 2; }

  case "$TASK" in chains|digits|vlm) ;; *) echo "--task must be chains, digits or vlm, got '$TASK'" >&2; exit 2 ;; esac

  source "$ROOT/run_scripts/setup_env.sh"
  # The CPU platform plugin (uec_recipe/cpu/platform.py) is loaded in every process that sees VERL_PLATFORM=cpu.
  export VERL_PLATFORM=cpu
  export HF_HUB_OFFLINE=1 WANDB_MODE=disabled RAY_USAGE_STATS_ENABLED=0 TOKENIZERS_PARALLELISM=false
  # What runs is config groups (uec_recipe/config/): platform=cpu (the CPU backend) and the task's demo settings;
  # the paper's values are in uec_trainer.yaml. The demo builder sets DEMO_MODEL etc. (run_scripts/demo_env.sh).
  source "$ROOT/run_scripts/demo_env.sh"
  local task_group
  case "$TASK" in
    chains)
      task_group=chain_sum  # task v2: the shipped base policy, the same on every machine (no warm start)
      load_demo_env "$PY" uec_lab.demo.chain_build ;;
    digits)
      task_group=digit_sum  # the first CPU task: 5-token answers, built and warm-started on this machine
      load_demo_env "$PY" uec_lab.demo.build ;;
    vlm)
      task_group=vlm_counting  # the tiny vision-language policy and its counting task
      load_demo_env "$PY" uec_lab.demo.vlm ;;
  esac

  mkdir -p "$OUT"
  OUT="$(cd "$OUT" && pwd)"
  LOG="$OUT/train.log"
  rm -f "$OUT/metrics.jsonl"
  export VERL_FILE_LOGGER_PATH="$OUT/metrics.jsonl"
  # the grader the rewards use, named in the summary (uec_recipe/reward/; the config default is "paper")
  GRADER=paper
  for override in "${EXTRA_OVERRIDES[@]+"${EXTRA_OVERRIDES[@]}"}"; do
    case "$override" in *reward.custom_reward_function.reward_kwargs.grader=*) GRADER="${override##*=}" ;; esac
  done
  echo "[quickstart] algo=$ALGO task=$TASK steps=$STEPS out=$OUT"
  echo "[quickstart] starting Ray and the workers (about a minute), then one line per step; full log: $LOG"
  start=$(date +%s)
  "$PY" -m uec_recipe.main_uec algo="$ALGO" platform=cpu task="$task_group" \
    actor_rollout_ref.model.path="$DEMO_MODEL" data.train_files="$DEMO_TRAIN" data.val_files="$DEMO_TEST" \
    trainer.total_training_steps="$STEPS" trainer.test_freq="$STEPS" \
    trainer.experiment_name="quickstart-$TASK-$ALGO" trainer.default_local_dir="$OUT/checkpoints" \
    hydra.run.dir="$OUT/hydra" \
    "${EXTRA_OVERRIDES[@]+"${EXTRA_OVERRIDES[@]}"}" > "$LOG" 2>&1 &
  local train_pid=$!
  # The console shows the recipe's own lines ([uec] progress, restores, warnings); verl's log stays in train.log.
  tail -n +1 -F --pid="$train_pid" "$LOG" 2>/dev/null | grep --line-buffered -o '\[uec\].*' || true
  local rc=0
  wait "$train_pid" || rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "[quickstart] training failed (exit $rc); the end of $LOG:" >&2
    tail -n 40 "$LOG" >&2
    exit "$rc"
  fi
  echo "[quickstart] training finished in $(( $(date +%s) - start ))s"
  "$PY" -m uec_recipe.eval.curves --run "$ALGO=$OUT/metrics.jsonl" --out "$OUT/curves.png" \
    --metrics entropy/regular_rollout critic/score/mean response_length/mean "val-core/*/acc/mean@*" \
    "val-passk/*/pass@1" uec/difficult_prompts uec/exploration_kept uec/batch_buffer_size uec/replay_buffer_size \
    > /dev/null
  "$PY" -m uec_lab.summary --metrics "$OUT/metrics.jsonl" --algo "$ALGO" --curves curves.png --grader "$GRADER" \
    --demo-report "$DEMO_REPORT" --train-log "$LOG" --out "$OUT/summary.md"
  echo "[quickstart] wrote $OUT/summary.md, $OUT/curves.png and $OUT/metrics.jsonl (verl's log: $LOG)"
}

main "$@"; exit
