"""The reproduction study's plumbing end to end on task v2's shipped policy, in a tiny configuration run from a
pre-registered plan: GRPO, DAPO, KL-Cov, Entropy-Adv, UEC-RL+ (pipelined exploration, adaptive
budget), UEC-RL with the release's rules, UEC-RL with T' = T and matched-generation GRPO (its n from a config folder
added to hydra's search path), one seed of 2 steps each, through the real
trainer, two runs at a time (``--jobs 2``: start-up is mostly one core's work, so two runs take little more than
one), evaluated on 2 problems per level (sampled and greedy), recorded and reported against the plan. The same
runs are the presets' end-to-end tests: each preset's signature is read where verl shows it (its resolved
configuration in train.log, its metrics in metrics.jsonl). No test here asserts which method wins.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from uec_lab.summary import read_metrics

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e
METHODS = ["grpo", "dapo", "kl_cov", "entropy_adv", "uec_plus", "uec_release", "uec_same_temp", "grpo_matched"]
MATCHED_N = 6  # matched-generation GRPO's samples per prompt in the tiny study (8 prompts x 6 = 48 rows a step)
PLAN = f"""# tiny plan
```yaml study-plan
task: chains
steps: 2
analysis: paired
alpha: 0.05
seeds: {{{", ".join(f"{m}: 1" for m in METHODS)}}}
primary:
  - {{id: P1, kind: accuracy, method: uec_release, reference: grpo, band: hard, direction: positive}}
  - {{id: P2, kind: entropy_change, metric: entropy/regular_rollout, method: uec_release, reference: grpo,
      direction: positive}}
secondary:
  - {{id: S1, kind: greedy, method: uec_same_temp, reference: uec_release, band: hard, direction: positive}}
```
"""
TINY = [
    "data.train_batch_size=8",  # 8 prompts x 5 samples = N0 = 40 rows
    "actor_rollout_ref.actor.ppo_mini_batch_size=4",  # two mini-batches per update (KL-Cov acts on the second)
    "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=4",  # divides a mini-batch at any samples per prompt
    "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=8",
    "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=8",
    "actor_rollout_ref.rollout.top_p=1.0",  # GRPO's rollout and trainer log-probs then agree to float precision
    "uec.exploration.n=4",
    "data.filter_overlong_prompts=False",
    "data.shuffle=False",  # the first batch cycles the levels: two hard prompts, so step 1 has a difficult one
]


def matched_config(folder: Path) -> str:
    """A config folder with task v2's matched n (the study writes it with `python -m uec_lab.study match`; its
    measurement is tested in tests/test_study_match.py), and the override that adds the folder to hydra's search."""
    (folder / "task_algo").mkdir(parents=True, exist_ok=True)
    (folder / "task_algo" / "chain_sum_grpo_matched.yaml").write_text(
        f"# @package _global_\nactor_rollout_ref:\n  rollout:\n    n: {MATCHED_N}\n"
    )
    return f"hydra.searchpath=[pkg://verl.trainer.config,file://{folder}]"


def study(out: Path) -> subprocess.CompletedProcess:
    plan = out.parent / "tiny-plan.md"
    plan.write_text(PLAN)
    command = ["bash", str(REPO / "run_scripts/reproduce_cpu.sh"), "--plan", str(plan)]
    command += ["--eval-n", "2", "--eval-problems", "2", "--jobs", "2", "--out", str(out)]
    overrides = [*TINY, matched_config(out.parent / "matched-config")]
    result = subprocess.run(
        [*command, "--", *overrides], capture_output=True, text=True, timeout=2400, env=dict(os.environ)
    )
    (out.parent / f"{out.name}.log").write_text(result.stdout + "\n--- stderr ---\n" + result.stderr)
    assert result.returncode == 0, f"study failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    out = tmp_path_factory.mktemp("study") / "tiny"
    result = study(out)
    return out, result.stdout


def metrics(out: Path, method: str) -> list[dict]:
    return [r for r in read_metrics(out / "runs" / method / "seed1" / "metrics.jsonl") if r["step"] >= 1]


def train_log(out: Path, method: str) -> str:
    return (out / "runs" / method / "seed1" / "train.log").read_text()


def test_every_run_trains_evaluates_and_records_its_code(tiny_study):
    out, stdout = tiny_study
    assert "[study] run 1/8: GRPO seed 1 (2 steps)" in stdout and "[study] run 8/8" in stdout
    assert "about 0:" in stdout  # the time left, estimated once a run finished
    assert "[study] 2 runs at a time" in stdout  # two runs side by side (two Rays): the test's time, not the study's
    for method in METHODS:
        rows = metrics(out, method)
        assert [r["step"] for r in rows] == [1, 2]
        assert all("entropy/regular_rollout" in r and r["tokens/trained"] >= 0 for r in rows)
        done = json.loads((out / "runs" / method / "seed1" / "done.json").read_text())
        assert done["code"]["commit"] and done["train_seconds"] > 0 and "cores" in done["machine"]
        assert done["concurrent_runs"] == 2
        levels = sorted(p.name for p in (out / "runs" / method / "seed1" / "eval").iterdir() if p.is_dir())
        assert levels == sorted(p.stem for p in (out / "eval_data").glob("*.parquet"))
        summary = json.loads((out / "runs" / method / "seed1" / "eval" / levels[0] / "summary.json").read_text())
        assert (summary["n"], summary["temperature"], summary["top_p"], summary["num_problems"]) == (2, 1.0, 1.0, 2)
        greedy = json.loads((out / "runs" / method / "seed1" / "eval_greedy" / levels[0] / "summary.json").read_text())
        assert (greedy["n"], greedy["temperature"], greedy["num_problems"]) == (1, 0.0, 2)


def test_report_follows_the_plan_and_its_numbers_come_from_the_published_csv(tiny_study, tmp_path):
    out, _ = tiny_study
    report = (out / "report.md").read_text()
    for section in (
        "## Plan and its commit",
        "## What ran where",
        "## Deviations from the plan",
        "## Claims",
        "## Accuracy per level and band",
        "## Greedy accuracy per level",
        "## pass@k per level against a question-blind guesser",
        "## Entropy",
        "## Cost per step and per trained token",
        "## Exploratory",
    ):
        assert section in report, section
    assert "Not shown for 8 run(s) trained while other runs shared the machine" in report  # --jobs 2
    assert "| P1 |" in report and "| S1 |" in report and "(1 seed)" in report  # one seed: no interval
    assert "| holds" not in report and "| opposite" not in report  # ... so nothing is decided
    accuracy = (out / "per-seed" / "accuracy.csv").read_text().splitlines()
    assert accuracy[0] == "method,seed,level,band,accuracy,pass@2,greedy"  # pass@n: the tiny study samples n = 2
    assert {line.split(",")[0] for line in accuracy[1:]} == {*METHODS, "base"}
    # the compact records reproduce the same report without checkpoints or samples
    records = tmp_path / "records"
    command = [sys.executable, "-m", "uec_lab.study", "record", "--out", str(out), "--to", str(records)]
    subprocess.run(command, check=True, capture_output=True, text=True, cwd=REPO)
    for method in METHODS:
        assert (records / "runs" / method / "seed1" / "done.json").is_file()
    assert not list(records.rglob("*.safetensors")) and not list(records.rglob("samples*.jsonl"))


def test_a_rerun_skips_finished_runs_and_refuses_other_settings(tiny_study):
    out, _ = tiny_study
    again = study(out)
    assert "8 of 8 runs already finished" in again.stdout and "[study] run " not in again.stdout
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


def test_uec_release_keeps_the_released_rules(tiny_study):
    out, _ = tiny_study
    log = train_log(out, "uec_release")
    assert "'retention': 'abs_gt_1'" in log and "'admission': 'abs_gt'" in log
    assert all("entropy/update_rows/main" in r or not r["uec/update_ran"] for r in metrics(out, "uec_release"))


def exploration_temperature(log: str) -> float:
    """T' in the configuration verl prints at start-up (uec.exploration.temperature)."""
    return float(re.search(r"'exploration': \{'budget'.*?'temperature': ([0-9.]+)\}", log, re.S).group(1))


def test_uec_same_temp_explores_at_the_rollout_temperature(tiny_study):
    out, _ = tiny_study
    rows = metrics(out, "uec_same_temp")
    assert any(r["uec/exploration_samples"] > 0 for r in rows), "a difficult prompt is expected in 8"
    assert exploration_temperature(train_log(out, "uec_same_temp")) == 1.0  # the rollout's T
    assert exploration_temperature(train_log(out, "uec_release")) == 1.2  # the paper's T'


def test_grpo_matched_is_grpo_drawing_the_tasks_matched_n(tiny_study):
    from uec_recipe.main_uec import dry_run_config

    out, _ = tiny_study
    rows, log = metrics(out, "grpo_matched"), train_log(out, "grpo_matched")
    assert not any(k.startswith("uec/") for r in rows for k in r), "the UEC step ran in a baseline"
    assert f"'n': {MATCHED_N}," in log and "'adv_estimator': 'grpo'" in log
    # the run's own command composes to GRPO with the matched n, which wins over the study's n = 5
    command = (out / "runs" / "grpo_matched" / "seed1" / "command.txt").read_text().split()
    config = dry_run_config(command[command.index("uec_recipe.main_uec") + 1 :])
    assert (config.actor_rollout_ref.rollout.n, config.trainer.experiment_name) == (
        MATCHED_N,
        "study-grpo_matched-seed1",
    )
    assert config.algorithm.adv_estimator == "grpo" and not config.uec.enable
