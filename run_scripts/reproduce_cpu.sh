#!/usr/bin/env bash
# The CPU reproduction study: GRPO, DAPO, KL-Cov, Entropy-Adv, UEC-RL and its ablations, several seeds each, through
# the real verl trainer on a CPU task (--task chains, task v2 on its shipped base policy, by default; --task digits,
# the first task); each final policy sampled and decoded greedily on the held-out levels; tables, curves and
# DIR/report.md built from them (uec_lab/study/run.py, uec_lab/study/report.py; docs/results.md reads one).
#   bash run_scripts/reproduce_cpu.sh [--quick] [--seeds N] [--other-seeds N] [--steps N] [--methods a,b] [--out DIR]
#          [--task chains|digits] [--plan docs/study-plan.md] [--eval-n N] [--eval-problems K] [--jobs N]
#          [-- overrides for every run]
# --plan: the pre-registered plan fixes methods, seeds per method and steps (docs/study-plan.md).
# --jobs N: N runs at a time (default 1); runs that share the machine get no cost figures in the report.
# Resumable: rerun the same command and finished runs are skipped. --quick: one seed of GRPO and UEC-RL, fewer steps.
set -euo pipefail

# Read whole before running (see quickstart_cpu.sh): editing the file during a long study cannot change it.
main() {
  ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  OUT="$ROOT/outputs/study"
  ARGS=()
  OVERRIDES=()
  TASK=chains
  PLAN=""
  usage() {
    echo "usage: bash run_scripts/reproduce_cpu.sh [--quick] [--seeds N] [--other-seeds N] [--steps N]" \
      "[--methods a,b] [--out DIR] [--task chains|digits] [--eval-n N] [--eval-problems K] [--jobs N]" \
      "[-- overrides]" >&2
    exit 2
  }
  while [ $# -gt 0 ]; do
    case "$1" in
      --quick) ARGS+=(--quick); shift ;;
      --plan) [ $# -ge 2 ] || usage; PLAN="$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"; ARGS+=("$1" "$PLAN"); shift 2 ;;
      --seeds|--other-seeds|--steps|--methods|--eval-n|--eval-problems|--jobs)
        [ $# -ge 2 ] || usage; ARGS+=("$1" "$2"); shift 2 ;;
      --out) [ $# -ge 2 ] || usage; OUT="$2"; shift 2 ;;
      --task) [ $# -ge 2 ] || usage; TASK="$2"; ARGS+=("$1" "$2"); shift 2 ;;
      --) shift; OVERRIDES=("$@"); break ;;
      -h|--help) usage ;;
      *) echo "unknown argument: $1" >&2; usage ;;
    esac
  done
  case "$OUT" in --*) echo "--out needs a directory, got '$OUT'" >&2; exit 2 ;; esac
  case "$TASK" in chains|digits) ;; *) echo "--task must be chains or digits, got '$TASK'" >&2; exit 2 ;; esac
  COMMAND="bash run_scripts/reproduce_cpu.sh ${ARGS[*]+"${ARGS[*]}"} --out $OUT${OVERRIDES[*]+ -- ${OVERRIDES[*]}}"

  source "$ROOT/run_scripts/setup_env.sh"
  # The environment of every run's processes: the CPU platform plugin loads where VERL_PLATFORM=cpu. The runs'
  # configuration is config groups (platform=cpu task=chain_sum setting=study_v2, or task=digit_sum setting=study;
  # uec_lab/study/run.py).
  export VERL_PLATFORM=cpu
  export HF_HUB_OFFLINE=1 WANDB_MODE=disabled RAY_USAGE_STATS_ENABLED=0 TOKENIZERS_PARALLELISM=false
  source "$ROOT/run_scripts/demo_env.sh"
  # exports DEMO_MODEL, DEMO_TRAIN, DEMO_TEST, DEMO_REPORT: the shipped task v2 (hash-checked) or the first task
  if [ "$TASK" = chains ]; then load_demo_env "$PY" uec_lab.demo.chain_build; else load_demo_env "$PY" uec_lab.demo.build; fi
  mkdir -p "$OUT"
  OUT="$(cd "$OUT" && pwd)"
  "$PY" -m uec_lab.study run --out "$OUT" "${ARGS[@]+"${ARGS[@]}"}" -- "${OVERRIDES[@]+"${OVERRIDES[@]}"}"
  local report_plan=()
  [ -z "$PLAN" ] || report_plan=(--plan "$PLAN")
  "$PY" -m uec_lab.study report --out "$OUT" "${report_plan[@]+"${report_plan[@]}"}" --command-line "$COMMAND" > /dev/null
  echo "[study] wrote $OUT/report.md (tables, intervals, costs) and $OUT/figures/"
}

main "$@"; exit
