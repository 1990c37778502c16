#!/usr/bin/env bash
# Qwen2.5-VL-7B-Instruct on Geometry3K, method: uec_plus (preset uec_recipe/config/algo/uec_plus.yaml:
# UEC-RL with pipelined exploration and an adaptive exploration budget, docs/algorithm.md "Options").
source "$(dirname "$0")/geo3k_base.sh"
USER_OVERRIDES=("$@")
run_experiment uec_plus geo3k-qwen2.5-vl-7b-uec_plus "${TASK_OVERRIDES[@]}"
