#!/usr/bin/env bash
# Qwen2.5-VL-7B-Instruct on Geometry3K, method: entropy_adv (preset uec_recipe/config/algo/entropy_adv.yaml).
source "$(dirname "$0")/geo3k_base.sh"
USER_OVERRIDES=("$@")
run_experiment entropy_adv geo3k-qwen2.5-vl-7b-entropy_adv "${TASK_OVERRIDES[@]}"
