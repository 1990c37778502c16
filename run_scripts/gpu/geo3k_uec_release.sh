#!/usr/bin/env bash
# Qwen2.5-VL-7B-Instruct on Geometry3K, method: uec_release (preset uec_recipe/config/algo/uec_release.yaml:
# UEC-RL with the released code's rules, exploration kept at |Â| > 1 and replay admitted at |Â| > A0).
source "$(dirname "$0")/geo3k_base.sh"
USER_OVERRIDES=("$@")
run_experiment uec_release geo3k-qwen2.5-vl-7b-uec_release "${TASK_OVERRIDES[@]}"
