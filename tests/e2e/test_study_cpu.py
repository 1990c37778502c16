"""The reproduction study's plumbing end to end, in a tiny configuration: GRPO, DAPO, KL-Cov, Entropy-Adv and
UEC-RL+ (pipelined exploration, adaptive budget), one seed of 2 steps each, through the real trainer, evaluated on
2 problems per level and reported. The same runs are the baseline presets' end-to-end tests: each preset's
signature is read where verl shows it (its resolved configuration in train.log, its metrics in metrics.jsonl).
No test here asserts which method wins.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from uec_lab.summary import read_metrics

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e
METHODS = ["grpo", "dapo", "kl_cov", "entropy_adv", "uec_plus"]
TINY = [
    "data.train_batch_size=8",  # 8 prompts x 5 samples = N0 = 40 rows
    "actor_rollout_ref.actor.ppo_mini_batch_size=4",  # two mini-batches per update (KL-Cov acts on the second)
    "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=20",
    "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=40",
    "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=40",
    "actor_rollout_ref.rollout.top_p=1.0",  # GRPO's rollout and trainer log-probs then agree to float precision
    "uec.exploration.n=4",
    "data.filter_overlong_prompts=False",
]


def study(out: Path) -> subprocess.CompletedProcess:
    command = ["bash", str(REPO / "run_scripts/reproduce_cpu.sh"), "--methods", ",".join(METHODS), "--seeds", "1"]
    command += ["--other-seeds", "1", "--steps", "2", "--eval-n", "2", "--eval-problems", "2", "--out", str(out)]
    result = subprocess.run([*command, "--", *TINY], capture_output=True, text=True, timeout=2400, env=dict(os.environ))
    (out.parent / f"{out.name}.log").write_text(result.stdout + "\n--- stderr ---\n" + result.stderr)
    assert result.returncode == 0, f"study failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def tiny_study(demo, tmp_path_factory):
    out = tmp_path_factory.mktemp("study") / "tiny"
    result = study(out)
    return out, result.stdout


def metrics(out: Path, method: str) -> list[dict]:
    return [r for r in read_metrics(out / "runs" / method / "seed1" / "metrics.jsonl") if r["step"] >= 1]


def train_log(out: Path, method: str) -> str:
    return (out / "runs" / method / "seed1" / "train.log").read_text()


def test_every_run_trains_evaluates_and_records_its_code(tiny_study):
    out, stdout = tiny_study
    assert "[study] run 1/5: GRPO seed 1 (2 steps)" in stdout and "[study] run 5/5" in stdout
    assert "about 0:" in stdout  # the time left, estimated once a run finished
    for method in METHODS:
        rows = metrics(out, method)
        assert [r["step"] for r in rows] == [1, 2]
        assert all("entropy/regular_rollout" in r and r["tokens/trained"] >= 0 for r in rows)
        done = json.loads((out / "runs" / method / "seed1" / "done.json").read_text())
        assert done["code"]["commit"] and done["train_seconds"] > 0
        levels = sorted(p.name for p in (out / "runs" / method / "seed1" / "eval").iterdir() if p.is_dir())
        assert levels == sorted(p.stem for p in (out / "eval_data").glob("*.parquet"))
        summary = json.loads((out / "runs" / method / "seed1" / "eval" / levels[0] / "summary.json").read_text())
        assert (summary["n"], summary["temperature"], summary["top_p"], summary["num_problems"]) == (2, 1.0, 1.0, 2)


def test_report_has_every_table_and_figure_with_its_settings(tiny_study):
    out, _ = tiny_study
    report = (out / "report.md").read_text()
    for section in (
        "## Settings",
        "Difficulty ladder of the demo policy",
        "## What the intervals allow one to say",
        "**GRPO's learning margin**",
        "## Main table: accuracy per level",
        "## Main table by band",
        "## Beyond the paper",
        "## pass@k on the hard levels",
        "## Entropy of the regular rollout",
        "## Cost, measured in the same study",
    ):
        assert section in report, section
    # every number carries its protocol: samples, temperature, top_p, grader; one seed has no interval
    assert "avg@2 (n=2 samples per problem), temperature=1.0, top_p=1.0, grader=paper" in report
    assert "(1 seed)" in report and "the first 2 problems of each level" in report
    assert "| Base (warm start) |" in report and "Gain over base (points)" in report
    # one GRPO seed gives its gain over the base model no interval: the ratio over that gain is left out, and why
    assert "Rel. impr. over GRPO" not in report and "has no interval, so the ratio" in report
    assert "`data.train_batch_size=8`" in report  # the effective settings, the tiny study's own
    for figure in ("curves.png", "main_curves.png"):
        with Image.open(out / "figures" / figure) as image:
            assert image.size[0] > 300 and image.size[1] > 200


def test_a_rerun_skips_finished_runs_and_refuses_other_settings(tiny_study):
    out, _ = tiny_study
    again = study(out)
    assert "5 of 5 runs already finished" in again.stdout and "[study] run " not in again.stdout
    refused = subprocess.run(
        ["bash", str(REPO / "run_scripts/reproduce_cpu.sh"), "--methods", "grpo", "--steps", "3", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert refused.returncode != 0 and "other settings" in refused.stderr


def test_grpo_rollout_sees_the_trained_weights(tiny_study):
    out, _ = tiny_study
    rows = metrics(out, "grpo")
    assert not any(k.startswith("uec/") for r in rows for k in r), "the UEC step ran in a baseline"
    # on policy at T = 1, top_p = 1: rollout and trainer log-probs agree when the weights are synced each step
    assert max(r["training/rollout_probs_diff_max"] for r in rows) < 1e-3
    assert all(r["tokens/generated"] == r["tokens/trained"] > 0 for r in rows)


def test_dapo_preset(tiny_study):
    out, _ = tiny_study
    rows, log = metrics(out, "dapo"), train_log(out, "dapo")
    assert "'clip_ratio_high': 0.28" in log and "'metric': 'acc'" in log and "'name': 'dapo'" in log
    # dynamic sampling acted: groups whose samples all scored the same were evicted (and refilled)
    assert sum(r.get("training/filter_groups/evicted_samples", 0) for r in rows) > 0
    assert not any("kl_loss" in key for r in rows for key in r), "DAPO runs without a KL loss"


def test_kl_cov_preset(tiny_study):
    out, _ = tiny_study
    rows, log = metrics(out, "kl_cov"), train_log(out, "kl_cov")
    assert "'loss_mode': 'kl_cov'" in log and "'kl_cov_ratio': 0.002" in log
    # the kl_cov loss ran in the worker: it reports ppo_kl but none of the clipped losses' clip fractions, and
    # its penalty acts on the second, off-policy mini-batch of a step (docs/baselines.md)
    assert all(not any("pg_clipfrac" in key for key in r) for r in rows)
    assert all(r["actor/ppo_kl"] > 0 for r in rows)


def test_entropy_adv_preset(tiny_study):
    out, _ = tiny_study
    rows, log = metrics(out, "entropy_adv"), train_log(out, "entropy_adv")
    assert "'entropy_adv': {'alpha': 0.4, 'enable': True, 'kappa': 2.0}" in log
    for r in rows:
        assert r["entropy_adv/mean_shaping_term"] > 0 and 0 <= r["entropy_adv/capped_fraction"] <= 1


def test_uec_plus_explores_one_step_late_with_an_adaptive_budget(tiny_study):
    out, _ = tiny_study
    first, second = metrics(out, "uec_plus")
    assert first["uec/exploration_samples"] == 0 and first["uec/exploration_pending"] == first["uec/difficult_prompts"]
    assert first["uec/difficult_prompts"] > 0, "the demo's hard levels leave a difficult prompt in 8"
    # step 2 generated step 1's exploration in its own rollout round: no second round, one step of lag
    assert second["uec/exploration_samples"] == 4 * first["uec/difficult_prompts"]  # G' x difficult prompts
    assert second["uec/exploration_lag"] == 1.0 and "timing_s/gen_explore" not in second
    assert second["uec/budget_samples"] == second["uec/exploration_samples"]
    assert math.isfinite(second["uec/budget_expected_successes"])
    assert second["uec/exploration_pending"] == 0  # the last step defers nothing
