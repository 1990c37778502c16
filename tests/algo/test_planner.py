"""The UEC step's decisions, driven through ``UECPlanner`` with plain lists (no trainer, no TransferQueue).

``Scripted`` calls the planner in the order ``UECTrainer.step()`` does, with the rows a script says each generation
round produced. The scenarios check, step by step and row by row, what each stage decides against values worked
out by hand from the released code's rules (597358816/EFRame, verl/trainer/ray_trainer.py; docs/algorithm.md,
"The step"). tests/algo/test_uec_step.py checks that the trainer carries these decisions out.
"""

from __future__ import annotations

import random
import statistics
from collections import deque
from dataclasses import dataclass
from itertools import count

import pytest

from uec_recipe.algo.buffers import BufferedRow
from uec_recipe.algo.config import UECConfig
from uec_recipe.algo.planner import (
    Admission,
    ExplorationPlan,
    GeneratedRows,
    Retention,
    UECPlanner,
    UpdatePlan,
)
from uec_recipe.checkpoint import records_to_rows, rows_to_records
from uec_recipe.plain import from_plain, to_plain

MAX_RESPONSE_LEN = 8
SHORT = 3  # response length of a sample that ended with EOS
LONG = MAX_RESPONSE_LEN  # a sample cut at max_response_length ("overlong")


def grpo(rewards: list[float]) -> list[float]:
    """Â = (r − mean) / (unbiased std + 1e-6) within one group, as the 'uec' estimator computes it."""
    if len(set(rewards)) == 1:
        return [0.0] * len(rewards)
    mean, std = statistics.fmean(rewards), statistics.stdev(rewards)
    return [(r - mean) / (std + 1e-6) for r in rewards]


def sample_spec(sample):
    """A scripted sample: a reward, or (reward, response length), or (reward, length, acc)."""
    if isinstance(sample, tuple):
        reward, length, *acc = sample
        return float(reward), int(length), (float(acc[0]) if acc else None)
    return float(sample), SHORT, None


def generated(groups: dict[str, list]) -> GeneratedRows:
    """One round's rows: keys ``uid_session_0``, tags with the lengths, accuracy (``acc`` when every row has one, as
    ``sequence_accuracy`` decides, else the reward) and the group advantages."""
    keys, tags, uids, rewards, accs, advantages = [], [], [], [], [], []
    for uid, samples in groups.items():
        specs = [sample_spec(sample) for sample in samples]
        advantages += grpo([reward for reward, _, _ in specs])
        for session, (reward, length, acc) in enumerate(specs):
            keys.append(f"{uid}_{session}_0")
            tags.append({"response_len": length, "seq_len": 10 + length})
            uids.append(uid)
            rewards.append(reward)
            accs.append(acc)
    on_acc = all(acc is not None for acc in accs)
    accuracy = accs if on_acc else rewards
    return GeneratedRows(keys, tags, uids, accuracy, advantages, accuracy_source="acc" if on_acc else "score")


def keys(prefix, sessions):
    return [f"{prefix}_{s}_0" for s in sessions]


def names(rows: list[BufferedRow]) -> list[str]:
    return [row.key for row in rows]


@dataclass
class StepResult:
    difficult: list[str]
    plan: ExplorationPlan | None
    retention: Retention
    update: UpdatePlan
    admission: Admission | None
    replayed: list[BufferedRow]
    metrics: dict
    deleted: list[str]  # the keys the trainer deletes from TransferQueue at the end of the step


class Scripted:
    """The planner driven as UECTrainer.step() drives it.

    Per step, one list of samples per prompt; prompt i of step s has uid ``p{s}x{i}`` and is the same question
    ``q{i}`` on every step. ``explorations``: the G' samples of each exploration group, in the order the plans
    ask for them (padded with wrong answers); exploration groups get the fresh uids e0, e1, ...
    """

    def __init__(self, uec_overrides=None, prompts=2, n=4, explorations=(), total_steps=100):
        overrides = {"exploration": {"n": 4}, "replay": {"frequency": 1}}
        for section, values in (uec_overrides or {}).items():
            overrides[section] = {**overrides.get(section, {}), **values} if isinstance(values, dict) else values
        uec = UECConfig.from_mapping(overrides)
        self.planner = UECPlanner(uec, prompts * n if uec.n0 is None else uec.n0, MAX_RESPONSE_LEN)
        self.step, self.total_steps = 1, total_steps
        self.explorations = deque(explorations)
        self.pending: ExplorationPlan | None = None
        self.fresh = count()

    def explore(self, plan: ExplorationPlan) -> GeneratedRows:
        groups = {}
        for uid, n in zip(plan.uids, plan.samples):
            samples = list(self.explorations.popleft()) if self.explorations else []
            groups[uid] = (samples + [0.0] * n)[:n]
        return generated(groups)

    def run(self, groups: list[list]) -> StepResult:
        planner, step, metrics = self.planner, self.step, {}
        regular = generated({f"p{step}x{i}": samples for i, samples in enumerate(groups)})
        exploration = None
        if self.pending is not None:  # pipelined: generated with this step's rollout, recorded first
            exploration, self.pending = self.explore(self.pending), None
            metrics.update(planner.record_exploration(exploration, step).metrics)
        # 2.-3.
        difficult = planner.difficult_prompts(regular)
        plan = None
        if planner.explores(difficult):
            prompt_keys = [f"q{uid.split('x')[1]}" for uid in difficult]
            fresh = [f"e{next(self.fresh)}" for _ in difficult]
            plan = planner.plan_exploration(difficult, prompt_keys, fresh, step, self.total_steps)
        if plan is not None and plan.deferred:
            self.pending = plan
        elif plan is not None:
            exploration = self.explore(plan)
            metrics.update(planner.record_exploration(exploration, step).metrics)
        # 5.-6.
        retention = planner.retain(regular, exploration, step)
        deleted = list(retention.discarded)
        update = planner.plan_update(retention.survivors, step)
        deleted += names(update.evicted)
        # 7.
        admission = None
        if update.rows:
            admission = planner.admit(update.rows)
            admitted = set(names(admission.admitted))
            deleted += [key for key in names(update.rows) if key not in admitted] + names(admission.evicted)
        replayed = planner.replay(step)
        metrics.update(planner.step_metrics(regular, difficult, exploration, retention))
        metrics.update(planner.training_metrics(update.rows, replayed, step))
        self.step += 1
        return StepResult(difficult, plan, retention, update, admission, replayed, metrics, deleted)


def test_the_scripted_advantages_are_the_hand_values():
    assert grpo([1, 0, 0, 0]) == pytest.approx([1.5, -0.5, -0.5, -0.5], abs=1e-5)
    assert grpo([1, 1, 0, 0]) == pytest.approx([0.866, 0.866, -0.866, -0.866], abs=1e-3)
    assert grpo([1, 1, 1, 0]) == pytest.approx([0.5, 0.5, 0.5, -1.5], abs=1e-5)
    assert grpo([1, 1, 1, 1]) == [0.0] * 4


# ---- the reference rules, step by step ----------------------------------------------------------------------------


def test_seven_scripted_steps_decide_as_the_released_code_would():
    """P = 2 prompts x G = 4, N0 = 4 (uec.n0), G' = 4, batch and replay capacity 2*N0 = 8, A0 = 1, replay every 2.

    GRPO advantages in a group of 4 with k correct: k=1: +1.5 / -0.5; k=2: +/-0.866; k=3: +0.5 / -1.5.
    """
    run = Scripted(
        uec_overrides={"n0": 4, "replay": {"frequency": 2, "adv_threshold": 1.0}},
        explorations=[[(1, LONG), 1, 0, 0]],  # step 1's exploration of p1x1: k=2, one correct sample truncated
    )

    # step 1: p1x0 has a truncated correct sample; p1x1 is difficult and explored under a fresh uid at T'.
    # Exploration survivors come first; the overlong filter drops the truncated positive of both kinds.
    s = run.run([[(1, LONG), 0, 0, 0], [0, 0, 0, 0]])
    assert s.difficult == ["p1x1"]
    assert (s.plan.uids, s.plan.sources, s.plan.samples, s.plan.temperature) == (["e0"], ["p1x1"], [4], 1.2)
    assert not s.plan.deferred
    assert names(s.retention.kept_exploration) == keys("e0", [0, 1])
    assert names(s.retention.kept_regular) == keys("p1x0", range(4))
    assert names(s.retention.overlong) == ["e0_0_0", "p1x0_0_0"]
    m = s.metrics
    assert (m["uec/difficult_prompts"], m["uec/exploration_kept"], m["uec/regular_kept"]) == (1, 2, 4)
    assert m["uec/overlong_positive_dropped"] == 2 and m["uec/overlong_positive_dropped_exploration"] == 1
    assert names(s.update.rows) == keys("e0", [1]) + keys("p1x0", [1, 2, 3])
    assert [row.exploration for row in s.update.rows] == [True, False, False, False]
    assert m["uec/update_rows"] == 4 and m["uec/update_exploration_rows"] == 1
    assert m["uec/batch_buffer_size"] == 0 and m["uec/replay_buffer_size"] == 0
    assert s.admission.admitted == [] and s.replayed == []  # +0.866 and -0.5 are not above A0; no replay step
    assert set(s.deleted) == set(keys("p1x0", range(4)) + keys("p1x1", range(4)) + keys("e0", range(4)))
    assert len(s.deleted) == 12

    # step 2: 8 survivors -> floor(8/4)*4 = 8 rows in one update (popping one N0 block would leave 4 behind)
    s = run.run([[1, 0, 0, 0], [0, 0, 1, 0]])
    assert s.plan is None
    assert names(s.update.rows) == keys("p2x0", range(4)) + keys("p2x1", range(4))
    assert s.metrics["uec/update_rows"] == 8 and s.metrics["uec/batch_buffer_size"] == 0
    assert names(run.planner.replay_buffer.rows()) == ["p2x0_0_0", "p2x1_2_0"]  # A = +1.5 > A0
    assert s.update.replay_due and s.replayed == [] and s.metrics["uec/replay_rows"] == 0  # 2 rows < N0
    assert "p2x0_0_0" not in s.deleted and "p2x1_2_0" not in s.deleted
    assert set(s.deleted) == set(keys("p2x0", [1, 2, 3]) + keys("p2x1", [0, 1, 3]))

    # step 3: the truncated correct regular sample is dropped, the all-correct group (A = 0) too: 3 survivors
    # < N0, so no update, and no replay step: nothing to train, the trainer keeps the rollout awake
    s = run.run([[0, (1, LONG), 0, 0], [1, 1, 1, 1]])
    assert s.update.rows == [] and not s.update.trains and s.metrics["uec/update_ran"] == 0
    assert names(run.planner.batch_buffer.rows()) == keys("p3x0", [0, 2, 3]) and s.metrics["uec/batch_buffer_size"] == 3

    # step 4: 3 + 8 = 11 > capacity 8: the 3 oldest are evicted untrained (as the released code truncates),
    # then 8 rows are trained; replay is due and holds exactly N0 = 4 rows: a random order of all of them
    s = run.run([[1, 0, 0, 0], [0, 0, 0, 1]])
    assert names(s.update.evicted) == keys("p3x0", [0, 2, 3]) and set(keys("p3x0", [0, 2, 3])) <= set(s.deleted)
    assert names(s.update.rows) == keys("p4x0", range(4)) + keys("p4x1", range(4))
    replay_rows = ["p2x0_0_0", "p2x1_2_0", "p4x0_0_0", "p4x1_3_0"]
    assert names(s.replayed) == random.Random(0).sample(replay_rows, 4)
    m = s.metrics
    assert m["uec/replay_rows"] == 4 and m["uec/replay_staleness/max"] == 2 and m["uec/replay_staleness/min"] == 0
    assert m["uec/update_staleness/max"] == 0 and m["uec/replay_updates_total"] == 1
    assert m["tokens/trained"] == 12 * (10 + SHORT) and m["uec/trained_response_tokens"] == 12 * SHORT

    # steps 5-6: the replay buffer reaches its capacity and is replayed whole, oldest first
    run.run([[1, 0, 0, 0], [0, 1, 0, 0]])
    s = run.run([[0, 0, 1, 0], [0, 0, 0, 1]])
    assert names(s.replayed) == replay_rows + ["p5x0_0_0", "p5x1_1_0", "p6x0_2_0", "p6x1_3_0"]
    assert s.metrics["uec/replay_buffer_size"] == 8 and s.metrics["uec/replay_updates_total"] == 2

    # step 7: two more admissions evict the two oldest replay rows, which are then deleted
    s = run.run([[1, 0, 0, 0], [1, 0, 0, 0]])
    assert names(s.admission.evicted) == ["p2x0_0_0", "p2x1_2_0"]
    assert {"p2x0_0_0", "p2x1_2_0"} <= set(s.deleted)
    assert names(run.planner.replay_buffer.rows())[-2:] == ["p7x0_0_0", "p7x1_0_0"]


def test_without_selective_retention_every_sample_is_buffered_and_the_buffer_overflows():
    """The "w/o selective retention" ablation: every sample survives, except overlong positives."""
    run = Scripted(
        uec_overrides={"n0": 4, "retention": {"enable": False}, "replay": {"enable": False}},
        explorations=[[(1, LONG), 0, 0, 0]],
    )
    # step 1: survivors e0 (3: the truncated positive is dropped) + p1x0 (3) + p1x1 (4, A = 0) = 10 rows;
    # capacity 8 keeps the newest 8, so the two oldest exploration rows go untrained; one update on 8 rows
    s = run.run([[(1, LONG), 0, 0, 0], [0, 0, 0, 0]])
    m = s.metrics
    assert m["uec/exploration_kept"] == 4 and m["uec/regular_kept"] == 8 and m["uec/overlong_positive_dropped"] == 2
    assert names(s.update.evicted) == keys("e0", [1, 2])
    assert names(s.update.rows) == keys("e0", [3]) + keys("p1x0", [1, 2, 3]) + keys("p1x1", range(4))
    assert set(keys("e0", [1, 2])) <= set(s.deleted)
    assert s.admission.admitted == [] and s.replayed == []  # replay off
    # step 2: 8 survivors, an all-correct group included
    s = run.run([[1, 1, 1, 1], [0, 1, 0, 0]])
    assert names(s.update.rows) == keys("p2x0", range(4)) + keys("p2x1", range(4))
    assert s.metrics["uec/batch_buffer_size"] == 0


def test_overlong_filter_scope_exploration_keeps_truncated_regular_positives():
    run = Scripted(
        uec_overrides={"n0": 4, "retention": {"drop_overlong_positive": "exploration"}},
        explorations=[[(1, LONG), 1, 0, 0]],
    )
    s = run.run([[(1, LONG), 0, 0, 0], [0, 0, 0, 0]])
    assert s.metrics["uec/overlong_positive_dropped"] == 1
    assert s.metrics["uec/overlong_positive_dropped_exploration"] == 1
    assert names(s.update.rows) == keys("e0", [1]) + keys("p1x0", [0, 1, 2])
    assert names(run.planner.batch_buffer.rows()) == ["p1x0_3_0"]


def test_released_code_rules_abs_gt_1_and_abs_admission():
    """exploration.retention=abs_gt_1 and replay.admission=abs_gt, the released code's choices."""
    run = Scripted(
        uec_overrides={
            "n0": 4,
            "exploration": {"retention": "abs_gt_1"},
            "replay": {"admission": "abs_gt", "frequency": 5},
            "retention": {"drop_overlong_positive": "none"},
        },
        explorations=[[1, 1, 1, 0]],  # k = 3 of 4: correct +0.5, wrong -1.5
    )
    s = run.run([[1, 1, 1, 0], [0, 0, 0, 0]])
    # |A| > 1 keeps only the failure of the exploration group; regular rows all pass |A| > 0.05
    assert s.metrics["uec/exploration_kept"] == 1 and names(s.retention.kept_exploration) == ["e0_3_0"]
    assert names(s.update.rows) == keys("e0", [3]) + keys("p1x0", range(3))
    # |A| > A0 admits the -1.5 row as well
    assert names(run.planner.replay_buffer.rows()) == ["e0_3_0"]
    assert not s.update.replay_due and s.replayed == []  # a replay every 5 steps


# ---- edge cases ---------------------------------------------------------------------------------------------------


def test_no_difficult_prompt_means_no_exploration():
    run = Scripted()
    s = run.run([[1, 0, 0, 0], [1, 1, 1, 1]])
    assert s.difficult == [] and s.plan is None and run.planner.exploring == {}
    assert s.metrics["uec/difficult_prompts"] == 0 and s.metrics["uec/exploration_samples"] == 0
    assert s.metrics["uec/regular_kept"] == 4  # the all-correct group has Â = 0 and is dropped


def test_difficult_prompts_are_resampled_at_the_exploration_temperature_under_a_fresh_uid():
    run = Scripted(explorations=[[1, 0, 0, 0]])
    s = run.run([[0, 0, 0, 0], [1, 0, 1, 0]])
    assert s.plan.uids == ["e0"] and s.plan.sources == ["p1x0"] and s.plan.samples == [4]
    assert s.plan.temperature == 1.2
    m = s.metrics
    assert m["uec/difficult_prompts"] == 1 and m["uec/exploration_samples"] == 4
    assert m["uec/exploration_kept"] == 1 and m["uec/difficult_solved_by_exploration"] == 1
    assert m["uec/exploration_lag"] == 0.0  # the reference explores in the step that found the prompt
    assert run.planner.exploring == {}  # recorded: nothing in flight


def test_difficulty_is_decided_on_accuracy_with_a_format_bonus():
    # compute_score_with_format: a well-formatted wrong answer scores 0.1 with acc 0; the group is still difficult
    wrong, right = (0.1, SHORT, 0.0), (1.1, SHORT, 1.0)
    run = Scripted(explorations=[[right, wrong, wrong, wrong]])
    s = run.run([[wrong] * 4, [right, wrong, wrong, wrong]])
    assert s.difficult == ["p1x0"]
    assert s.metrics["uec/difficult_prompts"] == 1 and s.metrics["uec/difficulty_on_accuracy"] == 1
    assert s.metrics["uec/regular_accuracy"] == pytest.approx(1 / 8)
    assert s.metrics["uec/exploration_accuracy"] == pytest.approx(1 / 4)


def test_difficult_prompts_with_no_exploration_survivor():
    run = Scripted()  # no exploration script: every exploration sample is wrong
    s = run.run([[0, 0, 0, 0], [1, 0, 0, 0]])
    assert s.metrics["uec/exploration_samples"] == 4 and s.metrics["uec/exploration_kept"] == 0
    assert s.metrics["uec/difficult_solved_by_exploration"] == 0
    assert [key for key in s.deleted if not key.startswith("p1")] == keys("e0", range(4))


def test_every_group_filtered_skips_the_update_and_training_goes_on():
    run = Scripted(uec_overrides={"exploration": {"enable": False}})
    first = run.run([[1, 1, 1, 1], [1, 1, 1, 1]])
    assert first.metrics["uec/regular_kept"] == 0 and first.metrics["uec/update_ran"] == 0
    assert len(first.deleted) == 8 and not first.update.trains
    second = run.run([[1, 0, 1, 0], [0, 1, 0, 1]])
    assert second.metrics["uec/update_ran"] == 1 and second.metrics["uec/batch_buffer_size"] == 0  # 8 kept = N0
    assert names(second.update.rows) == keys("p2x0", range(4)) + keys("p2x1", range(4))


def test_exploration_disabled_plans_nothing_for_difficult_prompts():
    run = Scripted(uec_overrides={"exploration": {"enable": False}})
    s = run.run([[0, 0, 0, 0], [1, 0, 0, 0]])
    assert s.difficult == ["p1x0"] and s.plan is None and s.metrics["uec/exploration_samples"] == 0
    assert run.planner.plan_exploration(["p1x0"], ["q0"], ["e9"], 1, 100) is None


def test_replay_waits_for_n0_rows_then_replays_with_frozen_advantages():
    run = Scripted(uec_overrides={"exploration": {"enable": False}})
    first = run.run([[1, 0, 0, 0], [0, 1, 0, 0]])
    # 1-of-4 correct: Â = +1.5 for the correct row, -0.5 for the others; A0 = 1 admits the 2 correct rows
    assert first.metrics["uec/update_ran"] == 1 and first.metrics["uec/replay_buffer_size"] == 2
    assert first.metrics["uec/replay_rows"] == 0 and first.update.replay_due
    admitted = ["p1x0_0_0", "p1x1_1_0"]  # the correct row of each group
    assert names(first.admission.admitted) == admitted and not set(admitted) & set(first.deleted)
    for _ in range(3):
        s = run.run([[1, 0, 0, 0], [0, 1, 0, 0]])
    assert s.metrics["uec/replay_buffer_size"] == 8 and s.metrics["uec/replay_rows"] == 8
    assert s.metrics["uec/replay_mean_advantage"] == pytest.approx(1.5, abs=1e-4)
    assert s.metrics["uec/replay_negative_share"] == 0.0  # Â > A0 admits positive rows only
    assert all(row.advantage == pytest.approx(1.5, abs=1e-4) for row in s.replayed)  # frozen at generation


def test_a_replay_step_with_a_full_replay_buffer_trains_even_without_an_update():
    run = Scripted(uec_overrides={"n0": 4, "exploration": {"enable": False}, "replay": {"frequency": 2}})
    run.run([[1, 0, 0, 0], [0, 1, 0, 0]])  # admits 2, not a replay step
    s = run.run([[1, 0, 0, 0], [1, 0, 0, 0]])  # admits 2 more: 4 = N0, replayed
    assert s.metrics["uec/replay_rows"] == 4
    run.run([[1, 1, 1, 1], [1, 1, 1, 1]])  # step 3: nothing survives, not a replay step
    s = run.run([[1, 1, 1, 1], [1, 1, 1, 1]])  # step 4: no update, but 4 replay rows wait
    assert s.update.rows == [] and s.update.trains and len(s.replayed) == 4


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="GeneratedRows.advantages"):
        GeneratedRows(["a_0_0", "a_1_0"], [{}, {}], ["a", "a"], [0.0, 1.0], [0.5])
    with pytest.raises(ValueError, match="GeneratedRows.uids"):
        GeneratedRows(["a_0_0", "a_1_0"], [{}, {}], ["a"], [0.0, 1.0], [0.5, -0.5])
    planner = Scripted().planner
    with pytest.raises(ValueError, match="one of each per prompt"):
        planner.plan_exploration(["p1x0", "p1x1"], ["q0"], ["e0", "e1"], 1, 100)


# ---- what the step reports -----------------------------------------------------------------------------------------


def test_replay_negative_share_counts_the_replayed_rows_with_a_negative_advantage():
    """The released code's |Â| > A0 admission also admits failures: a group with 3 of 4 correct has Â = −1.5 on its
    wrong row. Step 1 admits two such rows; step 2 one more and a +1.5 row: 3 of the 4 replayed rows are negative."""
    run = Scripted(
        uec_overrides={"n0": 4, "exploration": {"enable": False}, "replay": {"frequency": 2, "admission": "abs_gt"}}
    )
    first = run.run([[1, 1, 1, 0], [1, 1, 1, 0]])
    assert names(first.admission.admitted) == ["p1x0_3_0", "p1x1_3_0"]
    assert "uec/replay_negative_share" not in first.metrics  # not a replay step
    s = run.run([[1, 0, 0, 0], [1, 1, 1, 0]])
    assert sorted(names(s.replayed)) == ["p1x0_3_0", "p1x1_3_0", "p2x0_0_0", "p2x1_3_0"]
    assert s.metrics["uec/replay_negative_share"] == 0.75


def test_exploration_group_successes_count_the_groups_by_correct_samples():
    """Both prompts are difficult; exploration finds 2 of 4 for the first and nothing for the second. Every k from 0
    to G' = 4 is reported, so the columns are the same on every step with exploration."""
    run = Scripted(explorations=[[1, 0, 1, 0], [0, 0, 0, 0]])
    s = run.run([[0, 0, 0, 0], [0, 0, 0, 0]])
    found = {k: s.metrics.get(f"uec/exploration_group_successes/{k}") for k in range(6)}
    assert found == {0: 1, 1: 0, 2: 1, 3: 0, 4: 0, 5: None}
    s = run.run([[1, 0, 0, 0], [0, 1, 0, 0]])  # nothing difficult, nothing explored: no histogram
    assert not [name for name in s.metrics if name.startswith("uec/exploration_group_successes/")]


def test_exploration_group_successes_reach_the_adaptive_budgets_cap():
    """With the adaptive budget a group can get up to its cap (2·G' = 8 samples), so k runs to 8."""
    run = Scripted(
        uec_overrides={"exploration": {"budget": "adaptive"}, "replay": {"enable": False}},
        explorations=[[1, 1, 1, 0], [0, 0, 0, 1]],
    )
    s = run.run([[0, 0, 0, 0], [0, 0, 0, 0]])  # no history yet: 4 samples each
    found = [s.metrics[f"uec/exploration_group_successes/{k}"] for k in range(9)]
    assert found == [0, 1, 0, 1, 0, 0, 0, 0, 0] and "uec/exploration_group_successes/9" not in s.metrics


# ---- beyond the paper: pipelined exploration and the adaptive budget ------------------------------------------------


def test_pipelined_exploration_is_planned_for_the_next_rollout():
    run = Scripted(
        uec_overrides={"n0": 4, "exploration": {"schedule": "pipelined"}}, explorations=[[1, 0, 0, 0]], total_steps=3
    )
    # step 1 finds p1x1 difficult but generates nothing for it yet
    first = run.run([[1, 0, 0, 0], [0, 0, 0, 0]])
    assert first.metrics["uec/difficult_prompts"] == 1 and first.metrics["uec/exploration_samples"] == 0
    assert first.plan.deferred and first.plan.uids == ["e0"] and list(run.planner.exploring) == ["e0"]
    # step 2: its exploration arrives with step 2's rollout, one step late, and goes first into the buffer
    second = run.run([[1, 1, 1, 1], [0, 1, 0, 0]])
    assert second.metrics["uec/exploration_samples"] == 4 and second.metrics["uec/exploration_kept"] == 1
    assert second.metrics["uec/exploration_lag"] == 1.0 and run.planner.exploring == {}
    assert names(second.update.rows) == ["e0_0_0", "p2x1_0_0", "p2x1_1_0", "p2x1_2_0"]
    assert second.update.rows[0].step == 2  # generated at step 2
    assert second.metrics["uec/regular_samples"] == 8
    # step 3 is the last: the difficult prompt it finds is not deferred to a step that never comes
    third = run.run([[0, 0, 0, 0], [1, 0, 0, 0]])
    assert third.metrics["uec/difficult_prompts"] == 1 and third.plan is None
    assert run.planner.exploring == {} and run.pending is None


def test_adaptive_budget_splits_the_same_total_by_history():
    # two prompts difficult on every step; exploration always solves q0 (1 of its samples) and never q1
    run = Scripted(
        uec_overrides={"exploration": {"budget": "adaptive", "enable": True}, "replay": {"enable": False}},
        explorations=[[1, 0, 0, 0, 0, 0, 0, 0], [0] * 8] * 4,
    )
    allotted = []
    for _ in range(4):
        s = run.run([[0, 0, 0, 0], [0, 0, 0, 0]])
        allotted.append(s.plan.samples)
        assert sum(s.plan.samples) == 2 * 4  # the reference total: G' (4) per difficult prompt
        assert s.metrics["uec/budget_samples"] == 8 and s.metrics["uec/budget_realized_successes"] == 1
    assert allotted[0] == [4, 4]  # no history yet: the reference split
    assert allotted[-1][1] == 2  # the prompt that never succeeded keeps only the floor, never less
    history = run.planner.exploration_budget.history
    assert sorted(history) == ["q0", "q1"] and [history[q].explored for q in ("q0", "q1")] == [4, 4]
    assert history["q1"].successes == 0 and history["q0"].successes == 4


def test_pipelined_allocation_uses_the_exploration_recorded_in_the_same_step():
    # q1 is difficult at steps 1 and 2; step 2's round brings its first exploration: 3 of 4 correct
    run = Scripted(
        uec_overrides={"exploration": {"schedule": "pipelined", "budget": "adaptive"}},
        explorations=[[1, 1, 1, 0]],
        total_steps=5,
    )
    run.run([[1, 0, 0, 0], [0, 0, 0, 0]])
    run.run([[1, 0, 0, 0], [0, 0, 0, 0]])
    (plan,) = run.planner.exploring.values()  # the split planned at step 2 for q1's second exploration
    # its chance already counts the 3 successes in 4: (3 + 4 * mu) / (4 + 4), mu = (3 + 1) / (4 + 4) = 0.5
    assert plan["chance"] == pytest.approx(0.625) and plan["key"] == "q1" and plan["found"] == 2


# ---- state ----------------------------------------------------------------------------------------------------------

SCRIPT = [
    [[1, 0, 0, 0], [0, 0, 0, 0]],
    [[0, 0, 0, 0], [0, 1, 0, 0]],
    [[0, 1, 0, 0], [0, 0, 0, 0]],
    [[1, 0, 0, 1], [0, 0, 1, 0]],
    [[0, 0, 0, 0], [1, 1, 0, 0]],
    [[1, 0, 0, 0], [0, 0, 0, 0]],
]


def decisions(result: StepResult) -> tuple:
    return (
        result.plan and (result.plan.sources, result.plan.samples),
        names(result.update.rows),
        names(result.replayed),
        sorted(result.deleted),
    )


@pytest.mark.parametrize("options", [{}, {"exploration": {"schedule": "pipelined", "budget": "adaptive"}}])
def test_a_restored_planner_decides_exactly_as_the_original(options):
    """State through the checkpoint's plain form (uec_recipe/checkpoint.py, plain.py) and back: the buffers, the
    replay random stream, the explorations in flight and the budget's history are all there is."""
    overrides = {"n0": 4, "replay": {"frequency": 2, "adv_threshold": 0.4}, **options}
    explorations = [[1, 0, 0, 0], [0, 0, 1, 1], [1, 1, 1, 0]] * 4
    original = Scripted(uec_overrides=overrides, explorations=explorations, total_steps=len(SCRIPT))
    for groups in SCRIPT[:3]:
        original.run(groups)
    saved_state = to_plain(original.planner.state())
    saved_buffers = {name: rows_to_records(rows) for name, rows in original.planner.buffers().items()}
    assert saved_buffers["batch_buffer"] or saved_buffers["replay_buffer"], "the scenario must leave rows buffered"

    restored = Scripted(uec_overrides=overrides, explorations=list(original.explorations), total_steps=len(SCRIPT))
    restored.planner.restore(
        {name: from_plain(value) for name, value in saved_state.items()},
        {name: records_to_rows(records) for name, records in saved_buffers.items()},
    )
    restored.step, restored.pending, restored.fresh = original.step, original.pending, count(100)
    original.fresh = count(100)
    assert restored.planner.state() == original.planner.state()
    for groups in SCRIPT[3:]:
        assert decisions(restored.run(groups)) == decisions(original.run(groups))
    assert restored.planner.state() == original.planner.state()
