"""The real verl trainer, end to end on CPU, through the quickstart script (Ray, TransferQueue, FSDP2, rollout).

Each run costs about a minute (Ray start-up and worker imports), so the runs are module fixtures shared by the
tests that read them. They train small settings (N0 = 32 rows, a replay update every 2 steps, A0 = 0 so the
replay buffer fills quickly) to make every UEC stage act within a few steps.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def uec_run(demo, quickstart, tmp_path_factory):
    out = tmp_path_factory.mktemp("uec-run")
    return (*quickstart(out, steps=6), out)


def total(rows, key):
    return sum(r.get(key, 0) for r in rows)


def test_every_uec_stage_acts(uec_run):
    rows, requests, out = uec_run
    assert len(rows) == 6
    assert total(rows, "uec/difficult_prompts") > 0
    assert total(rows, "uec/exploration_samples") > 0
    assert total(rows, "uec/exploration_kept") > 0
    assert total(rows, "uec/regular_kept") > 0
    assert any(r["uec/update_ran"] == 1 for r in rows), "no policy update ran"
    assert any(r["uec/update_ran"] == 0 for r in rows), "no step skipped its update"
    assert total(rows, "uec/replay_rows") > 0 and rows[-1]["uec/replay_updates_total"] >= 1
    replayed = [r for r in rows if r["uec/replay_rows"] > 0]
    assert all(math.isfinite(r["uec_replay/actor/pg_loss"]) for r in replayed)
    updated = [r for r in rows if r["uec/update_ran"] == 1]
    assert all(math.isfinite(r["actor/pg_loss"]) and r["actor/grad_norm"] > 0 for r in updated)
    assert "uec/entropy_regular" in updated[0]
    # the entropy figure comparable across methods is logged on every step, updated or not
    assert all(0 < r["entropy/regular_rollout"] < 5 for r in rows)
    assert all(r["tokens/generated"] > 0 for r in rows) and total(rows, "tokens/trained") > 0
    # the final validation logs the unbiased pass@k of its 4 samples per prompt, with its sampling settings
    final = rows[-1]
    assert 0 <= final["val-passk/uec_demo/digit_sum/pass@1"] <= final["val-passk/uec_demo/digit_sum/pass@4"] <= 1
    assert final["val-passk/uec_demo/digit_sum/n"] == 4 and final["val-passk/uec_demo/digit_sum/temperature"] == 0.5
    summary = (out / "summary.md").read_text()
    assert "difficult prompts found" in summary and "replay (stabilizer) updates" in summary


def test_exploration_temperature_reaches_the_rollout(uec_run):
    rows, requests, _ = uec_run
    generated = [r for r in requests if r["event"] == "generate"]
    hot = [r for r in generated if r["temperature"] == 1.2]
    base = [r for r in generated if r["temperature"] == 1.0]
    # 8 exploration samples (demo G') per difficult prompt, and 8 prompts x 4 samples at T = 1.0 every step
    assert len(hot) == 8 * total(rows, "uec/difficult_prompts")
    assert len(base) == 32 * len(rows)


def test_a_step_that_trains_nothing_keeps_the_rollouts_weights(uec_run):
    rows, requests, _ = uec_run
    pushes = [r for r in requests if r["event"] == "update_weights"]
    trained = [r for r in rows if r["uec/update_ran"] or r["uec/replay_rows"]]
    skipped = [r for r in rows if r["uec/weight_sync_skipped"]]
    assert skipped, "no step skipped the weight push"
    assert all(not r["uec/update_ran"] and not r["uec/replay_rows"] for r in skipped)
    # one push at start-up, then one per step that did not skip it (every step that trained pushes)
    assert len(pushes) == 1 + len(rows) - len(skipped) and len(rows) - len(skipped) >= len(trained)


@pytest.fixture(scope="module")
def grpo_run(demo, quickstart, tmp_path_factory):
    return quickstart(tmp_path_factory.mktemp("grpo-run"), steps=3, algo="grpo")


def test_rollout_generates_with_the_updated_weights(uec_run, grpo_run):
    syncs = [r for r in uec_run[1] if r["event"] == "update_weights"]
    assert len({s["weights_checksum"] for s in syncs}) > 1, "the rollout never received changed weights"
    # On-policy GRPO at T = 1, top_p = 1: the rollout's log-probs (taken while sampling) and the trainer's
    # recomputed old log-probs agree to float precision when the weights are synced after every update.
    # (UEC's updates mix buffered rows from earlier steps and T' samples, so its diff is not a sync check.)
    diffs = [r["training/rollout_probs_diff_max"] for r in grpo_run[0]]
    assert len(diffs) == 3 and max(diffs) < 1e-3


def test_negative_control_without_weight_sync(quickstart, tmp_path, grpo_run):
    rows, _ = quickstart(tmp_path, steps=3, algo="grpo", env_extra={"UEC_ROLLOUT_FREEZE_WEIGHTS": "1"})
    synced = max(r["training/rollout_probs_diff_max"] for r in grpo_run[0])
    frozen = [r["training/rollout_probs_diff_max"] for r in rows]
    assert frozen[0] < 1e-3  # step 1: both sides still hold the initial weights
    assert max(frozen[1:]) > 10 * synced  # afterwards the frozen rollout samples from a stale policy


def test_same_seed_same_metrics(quickstart, tmp_path, uec_run):
    rows, _ = quickstart(tmp_path, steps=6)
    keys = [
        "uec/difficult_prompts",
        "uec/exploration_kept",
        "uec/regular_kept",
        "uec/update_ran",
        "uec/replay_rows",
        "critic/score/mean",
        "actor/pg_loss",
    ]
    for first, second in zip(uec_run[0], rows):
        for key in keys:
            if key in first:
                assert second[key] == pytest.approx(first[key], rel=1e-5, abs=1e-6), (first["step"], key)


def test_grpo_baseline_runs_through_the_same_trainer(grpo_run):
    rows, requests = grpo_run
    assert len(rows) == 3
    assert not any(k.startswith("uec/") for r in rows for k in r)
    assert all("entropy/regular_rollout" in r and r["tokens/generated"] == r["tokens/trained"] > 0 for r in rows)
    assert all(math.isfinite(r["actor/pg_loss"]) for r in rows)
    temperatures = {r["temperature"] for r in requests if r["event"] == "generate"}
    assert temperatures == {1.0, 0.5}  # training at T = 1.0, the final validation at T = 0.5; no T' for GRPO
