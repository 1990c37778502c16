#!/usr/bin/env bash
# Qwen2.5-VL-7B-Instruct on Geometry3K, method: uec_same_temp (preset uec_recipe/config/algo/uec_same_temp.yaml:
# UEC-RL with the exploration temperature T′ equal to the rollout temperature T).
source "$(dirname "$0")/geo3k_base.sh"
USER_OVERRIDES=("$@")
run_experiment uec_same_temp geo3k-qwen2.5-vl-7b-uec_same_temp "${TASK_OVERRIDES[@]}"
