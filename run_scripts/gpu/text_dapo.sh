#!/usr/bin/env bash
# Qwen2.5-Math-7B on DAPO-Math-17k, method: dapo (preset uec_recipe/config/algo/dapo.yaml).
source "$(dirname "$0")/text_base.sh"
USER_OVERRIDES=("$@")
run_experiment dapo text-qwen2.5-math-7b-dapo "${TASK_OVERRIDES[@]}"
