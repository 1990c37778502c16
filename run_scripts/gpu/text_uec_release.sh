#!/usr/bin/env bash
# Qwen2.5-Math-7B on DAPO-Math-17k, method: uec_release (preset uec_recipe/config/algo/uec_release.yaml:
# UEC-RL with the released code's rules, exploration kept at |Â| > 1 and replay admitted at |Â| > A0).
source "$(dirname "$0")/text_base.sh"
USER_OVERRIDES=("$@")
run_experiment uec_release text-qwen2.5-math-7b-uec_release "${TASK_OVERRIDES[@]}"
