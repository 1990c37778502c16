#!/usr/bin/env bash
# Times the UEC step's stages on whatever this machine has: a GPU (vLLM rollout, FSDP on CUDA) when nvidia-smi
# finds one, else the CPU backend. It trains the embedded demo policy for a few steps and prints where a step's
# time goes (generation, exploration, log-probs, update, replay, UEC bookkeeping).
#   bash run_scripts/stage_timing.sh [--steps N] [--out DIR]      (GPU: a few minutes; CPU: slower)
# On GPU the environment needs the gpu extra (pip install -e '.[gpu]'); ROLLOUT=hf uses the transformers rollout.
set -euo pipefail
main() {
  local root steps=6 out
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  out="$root/outputs/stage_timing"
  while [ $# -gt 0 ]; do
    case "$1" in
      --steps) steps="$2"; shift 2 ;;
      --out) out="$2"; shift 2 ;;
      *) echo "usage: bash run_scripts/stage_timing.sh [--steps N] [--out DIR]" >&2; exit 2 ;;
    esac
  done
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    local py="${PYTHON:-python3}"
    source "$root/run_scripts/demo_env.sh"
    load_demo_env "$py" uec_lab.demo.build
    mkdir -p "$out"
    export VERL_FILE_LOGGER_PATH="$out/metrics.jsonl" HF_HUB_OFFLINE=1 WANDB_MODE=disabled
    rm -f "$VERL_FILE_LOGGER_PATH"
    # the digit-sum demo's settings (config/task/digit_sum.yaml) on one GPU
    "$py" -m uec_recipe.main_uec task=digit_sum trainer.n_gpus_per_node=1 trainer.nnodes=1 \
      actor_rollout_ref.rollout.name="${ROLLOUT:-vllm}" actor_rollout_ref.rollout.tensor_model_parallel_size=1 \
      actor_rollout_ref.rollout.gpu_memory_utilization=0.3 \
      actor_rollout_ref.model.path="$DEMO_MODEL" data.train_files="$DEMO_TRAIN" data.val_files="$DEMO_TEST" \
      trainer.total_training_steps="$steps" trainer.val_before_train=False trainer.test_freq=-1 \
      trainer.default_local_dir="$out/checkpoints"
    "$py" -m uec_lab.summary --metrics "$out/metrics.jsonl" --timings-only
  else
    echo "[stage_timing] no GPU found: timing the CPU backend" >&2
    bash "$root/run_scripts/quickstart_cpu.sh" --steps "$steps" --out "$out" -- trainer.val_before_train=False
    "${UEC_VENV:-$root/.venv}/bin/python" -m uec_lab.summary --metrics "$out/metrics.jsonl" --timings-only
  fi
}
main "$@"; exit
