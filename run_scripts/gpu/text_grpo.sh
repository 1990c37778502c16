#!/usr/bin/env bash
# Qwen2.5-Math-7B on DAPO-Math-17k, method: grpo (preset uec_recipe/config/algo/grpo.yaml).
source "$(dirname "$0")/text_base.sh"
USER_OVERRIDES=("$@")
run_experiment grpo text-qwen2.5-math-7b-grpo "${TASK_OVERRIDES[@]}"
