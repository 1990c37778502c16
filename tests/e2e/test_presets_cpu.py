"""The baseline presets (config/algo/{dapo,kl_cov,entropy_adv}.yaml) through the CPU quickstart, 2 steps each.

Each test checks the preset's signature where verl itself shows it: the resolved configuration verl prints at
start-up (OUT/stdout.log) and the metrics the real trainer logged (OUT/metrics.jsonl).
"""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import pytest

from uec_recipe.summary import read_metrics

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e

SMALL = [
    "data.train_batch_size=8",
    "actor_rollout_ref.actor.ppo_mini_batch_size=8",
    "trainer.val_before_train=False",
]
# DAPO's overlong buffer is sized for 2048-token responses (410 tokens); the demo's responses are 16 tokens long.
DAPO_DEMO = ["reward.reward_kwargs.overlong_buffer_cfg.len=4"]


def run_quickstart(out: Path, steps: int, algo: str, overrides=()) -> tuple[list[dict], str]:
    """The helper of test_trainer_cpu.py, returning the metrics rows and the run's stdout."""
    cmd = [
        "bash",
        str(REPO / "run_scripts/quickstart_cpu.sh"),
        "--steps",
        str(steps),
        "--algo",
        algo,
        "--out",
        str(out),
        "--",
        *SMALL,
        *overrides,
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    (out / "stdout.log").write_text(result.stdout + "\n--- stderr ---\n" + result.stderr)
    assert result.returncode == 0, f"quickstart failed (log in {out}/stdout.log):\n{result.stderr[-4000:]}"
    rows = [r for r in read_metrics(out / "metrics.jsonl") if r["step"] >= 1]
    return rows, result.stdout


def common_checks(rows):
    assert len(rows) == 2
    assert not any(key.startswith("uec/") for row in rows for key in row), "the UEC step ran in a baseline"
    assert all(math.isfinite(row["actor/pg_loss"]) for row in rows)


def test_dapo(demo, tmp_path):
    rows, stdout = run_quickstart(tmp_path, steps=2, algo="dapo", overrides=DAPO_DEMO)
    common_checks(rows)
    # verl pprints the resolved configuration before training
    assert "'clip_ratio_high': 0.28" in stdout
    assert "'metric': 'acc'" in stdout and "'name': 'dapo'" in stdout
    # dynamic sampling acted: groups whose samples all scored the same were evicted (and refilled)
    evicted = sum(row.get("training/filter_groups/evicted_samples", 0) for row in rows)
    assert evicted > 0, "no group was filtered in 2 steps"
    assert not any("kl_loss" in key for row in rows for key in row), "DAPO runs without a KL loss"


def test_kl_cov(demo, tmp_path):
    # Two mini-batches per step: KL-Cov's penalty is zero on the first, fully on-policy one (docs/baselines.md).
    two_minibatches = [
        "actor_rollout_ref.actor.ppo_mini_batch_size=4",  # 4 prompts x 4 samples = 16 rows per mini-batch
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=16",
    ]
    rows, stdout = run_quickstart(tmp_path, steps=2, algo="kl_cov", overrides=two_minibatches)
    common_checks(rows)
    assert "'loss_mode': 'kl_cov'" in stdout and "'kl_cov_ratio': 0.002" in stdout
    # the kl_cov loss ran in the worker: it reports ppo_kl but none of the clip fractions of the clipped losses
    assert all(not any("pg_clipfrac" in key for key in row) for row in rows)
    assert all(row["actor/ppo_kl"] > 0 for row in rows), "the second mini-batch must be off-policy"


def test_entropy_adv(demo, tmp_path):
    # Needs UECTrainer._compute_advantage to call uec_recipe.baselines.apply_entropy_advantage.
    rows, stdout = run_quickstart(tmp_path, steps=2, algo="entropy_adv")
    common_checks(rows)
    assert "'entropy_adv': {'alpha': 0.4, 'enable': True, 'kappa': 2.0}" in stdout
    for row in rows:
        assert "entropy_adv/mean_shaping_term" in row, "the trainer did not apply the Entropy-Adv shaping"
        assert row["entropy_adv/mean_shaping_term"] > 0
        assert 0 <= row["entropy_adv/capped_fraction"] <= 1
