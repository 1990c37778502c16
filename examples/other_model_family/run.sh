#!/usr/bin/env bash
# UEC-RL on a Llama-architecture policy: builds (or reuses) the tiny Llama of build_llama.py, then runs
# examples/verl_grpo_to_uec/uec.sh on it unchanged: only MODEL, TRAIN and TEST differ from the Qwen2 demo's run.
#
#   bash examples/other_model_family/run.sh [hydra overrides...]
#
# Knobs (environment variables, passed on to uec.sh): STEPS, OUT, PYTHON, UEC_CACHE_DIR (where the build is cached).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
export OUT="${OUT:-$ROOT/outputs/other_model_family}"

[ -x "$PYTHON" ] || { echo "run.sh: no Python at $PYTHON: run 'bash run_scripts/setup_env.sh' or set PYTHON" >&2; exit 2; }
llama_env="$("$PYTHON" "$ROOT/examples/other_model_family/build_llama.py" --print-env)" ||
  { echo "run.sh: building the Llama policy failed (see above)" >&2; exit 1; }
eval "$llama_env"                                           # MODEL=... TRAIN=... TEST=...
export MODEL TRAIN TEST PYTHON
exec bash "$ROOT/examples/verl_grpo_to_uec/uec.sh" "$@"
