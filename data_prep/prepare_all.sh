#!/usr/bin/env bash
# Prepare every dataset the paper trains and evaluates on (data_prep/README.md lists them) into DIR, from the hub.
#
#   bash data_prep/prepare_all.sh DIR [--overwrite]
#
# Writes DIR/<NAME>.parquet for each NAME in data_prep/sources.py::DATASETS. Files already in DIR are skipped unless
# --overwrite is given, so a run cut short by the network can simply be started again. Every dataset is attempted;
# the script exits 1 at the end if any failed. Set PYTHON to pick the interpreter (default: python).
set -uo pipefail

if [[ $# -lt 1 || "$1" == -* ]]; then
  echo "usage: bash data_prep/prepare_all.sh DIR [--overwrite]" >&2
  exit 2
fi
PYTHON=${PYTHON:-python}
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mkdir -p "$1" || exit 2
OUT_DIR=$(cd "$1" && pwd)
shift
OVERWRITE=0
for arg in "$@"; do
  [[ "$arg" == "--overwrite" ]] && OVERWRITE=1
done
export PYTHONPATH="$REPO_ROOT${PYTHONPATH:+:$PYTHONPATH}"

# One list of datasets: the table in data_prep/sources.py.
NAMES=$("$PYTHON" -c "from data_prep.sources import DATASETS; print(' '.join(DATASETS))") || exit 1

failed=()
for name in $NAMES; do
  if [[ -e "$OUT_DIR/$name.parquet" && $OVERWRITE -eq 0 ]]; then
    echo "$name: $OUT_DIR/$name.parquet exists, skipped (pass --overwrite to redo)"
    continue
  fi
  "$PYTHON" -m data_prep.prepare "$name" --out "$OUT_DIR" "$@" || failed+=("$name")
done

if [[ ${#failed[@]} -gt 0 ]]; then
  echo "prepare_all: FAILED: ${failed[*]} (the others are in $OUT_DIR)" >&2
  exit 1
fi
echo "prepare_all: all datasets are in $OUT_DIR"
