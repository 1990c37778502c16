"""The quickstart's --task vlm wiring without Ray: --print-env, and run_scripts/vlm_overrides.sh composed on top of
the CPU and demo overrides into a configuration verl and UEC-RL accept (UEC_DRY_RUN)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

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


def test_vlm_overrides_compose_into_a_valid_configuration(vlm_demo):
    script = f"""
        set -euo pipefail
        ROOT={REPO}
        source "$ROOT/run_scripts/cpu_overrides.sh"
        source "$ROOT/run_scripts/demo_overrides.sh"
        source "$ROOT/run_scripts/vlm_overrides.sh"
        UEC_DRY_RUN=1 "{sys.executable}" -m uec_recipe.main_uec algo=uec \\
          "${{CPU_OVERRIDES[@]}}" "${{DEMO_OVERRIDES[@]}}" "${{VLM_OVERRIDES[@]}}" \\
          actor_rollout_ref.model.path={vlm_demo.model_dir} \\
          data.train_files={vlm_demo.train_file} data.val_files={vlm_demo.test_file}
    """
    result = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, timeout=300, cwd=REPO, env={**os.environ}
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # the resolved configuration as YAML, after hydra's log lines ("[time][logger][LEVEL] - ...")
    config = yaml.safe_load("\n".join(line for line in result.stdout.splitlines() if not line.startswith("[")))
    data, model = config["data"], config["actor_rollout_ref"]["model"]
    assert data["image_key"] == "images"
    assert data["custom_cls"] == {"path": "pkg://uec_recipe.cpu.vlm_runtime", "name": "PILImageRLHFDataset"}
    assert model["external_lib"] == "uec_recipe.cpu.vlm_runtime"
    assert (data["max_prompt_length"], data["max_response_length"]) == (256, 40)  # the VLM values win
    assert config["actor_rollout_ref"]["rollout"]["prompt_length"] == 256
