#!/usr/bin/env bash
# Qwen2.5-Math-7B on DAPO-Math-17k, method: uec_same_temp (preset uec_recipe/config/algo/uec_same_temp.yaml:
# UEC-RL with the exploration temperature T′ equal to the rollout temperature T).
source "$(dirname "$0")/text_base.sh"
USER_OVERRIDES=("$@")
run_experiment uec_same_temp text-qwen2.5-math-7b-uec_same_temp "${TASK_OVERRIDES[@]}"
