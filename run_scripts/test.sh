#!/usr/bin/env bash
# The test command: sets up .venv (as the quickstart does) and runs the whole test suite.
#   bash run_scripts/test.sh [pytest args]
# The demo model is built once per machine (cached in ~/.cache/uec-rl) and shared by every test.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/run_scripts/setup_env.sh"
cd "$ROOT"
export HF_HUB_OFFLINE=1 WANDB_MODE=disabled RAY_USAGE_STATS_ENABLED=0 TOKENIZERS_PARALLELISM=false
exec "$PY" -m pytest "$@"
