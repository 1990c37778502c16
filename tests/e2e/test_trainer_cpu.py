"""The real verl trainer, end to end on CPU, through the quickstart script (Ray, TransferQueue, FSDP2, rollout).

One UEC-RL run (``uec_run`` in conftest.py: 4 steps, N0 = 16, a replay update every 2 steps, A0 = 0) is read by
every test here; a second, frozen-rollout GRPO run is the weight-sync negative control. The GRPO baseline's own
synced run is part of the study test (tests/e2e/test_study_cpu.py).
"""

from __future__ import annotations

import math

import pytest
import torch

from uec_lab.smoke import check
from uec_recipe.checkpoint import STATE_FILE, iter_buffer_shards, read_state

pytestmark = pytest.mark.e2e


def total(rows, key):
    return sum(r.get(key, 0) for r in rows)


def test_every_uec_stage_acts(uec_run, uec_run_settings):
    rows, _, out = uec_run
    assert len(rows) == uec_run_settings["steps"]
    assert total(rows, "uec/difficult_prompts") > 0
    assert total(rows, "uec/exploration_samples") > 0
    assert total(rows, "uec/exploration_kept") > 0
    assert total(rows, "uec/regular_kept") > 0
    assert any(r["uec/update_ran"] == 1 for r in rows), "no policy update ran"
    assert total(rows, "uec/replay_rows") > 0 and rows[-1]["uec/replay_updates_total"] >= 1
    replayed = [r for r in rows if r["uec/replay_rows"] > 0]
    assert all(math.isfinite(r["uec_replay/actor/pg_loss"]) for r in replayed)
    updated = [r for r in rows if r["uec/update_ran"] == 1]
    assert all(math.isfinite(r["actor/pg_loss"]) and r["actor/grad_norm"] > 0 for r in updated)
    # an update pops whole N0 blocks; the rows it trains carry their age
    assert all(r["uec/update_rows"] % 16 == 0 for r in updated) and "uec/update_staleness/max" in updated[0]
    assert "uec/entropy_regular" in updated[0]
    # difficulty was decided on the reward's accuracy
    assert all(r["uec/difficulty_on_accuracy"] == 1 for r in rows)
    # the entropy comparable across methods and the token counts are logged on every step, updated or not
    assert all(0 < r["entropy/regular_rollout"] < 5 for r in rows)
    assert all(r["tokens/generated"] > 0 for r in rows) and total(rows, "tokens/trained") > 0


def test_exploration_temperature_reaches_the_rollout(uec_run, uec_run_settings):
    rows, requests, _ = uec_run
    generated = [r for r in requests if r["event"] == "generate"]
    hot = [r for r in generated if r["temperature"] == 1.2]
    base = [r for r in generated if r["temperature"] == 1.0]
    # G' exploration samples per difficult prompt, and 8 prompts x 4 samples at T = 1.0 every step
    assert len(hot) == uec_run_settings["g_prime"] * total(rows, "uec/difficult_prompts")
    assert len(base) == 32 * len(rows)


def test_the_gpu_smoke_checks_pass_on_this_run(uec_run, uec_run_settings):
    """run_scripts/gpu/smoke.sh's checks (uec_lab/smoke/check.py), on what the agent loop logged here."""
    rows, _, out = uec_run
    settings = uec_run_settings
    (out / check.REQUESTS_FILE).write_text((out / settings["agent_log"]).read_text())
    expected = check.Expected(
        steps=settings["steps"],
        prompts=settings["prompts"],
        n=settings["n"],
        temperature=1.0,
        top_p=1.0,
        exploration_n=settings["g_prime"],
        exploration_temperature=1.2,
    )
    checks = check.check_run(out, expected)
    assert all(c.passed for c in checks), "\n".join(c.line("cpu") for c in checks)


def test_a_step_that_trains_nothing_keeps_the_rollouts_weights(uec_run):
    rows, requests, _ = uec_run
    pushes = [r for r in requests if r["event"] == "update_weights"]
    skipped = [r for r in rows if r["uec/weight_sync_skipped"]]
    assert all(not r["uec/update_ran"] and not r["uec/replay_rows"] for r in skipped)
    # one push at start-up, then one per step that did not skip it (every step that trained or saved pushes)
    assert len(pushes) == 1 + len(rows) - len(skipped)
    # the rollout-vs-trainer log-prob check runs on this step's base-temperature rows only: float precision
    diffs = [r["training/rollout_probs_diff_max"] for r in rows if "training/rollout_probs_diff_max" in r]
    assert diffs and max(diffs) < 1e-3


def test_summary_names_the_grader_the_ladder_and_the_log(uec_run):
    _, _, out = uec_run
    summary = (out / "summary.md").read_text()
    assert "difficult prompts found" in summary and "replay (stabilizer) updates" in summary
    assert "grader: paper" in summary and "Difficulty ladder of the demo policy" in summary
    assert "| medium |" in summary and "train.log" in summary
    # validation is reported per band of the ladder
    assert "validation uec_demo/digit_sum/hard" in summary
    # the console showed progress lines only; verl's log went to train.log
    console = (out / "stdout.log").read_text().split("--- stderr ---")[0]
    assert "[uec] step 4/4" in console and "Initial validation" not in console and "TaskRunner" not in console
    assert "'adv_estimator': 'uec'" in (out / "train.log").read_text()  # verl's resolved configuration


def test_checkpoint_holds_the_uec_state_as_plain_data(uec_run):
    rows, _, out = uec_run
    folder = out / "checkpoints" / "global_step_4"
    state = read_state(folder / STATE_FILE)  # torch.load(weights_only=True) inside
    assert state["global_steps"] == 4
    batch = state["buffers"]["batch_buffer"]
    assert len(batch["records"]) == rows[-1]["uec/batch_buffer_size"]
    for name in ("batch_buffer", "replay_buffer"):
        for path in state["buffers"][name]["shards"]:
            torch.load(folder / path, weights_only=True)
        loaded = sum(len(keys) for keys, _ in iter_buffer_shards(folder, state, name))
        assert loaded == len(state["buffers"][name]["records"])


@pytest.mark.faults
def test_negative_control_without_weight_sync(demo, quickstart, tmp_path):
    """GRPO on policy at T = 1, top_p = 1: the rollout's log-probs and the trainer's agree to float precision when
    the weights are synced (the study test checks that); with the rollout frozen they drift apart after step 1.
    An injected fault like those of test_faults_cpu.py, it runs with them (``-m faults``), outside the default
    command's 15-minute budget."""
    rows, _ = quickstart(tmp_path, steps=3, algo="grpo", env_extra={"UEC_ROLLOUT_FREEZE_WEIGHTS": "1"})
    frozen = [r["training/rollout_probs_diff_max"] for r in rows]
    assert frozen[0] < 1e-4  # step 1: both sides still hold the initial weights
    assert max(frozen[1:]) > 1e-3  # afterwards the frozen rollout samples from a stale policy
