# Creates ./.venv (if absent) and installs the project into it; sourced by quickstart_cpu.sh and test.sh.
# torch is installed first and pinned to the CPU build: verl's cpu/vllm/fsdp extras would pull a CUDA torch.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${UEC_VENV:-$ROOT/.venv}"
PY_BIN="${PYTHON:-}"
if [ -z "$PY_BIN" ]; then
  for candidate in python3.11 python3.12 python3.10 python3; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import sys; sys.exit(not ((3,10) <= sys.version_info[:2] <= (3,12)))'; then
      PY_BIN="$candidate"; break
    fi
  done
fi
[ -n "$PY_BIN" ] || { echo "error: Python 3.10-3.12 is required (verl 0.9.1 supports no other)" >&2; exit 1; }
stamp="$VENV/.uec-installed"
if [ ! -f "$stamp" ] || [ "$ROOT/setup.py" -nt "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
  echo "[setup] creating $VENV and installing uec-rl (first run: about 2-3 minutes)" >&2
  setup_start=$(date +%s)
  [ -x "$VENV/bin/python" ] || "$PY_BIN" -m venv "$VENV"
  pip_install() { "$VENV/bin/python" -m pip install --quiet "$@" 2> >(grep -v "^WARNING: Location" >&2); }
  pip_install --upgrade pip
  echo "[setup] 1/2 torch 2.13.0, CPU build (about 30 s)" >&2
  pip_install "torch==2.13.0"
  echo "[setup] 2/2 verl 0.9.1 and the recipe (about 2 minutes; $(( $(date +%s) - setup_start ))s so far)" >&2
  pip_install -e "$ROOT[dev]"
  echo "[setup] done in $(( $(date +%s) - setup_start ))s" >&2
  "$VENV/bin/python" -c "import torch, verl, uec_recipe" \
    || { echo "error: the environment in $VENV did not install cleanly; delete it and rerun" >&2; exit 1; }
  touch "$stamp"
fi
PY="$VENV/bin/python"
export PATH="$VENV/bin:$PATH"
