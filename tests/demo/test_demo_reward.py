"""uec_lab/demo/reward.py: the digit-sum grader, registered with the recipe on import, as verl's reward workers load it.

The recipe (uec_recipe/reward/) knows none of the demo's data sources: a reward worker that imports only the recipe
refuses them, one that loads ``pkg://uec_lab.demo.reward`` scores them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from uec_lab.demo import build, chain, chain_build, ladder
from uec_lab.demo.reward import DEMO_DATA_SOURCES, compute_score
from uec_recipe.reward import GRADERS, describe_grader

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("grader", GRADERS)
@pytest.mark.parametrize(
    "response, expected, pred",
    [
        ("#### 37", 1.0, "37"),
        ("####37", 1.0, "37"),
        ("#### 36", 0.0, "36"),
        ("#### 37.5", 0.0, ""),
        ("#### 3 #### 37", 1.0, "37"),
        ("#### 37 #### 3", 0.0, "3"),
        ("\\boxed{37}", 0.0, ""),
        ("37", 0.0, ""),
        ("", 0.0, ""),
    ],
)
def test_digit_sum_is_exact_under_both_graders(grader, response, expected, pred):
    result = compute_score(build.DATA_SOURCE, response, "37", grader=grader)
    assert result == {"score": expected, "acc": expected, "pred": pred}


def test_every_data_source_the_builds_write_is_registered():
    # Training rows use the task's DATA_SOURCE; validation rows name their band (rl_rows of build.py and
    # chain_build.py); unsolved levels are never rows.
    bands = (*ladder.BANDS, ladder.BETWEEN)
    written = {build.DATA_SOURCE, chain.DATA_SOURCE}
    written |= {build.band_data_source(band) for band in bands} | {chain_build.band_data_source(b) for b in bands}
    assert set(DEMO_DATA_SOURCES) == written
    for source in written:
        assert compute_score(source, "so #### 12", "12")["acc"] == 1.0
        described = describe_grader(source, "robust")
        assert described.startswith("registered grader grade_digit_sum from ")
        assert described.endswith(
            "uec_lab/demo/reward.py: " + "exact integer after the last '####' "
            "(the CPU demo tasks; the same under both graders)"
        )


def run_python(code: str) -> subprocess.CompletedProcess:
    """A fresh interpreter, as a reward worker is: only what it imports is registered."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, env=env, timeout=300)


def test_the_recipe_alone_refuses_the_demo_data_source():
    result = run_python(
        "from uec_recipe.reward import compute_score; compute_score('uec_demo/digit_sum', '#### 5', '5')"
    )
    assert result.returncode != 0
    assert "unknown data_source 'uec_demo/digit_sum'" in result.stderr and "register_grader" in result.stderr


def test_the_recipe_names_no_demo_data_source():
    offenders = [
        str(path.relative_to(REPO))
        for path in sorted((REPO / "uec_recipe").rglob("*.py"))
        if "uec_demo" in path.read_text() or "digit_sum" in path.read_text()
    ]
    assert offenders == []


def test_verl_loads_the_demo_reward_by_package_path():
    # verl's reward worker: get_custom_reward_fn -> load_extern_object("pkg://uec_lab.demo.reward", "compute_score"),
    # with the config's reward_kwargs bound. The module registers its grader on import, in that process.
    code = """
import json
from omegaconf import OmegaConf
from verl.trainer.ppo.reward import get_custom_reward_fn
config = OmegaConf.create({"reward": {"custom_reward_function": {
    "path": "pkg://uec_lab.demo.reward", "name": "compute_score", "reward_kwargs": {"grader": "robust"}}}})
fn = get_custom_reward_fn(config)
print(json.dumps([fn(data_source=s, solution_str=r, ground_truth="12", extra_info={"split": "test", "index": 0})["acc"]
                  for s, r in [("uec_demo/digit_sum", "#### 12"), ("uec_demo/digit_sum/hard", "#### 13")]]))
"""
    result = run_python(code)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [1.0, 0.0]


def test_the_demo_path_stays_light():
    # The digit-sum grader runs for every rollout sample of the quickstart: importing the demo reward and scoring
    # under either grader must not pull in math-verify, sympy or mathruler.
    code = (
        "import sys; from uec_lab.demo.reward import compute_score; "
        "compute_score('uec_demo/digit_sum', '#### 5', '5'); "
        "compute_score('uec_demo/digit_sum', '#### 5', '5', grader='robust'); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('math_verify', 'sympy', 'mathruler')))"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "[]"


def test_the_demo_file_keeps_the_recipe_graders_for_the_papers_sources():
    # The VLM demo uses Geometry3K's data source: graded by the recipe's paper grader whichever file is loaded.
    assert compute_score("hiyouga/geometry3k", "\\boxed{3}", "3")["acc"] == 1.0
    assert compute_score("hiyouga/geometry3k", "#### 3", "3")["acc"] == 0.0
