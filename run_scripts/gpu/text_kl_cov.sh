#!/usr/bin/env bash
# Qwen2.5-Math-7B on DAPO-Math-17k, method: kl_cov (preset uec_recipe/config/algo/kl_cov.yaml).
source "$(dirname "$0")/text_base.sh"
USER_OVERRIDES=("$@")
run_experiment kl_cov text-qwen2.5-math-7b-kl_cov "${TASK_OVERRIDES[@]}"
