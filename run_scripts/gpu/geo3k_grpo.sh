#!/usr/bin/env bash
# Qwen2.5-VL-7B-Instruct on Geometry3K, method: grpo (preset uec_recipe/config/algo/grpo.yaml).
source "$(dirname "$0")/geo3k_base.sh"
USER_OVERRIDES=("$@")
run_experiment grpo geo3k-qwen2.5-vl-7b-grpo "${TASK_OVERRIDES[@]}"
