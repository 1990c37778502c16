"""The quickstart's --task vlm wiring without Ray: --print-env, and the config group task=vlm_counting composed on
top of platform=cpu into a configuration verl and UEC-RL accept (the checks of UEC_DRY_RUN, in this process)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[2]


def test_print_env_prints_only_the_demo_paths(vlm_demo):
    result = subprocess.run(
        [sys.executable, "-m", "uec_lab.demo.vlm", "--print-env"], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines() == [
        f"DEMO_MODEL={vlm_demo.model_dir}",
        f"DEMO_TRAIN={vlm_demo.train_file}",
        f"DEMO_TEST={vlm_demo.test_file}",
        f"DEMO_REPORT={vlm_demo.report_file}",
    ]
    assert "[vlm] reusing cached model and data" in result.stderr


def test_vlm_task_composes_into_a_valid_configuration(vlm_demo):
    from uec_recipe.main_uec import dry_run_config

    config = dry_run_config(
        [
            "algo=uec",
            "platform=cpu",
            "task=vlm_counting",
            f"actor_rollout_ref.model.path={vlm_demo.model_dir}",
            f"data.train_files={vlm_demo.train_file}",
            f"data.val_files={vlm_demo.test_file}",
        ]
    )
    config = OmegaConf.to_container(config, resolve=True)
    data, model = config["data"], config["actor_rollout_ref"]["model"]
    assert data["image_key"] == "images"
    assert data["custom_cls"] == {"path": "pkg://uec_recipe.cpu.vlm_runtime", "name": "PILImageRLHFDataset"}
    assert model["external_lib"] == "uec_recipe.cpu.vlm_runtime"
    assert (data["max_prompt_length"], data["max_response_length"]) == (256, 40)  # the VLM values win
    assert config["actor_rollout_ref"]["rollout"]["prompt_length"] == 256
