#!/usr/bin/env bash
# Qwen2.5-Math-7B on DAPO-Math-17k, method: uec (preset uec_recipe/config/algo/uec.yaml).
source "$(dirname "$0")/text_base.sh"
USER_OVERRIDES=("$@")
run_experiment uec text-qwen2.5-math-7b-uec "${TASK_OVERRIDES[@]}"
