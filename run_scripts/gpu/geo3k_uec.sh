#!/usr/bin/env bash
# Qwen2.5-VL-7B-Instruct on Geometry3K, method: uec (preset uec_recipe/config/algo/uec.yaml).
source "$(dirname "$0")/geo3k_base.sh"
USER_OVERRIDES=("$@")
run_experiment uec geo3k-qwen2.5-vl-7b-uec "${TASK_OVERRIDES[@]}"
