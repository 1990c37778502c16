"""The baseline presets (config/algo/{dapo,kl_cov,entropy_adv}.yaml) through the CPU quickstart, 2 steps each.

Each test checks the preset's signature where verl itself shows it: the resolved configuration verl prints at
start-up (OUT/stdout.log) and the metrics the real trainer logged (OUT/metrics.jsonl).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


def run(quickstart, out: Path, algo: str, overrides=()) -> tuple[list[dict], str]:
    """Two steps of the preset through the quickstart; the metrics rows and the run's stdout."""
    rows, _ = quickstart(out, steps=2, algo=algo, overrides=overrides)
    return rows, (out / "stdout.log").read_text()


def common_checks(rows):
    assert len(rows) == 2
    assert not any(key.startswith("uec/") for row in rows for key in row), "the UEC step ran in a baseline"
    assert all(math.isfinite(row["actor/pg_loss"]) for row in rows)


def test_dapo(demo, quickstart, tmp_path):
    rows, stdout = run(quickstart, tmp_path, "dapo")
    common_checks(rows)
    # verl pprints the resolved configuration before training
    assert "'clip_ratio_high': 0.28" in stdout
    assert "'metric': 'acc'" in stdout and "'name': 'dapo'" in stdout
    # dynamic sampling acted: groups whose samples all scored the same were evicted (and refilled)
    evicted = sum(row.get("training/filter_groups/evicted_samples", 0) for row in rows)
    assert evicted > 0, "no group was filtered in 2 steps"
    assert not any("kl_loss" in key for row in rows for key in row), "DAPO runs without a KL loss"


def test_kl_cov(demo, quickstart, tmp_path):
    # Two mini-batches per step: KL-Cov's penalty is zero on the first, fully on-policy one (docs/baselines.md).
    two_minibatches = [
        "actor_rollout_ref.actor.ppo_mini_batch_size=4",  # 4 prompts x 4 samples = 16 rows per mini-batch
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=16",
    ]
    rows, stdout = run(quickstart, tmp_path, "kl_cov", overrides=two_minibatches)
    common_checks(rows)
    assert "'loss_mode': 'kl_cov'" in stdout and "'kl_cov_ratio': 0.002" in stdout
    # the kl_cov loss ran in the worker: it reports ppo_kl but none of the clip fractions of the clipped losses
    assert all(not any("pg_clipfrac" in key for key in row) for row in rows)
    assert all(row["actor/ppo_kl"] > 0 for row in rows), "the second mini-batch must be off-policy"


def test_entropy_adv(demo, quickstart, tmp_path):
    rows, stdout = run(quickstart, tmp_path, "entropy_adv")
    common_checks(rows)
    assert "'entropy_adv': {'alpha': 0.4, 'enable': True, 'kappa': 2.0}" in stdout
    for row in rows:
        assert "entropy_adv/mean_shaping_term" in row, "the trainer did not apply the Entropy-Adv shaping"
        assert row["entropy_adv/mean_shaping_term"] > 0
        assert 0 <= row["entropy_adv/capped_fraction"] <= 1
