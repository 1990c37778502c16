#!/usr/bin/env bash
# Qwen2.5-Math-7B on DAPO-Math-17k, method: entropy_adv (preset uec_recipe/config/algo/entropy_adv.yaml).
source "$(dirname "$0")/text_base.sh"
USER_OVERRIDES=("$@")
run_experiment entropy_adv text-qwen2.5-math-7b-entropy_adv "${TASK_OVERRIDES[@]}"
