#!/usr/bin/env bash
# Qwen2.5-VL-7B-Instruct on Geometry3K, method: dapo (preset uec_recipe/config/algo/dapo.yaml).
source "$(dirname "$0")/geo3k_base.sh"
USER_OVERRIDES=("$@")
run_experiment dapo geo3k-qwen2.5-vl-7b-dapo "${TASK_OVERRIDES[@]}"
