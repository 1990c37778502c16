#!/usr/bin/env bash
# Qwen2.5-VL-7B-Instruct on Geometry3K, method: kl_cov (preset uec_recipe/config/algo/kl_cov.yaml).
source "$(dirname "$0")/geo3k_base.sh"
USER_OVERRIDES=("$@")
run_experiment kl_cov geo3k-qwen2.5-vl-7b-kl_cov "${TASK_OVERRIDES[@]}"
