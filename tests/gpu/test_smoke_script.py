"""run_scripts/gpu/smoke.sh as composed under DRY_RUN=1 (no GPU, no build): a Ray of its own, the rollout servers'
request log reaching every Ray process, validation in the text run, and the VLM's own pixel limits passed through
``data.mm_processor_kwargs`` and handed to the checks."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from uec_lab.smoke.build import VLM_SETTINGS
from uec_recipe.main_uec import DRY_RUN_HEADER

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "run_scripts" / "gpu" / "smoke.sh"


@pytest.fixture(scope="module")
def configs(tmp_path_factory) -> tuple[Path, dict, dict]:
    smoke_dir = tmp_path_factory.mktemp("smoke")
    env = {**os.environ, "DRY_RUN": "1", "PYTHON": sys.executable, "SMOKE_DIR": str(smoke_dir)}
    # a Ray address or log paths of the caller's shell must not leak into the smoke's runs
    env.update(RAY_ADDRESS="127.0.0.1:6379", UEC_SERVER_LOG="/elsewhere", UEC_AGENT_REQUEST_LOG="/elsewhere/r.jsonl")
    env["LOGGER"] = "console,wandb"  # the checks read the file logger, whatever LOGGER says
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("WANDB_MODE", None)  # forwarded to Ray when set; not part of what the smoke itself sets
    done = subprocess.run(["bash", str(SMOKE)], capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    parts = done.stdout.split(DRY_RUN_HEADER)[1:]
    text, vlm = (
        yaml.safe_load("\n".join(line for line in part.splitlines() if not line.startswith("["))) for part in parts
    )
    return smoke_dir, text, vlm


def test_both_runs_start_a_ray_of_their_own_and_log_on_the_rollout_server(configs):
    smoke_dir, text, vlm = configs
    for label, config in (("text", text), ("vlm", vlm)):
        ray_init = config["ray_kwargs"]["ray_init"]
        assert ray_init["address"] == "local"  # not a Ray already running on the node
        assert ray_init["runtime_env"]["env_vars"] == {
            "VERL_FILE_LOGGER_PATH": f"{smoke_dir}/{label}/metrics.jsonl",
            "UEC_AGENT_REQUEST_LOG": f"{smoke_dir}/{label}/requests.jsonl",
            "UEC_SERVER_LOG": f"{smoke_dir}/{label}/server",
        }


def test_the_text_run_validates_after_its_last_step_and_the_vlm_run_does_not(configs):
    _, text, vlm = configs
    assert (text["trainer"]["test_freq"], text["trainer"]["total_training_steps"]) == (3, 3)
    assert text["trainer"]["val_before_train"] is False
    val_kwargs = text["actor_rollout_ref"]["rollout"]["val_kwargs"]
    assert (val_kwargs["temperature"], val_kwargs["n"], val_kwargs["do_sample"]) == (0.5, 1, True)
    assert vlm["trainer"]["test_freq"] == -1


def test_the_vlm_run_and_its_checks_get_the_tiny_vlms_own_pixel_limits(configs):
    _, text, vlm = configs
    limits = {"min_pixels": VLM_SETTINGS.min_pixels, "max_pixels": VLM_SETTINGS.max_pixels}
    assert vlm["data"]["mm_processor_kwargs"] == limits
    assert not text["data"]["mm_processor_kwargs"]
    # the checks are told the same limits (the script passes them as JSON to uec_lab.smoke.check)
    match = re.search(r"""local mm_processor_json='([^']*)'""", SMOKE.read_text())
    assert match and json.loads(match.group(1)) == limits


def test_both_runs_are_tiny_uec_runs_on_the_paper_runs_engine_settings(configs):
    smoke_dir, text, vlm = configs
    for label, config, steps in (("text", text, 3), ("vlm", vlm, 2)):
        arr, uec, trainer = config["actor_rollout_ref"], config["uec"], config["trainer"]
        placement = (trainer["n_gpus_per_node"], trainer["nnodes"], arr["rollout"]["tensor_model_parallel_size"])
        assert placement == (1, 1, 1)
        assert arr["rollout"]["name"] == "vllm" and arr["rollout"]["enforce_eager"] is True
        assert arr["model"]["path"] == f"{smoke_dir}/build/{label}/model"
        assert (config["data"]["train_batch_size"], arr["rollout"]["n"]) == (8, 4)
        assert (arr["rollout"]["temperature"], arr["rollout"]["top_p"]) == (1.0, 0.99)
        assert (uec["exploration"]["n"], uec["exploration"]["temperature"]) == (8, 1.2)
        assert uec["n0"] == 8 and (uec["replay"]["frequency"], uec["replay"]["adv_threshold"]) == (1, 0)
        assert uec["retention"]["drop_overlong_positive"] == "none"
        assert (trainer["total_training_steps"], trainer["save_freq"]) == (steps, steps)
        assert trainer["default_local_dir"] == f"{smoke_dir}/{label}/checkpoints"
        assert trainer["logger"] == ["console", "file"]  # LOGGER=console,wandb was given: the file logger stays
        assert config["reward"]["custom_reward_function"]["path"] == "pkg://uec_lab.smoke.reward"
        # the paper runs' engine settings are what the smoke exercises
        assert arr["model"]["use_remove_padding"] is True and arr["actor"]["use_dynamic_bsz"] is True
    assert (text["data"]["max_prompt_length"], text["data"]["max_response_length"]) == (64, 16)
    # VLM responses long enough to end early: equal-length M-RoPE batches trip a verl 0.9.1 bug (docs/vlm.md)
    assert (vlm["data"]["max_prompt_length"], vlm["data"]["max_response_length"]) == (256, 512)
    assert vlm["data"]["image_key"] == "images"
    assert vlm["data"]["train_files"] == f"{smoke_dir}/build/vlm/geo3k_train.parquet"
    assert vlm["actor_rollout_ref"]["model"]["use_fused_kernels"] is True
    assert text["actor_rollout_ref"]["model"]["use_fused_kernels"] is False
