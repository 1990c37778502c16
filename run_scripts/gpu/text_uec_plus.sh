#!/usr/bin/env bash
# Qwen2.5-Math-7B on DAPO-Math-17k, method: uec_plus (preset uec_recipe/config/algo/uec_plus.yaml:
# UEC-RL with pipelined exploration and an adaptive exploration budget, docs/algorithm.md "Options").
source "$(dirname "$0")/text_base.sh"
USER_OVERRIDES=("$@")
run_experiment uec_plus text-qwen2.5-math-7b-uec_plus "${TASK_OVERRIDES[@]}"
