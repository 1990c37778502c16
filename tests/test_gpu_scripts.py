"""Every GPU script composes under DRY_RUN=1 with the settings that define its experiment (no Ray, GPU or weights).

A refactor that silently changes a paper setting, a preset or a data file makes one of these fail.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from uec_recipe.main_uec import DRY_RUN_HEADER

REPO = Path(__file__).resolve().parents[1]
METHODS = ["uec", "grpo", "dapo", "kl_cov", "entropy_adv"]


def dry_run(script: str, *overrides: str, **env_extra) -> dict:
    env = {**os.environ, "DRY_RUN": "1", "PYTHON": sys.executable, "DATA_DIR": "/data/uec", **env_extra}
    result = subprocess.run(
        ["bash", str(REPO / "run_scripts/gpu" / script), *overrides],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "configuration composed and validated" in result.stderr
    return yaml.safe_load(result.stdout.split(DRY_RUN_HEADER, 1)[1])


def check_paper_settings(config: dict) -> None:
    arr = config["actor_rollout_ref"]
    assert config["data"]["train_batch_size"] == 512 and arr["rollout"]["n"] == 5
    assert (arr["rollout"]["temperature"], arr["rollout"]["top_p"]) == (1.0, 0.99)
    assert (config["data"]["max_prompt_length"], config["data"]["max_response_length"]) == (2048, 2048)
    assert arr["actor"]["optim"]["lr"] == 1e-6 and arr["actor"]["ppo_mini_batch_size"] == 128
    assert arr["actor"]["ppo_epochs"] == 1
    assert (arr["rollout"]["val_kwargs"]["temperature"], arr["rollout"]["val_kwargs"]["n"]) == (0.5, 1)
    assert arr["rollout"]["name"] == "vllm" and arr["rollout"]["tensor_model_parallel_size"] == 2
    assert config["trainer"]["n_gpus_per_node"] == 8 and config["trainer"]["nnodes"] == 1


def check_method(config: dict, method: str) -> None:
    actor, algorithm, uec = config["actor_rollout_ref"]["actor"], config["algorithm"], config["uec"]
    assert uec["enable"] is (method == "uec")
    if method == "uec":
        assert algorithm["adv_estimator"] == "uec"
        assert (uec["exploration"]["n"], uec["exploration"]["temperature"]) == (20, 1.2)
        assert uec["exploration"]["retention"] == "positive" and uec["retention"]["regular_abs_adv"] == 0.05
        assert (uec["replay"]["adv_threshold"], uec["replay"]["capacity_multiple"], uec["replay"]["frequency"]) == (
            1.0,
            2.0,
            5,
        )
        assert config["actor_rollout_ref"]["rollout"]["agent"]["default_agent_loop"] == "uec_agent"
    else:
        assert algorithm["adv_estimator"] == "grpo"
    kl = method != "dapo"
    assert actor["use_kl_loss"] is kl and (
        not kl or (actor["kl_loss_coef"], actor["kl_loss_type"]) == (0.01, "low_var_kl")
    )
    assert actor["clip_ratio_low"] == 0.2 and actor["clip_ratio_high"] == (0.28 if method == "dapo" else 0.2)
    assert actor["clip_ratio_c"] == 3.0 and actor["loss_agg_mode"] == "token-mean"
    assert actor["policy_loss"]["loss_mode"] == ("kl_cov" if method == "kl_cov" else "vanilla")
    if method == "kl_cov":
        assert (actor["policy_loss"]["kl_cov_ratio"], actor["policy_loss"]["ppo_kl_coef"]) == (0.002, 1.0)
    if method == "dapo":
        assert algorithm["filter_groups"]["enable"] is True and algorithm["filter_groups"]["metric"] == "acc"
        assert config["reward"]["reward_manager"]["name"] == "dapo"
    assert algorithm.get("entropy_adv", {}).get("enable", False) is (method == "entropy_adv")
    if method == "entropy_adv":
        assert (algorithm["entropy_adv"]["alpha"], algorithm["entropy_adv"]["kappa"]) == (0.4, 2.0)


@pytest.mark.parametrize("method", METHODS)
def test_text_scripts(method):
    config = dry_run(f"text_{method}.sh")
    check_paper_settings(config)
    check_method(config, method)
    assert config["actor_rollout_ref"]["model"]["path"] == "Qwen/Qwen2.5-Math-7B"
    assert config["data"]["train_files"] == "/data/uec/dapo_math_17k.parquet"
    assert config["data"]["val_files"] == ["/data/uec/aime2024.parquet", "/data/uec/math500.parquet"]
    assert config["trainer"]["experiment_name"] == f"text-qwen2.5-math-7b-{method}"


@pytest.mark.parametrize("method", METHODS)
def test_geo3k_scripts(method):
    config = dry_run(f"geo3k_{method}.sh")
    check_paper_settings(config)
    check_method(config, method)
    assert config["actor_rollout_ref"]["model"]["path"] == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert config["data"]["train_files"] == "/data/uec/geo3k_train.parquet"
    assert config["data"]["val_files"] == "/data/uec/geo3k_test.parquet"
    assert config["data"]["image_key"] == "images"
    assert config["data"]["mm_processor_kwargs"] == {"min_pixels": 262144, "max_pixels": 4194304}


def test_knobs_and_extra_overrides_reach_the_config():
    config = dry_run(
        "text_uec.sh",
        "uec.exploration.temperature=1.1",
        NNODES="2",
        GPUS_PER_NODE="4",
        TP="4",
        MODEL_PATH="/models/m",
        EXPERIMENT="mine",
        ROLLOUT="sglang",
    )
    assert config["uec"]["exploration"]["temperature"] == 1.1
    assert (config["trainer"]["nnodes"], config["trainer"]["n_gpus_per_node"]) == (2, 4)
    assert config["actor_rollout_ref"]["rollout"]["tensor_model_parallel_size"] == 4
    assert config["actor_rollout_ref"]["rollout"]["name"] == "sglang"
    assert (
        config["actor_rollout_ref"]["model"]["path"] == "/models/m" and config["trainer"]["experiment_name"] == "mine"
    )


def test_a_typo_fails_loudly():
    env = {**os.environ, "DRY_RUN": "1", "PYTHON": sys.executable}
    result = subprocess.run(
        ["bash", str(REPO / "run_scripts/gpu/text_uec.sh"), "uec.exploraton.n=8"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert result.returncode != 0 and "exploraton" in result.stderr
