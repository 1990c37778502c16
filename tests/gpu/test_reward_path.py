"""The reward function the GPU scripts name is loaded the way verl's reward workers load it, from anywhere.

verl 0.9.1's reward loop worker calls ``verl.trainer.ppo.reward.load_reward_manager(config, tokenizer, ...)`` and
then ``run_single`` per sample (``verl/experimental/reward_loop/reward_loop.py``). Here that runs in a fresh
interpreter whose working directory is not the checkout, on the reward section the scripts compose: a reward
referenced by an absolute file path of the launching checkout would fail on a node where the project lives
elsewhere; the ``pkg://`` form resolves through the installed package.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from uec_recipe.main_uec import DRY_RUN_HEADER

REPO = Path(__file__).resolve().parents[2]

# What a reward worker does with the composed configuration: build the manager, score one sample.
WORKER = """
import asyncio, json, sys
import torch
from omegaconf import OmegaConf
from verl import DataProto
from verl.trainer.ppo.reward import load_reward_manager
from uec_lab.demo.build import build_tokenizer

config = OmegaConf.load(sys.argv[1])
tokenizer = build_tokenizer(None)

def sample(response, ground_truth):
    ids = torch.tensor([tokenizer(response, add_special_tokens=False)["input_ids"]])
    return DataProto.from_dict(
        tensors={"responses": ids, "attention_mask": torch.ones(1, 3 + ids.shape[1], dtype=torch.long)},
        non_tensors={
            "data_source": [sys.argv[3]],
            "reward_model": [{"style": "rule", "ground_truth": ground_truth}],
            "extra_info": [{"split": "test", "index": 0}],
        },
    )

async def score():
    manager = load_reward_manager(config, tokenizer)
    fn = manager.compute_score.args[0]  # verl wraps the function with its reward_kwargs in a partial
    results = [await manager.run_single(sample(r, gt)) for r, gt in json.loads(sys.argv[2])]
    return {"results": results, "module": fn.__module__}

print(json.dumps(asyncio.run(score())))
"""


def composed_reward_config(script: str, tmp_path: Path, **env_extra) -> Path:
    env = {**os.environ, "DRY_RUN": "1", "PYTHON": sys.executable, "DATA_DIR": "/data/uec", **env_extra}
    result = subprocess.run(
        ["bash", str(REPO / "run_scripts/gpu" / script)], capture_output=True, text=True, timeout=300, env=env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    part = result.stdout.split(DRY_RUN_HEADER)[1]
    config = yaml.safe_load("\n".join(line for line in part.splitlines() if not line.startswith("[")))
    path = tmp_path / "reward_config.yaml"
    OmegaConf.save(OmegaConf.create({"reward": config["reward"]}), path)
    return path


def score_in_a_worker(config_path: Path, samples: list[tuple[str, str]], cwd: Path, data_source: str) -> dict:
    """``{"results": [run_single's dict per (response, ground truth)], "module": the reward function's module}``."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-c", WORKER, str(config_path), json.dumps(samples), data_source],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def elsewhere(tmp_path_factory):
    """A working directory that is not the checkout, as on another node."""
    return tmp_path_factory.mktemp("another-node")


def test_paper_runs_reference_the_packaged_reward(tmp_path, elsewhere):
    config_path = composed_reward_config("text_uec.sh", tmp_path)
    reward = OmegaConf.load(config_path).reward.custom_reward_function
    assert reward.path == "pkg://uec_recipe.reward" and str(REPO) not in reward.path
    samples = [("so \\boxed{12}", "12"), ("so \\boxed{13}", "12")]
    scored = score_in_a_worker(config_path, samples, elsewhere, "hiyouga/math12k")
    assert scored["module"] == "uec_recipe.reward.entry"  # the package's entry point, imported by name
    right, wrong = scored["results"]
    assert right["reward_score"] == 1.0 and right["reward_extra_info"]["acc"] == 1.0
    assert wrong["reward_score"] == 0.0


def test_smoke_references_its_packaged_toy_reward(tmp_path, elsewhere):
    from uec_lab.smoke.reward import compute_score

    config_path = composed_reward_config("smoke.sh", tmp_path, SMOKE_DIR=str(tmp_path / "smoke"))
    assert OmegaConf.load(config_path).reward.custom_reward_function.path == "pkg://uec_lab.smoke.reward"
    responses = [f"#### {n}" for n in range(20)]
    scored = score_in_a_worker(config_path, [(r, "12") for r in responses], elsewhere, "uec_demo/digit_sum")
    assert scored["module"] == "uec_lab.smoke.reward"
    scores = [result["reward_score"] for result in scored["results"]]
    assert scores == [compute_score("uec_demo/digit_sum", r, "12")["score"] for r in responses]
    assert 0 < sum(scores) < len(scores)  # some positives, some not: the toy reward, not a constant
