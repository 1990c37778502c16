"""Unit tests of the UEC stages on verl DataProto objects, with hand-computed values (no Ray)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from verl import DataProto
from verl.trainer.ppo import core_algos

import uec_recipe.algo.estimators  # noqa: F401  (registers "uec")
from uec_recipe.algo.buffers import (
    BufferedRow,
    FifoBuffer,
    fifo_capacity,
    select_replay_rows,
    update_pop_size,
    whole_blocks,
)
from uec_recipe.algo.difficulty import difficult_groups, sequence_accuracy, sequence_advantages, sequence_scores
from uec_recipe.algo.retention import (
    admit_to_replay,
    keep_exploration,
    keep_regular,
    overlong_filter_applies,
    overlong_positive,
)


def rollout(groups: dict[str, list[float]], response_len: int = 3) -> DataProto:
    """A DataProto like the step builds: one row per sample, reward on the last response token."""
    uids, scores = [], []
    for uid, rewards in groups.items():
        uids += [uid] * len(rewards)
        scores += rewards
    token_scores = torch.zeros(len(scores), response_len)
    token_scores[:, -1] = torch.tensor(scores)
    return DataProto.from_dict(
        tensors={
            "token_level_scores": token_scores,
            "token_level_rewards": token_scores,
            "response_mask": torch.ones(len(scores), response_len),
        },
        non_tensors={"uid": np.array(uids, dtype=object)},
    )


def with_advantages(data: DataProto) -> DataProto:
    estimator = core_algos.get_adv_estimator_fn("uec")
    adv, _ = estimator(
        token_level_rewards=data.batch["token_level_rewards"],
        response_mask=data.batch["response_mask"],
        index=data.non_tensor_batch["uid"],
    )
    data.batch["advantages"] = adv
    return data


def test_difficult_groups_are_the_all_zero_groups_only():
    data = rollout({"a": [0, 0, 0, 0], "b": [0, 1, 0, 0], "c": [1, 1, 1, 1], "d": [0, 0, 0, 0]})
    uids = data.non_tensor_batch["uid"]
    assert difficult_groups(uids, sequence_scores(data)) == ["a", "d"]
    single = rollout({"x": [1, 0]})
    assert difficult_groups(single.non_tensor_batch["uid"], sequence_scores(single)) == []


def test_difficulty_reads_accuracy_not_a_score_with_a_format_bonus():
    # A format bonus scores a well-formatted wrong answer 0.1: on the score the group would never be difficult.
    scores = torch.tensor([0.1, 0.1, 0.0, 1.1])
    extra = [{"reward_extra_info": {"acc": a, "pred": "7"}} for a in (0.0, 0.0, 0.0, 1.0)]
    accuracy, source = sequence_accuracy(extra, scores)
    assert source == "acc" and accuracy.tolist() == [0.0, 0.0, 0.0, 1.0]
    uids = ["a", "a", "a", "b"]
    assert difficult_groups(uids, accuracy) == ["a"]
    assert difficult_groups(uids, scores) == []  # what a score-based test would (wrongly) decide


def test_accuracy_falls_back_to_the_score_when_a_row_reports_none():
    scores = torch.tensor([1.0, 0.0])
    accuracy, source = sequence_accuracy([{"reward_extra_info": {"acc": 1.0}}, {"reward_extra_info": {}}], scores)
    assert source == "score" and accuracy.tolist() == [1.0, 0.0]
    assert sequence_accuracy([None, None], scores)[1] == "score"


@pytest.mark.parametrize("k, expected", [(1, 4.2485), (2, 2.9240), (5, 1.6882), (9, 1.0776)])
def test_exploration_advantage_table_for_20_samples(k, expected):
    # The table in keep_exploration's docstring (uec_recipe/algo/retention.py: +4.25, +2.92, +1.69, +1.08), to four
    # places: (1 - k/20) / unbiased std.
    data = with_advantages(rollout({"explore": [1.0] * k + [0.0] * (20 - k)}))
    adv = sequence_advantages(data)
    assert adv[0].item() == pytest.approx(expected, abs=1e-3)
    assert adv[-1].item() < 0


def test_exploration_groups_are_normalised_separately_from_regular_groups():
    both = with_advantages(rollout({"regular": [0, 0, 0, 0, 0], "explore": [1] + [0] * 19}))
    alone = with_advantages(rollout({"explore": [1] + [0] * 19}))
    assert torch.allclose(sequence_advantages(both)[5:], sequence_advantages(alone))
    assert torch.all(sequence_advantages(both)[:5] == 0)


def test_retention_rules():
    adv = torch.tensor([4.25, 1.08, 0.5, 0.04, -0.04, -0.3, -1.2])
    assert keep_regular(adv).tolist() == [True, True, True, False, False, True, True]
    assert keep_exploration(adv, "positive").tolist() == [True, True, True, True, False, False, False]
    assert keep_exploration(adv, "abs_gt_1").tolist() == [True, True, False, False, False, False, True]
    with pytest.raises(ValueError, match="retention rule"):
        keep_exploration(adv, "everything")


def test_abs_gt_1_keeps_only_failures_once_most_samples_are_correct():
    # k = 11 of 20 correct: correct samples get Â < 1, wrong ones Â < -1 (the released code's rule trains on failures)
    adv = sequence_advantages(with_advantages(rollout({"e": [1.0] * 11 + [0.0] * 9})))
    kept = keep_exploration(adv, "abs_gt_1")
    assert kept[:11].sum() == 0 and kept[11:].all()


def test_overlong_positive_and_replay_admission():
    adv = torch.tensor([2.0, 2.0, -2.0, 0.5])
    lengths = torch.tensor([16, 10, 16, 16])
    assert overlong_positive(adv, lengths, 16).tolist() == [True, False, False, True]
    exploration = torch.tensor([True, False, False, False])
    assert overlong_filter_applies(exploration, "all").tolist() == [True] * 4
    assert overlong_filter_applies(exploration, "exploration").tolist() == [True, False, False, False]
    assert overlong_filter_applies(exploration, "none").tolist() == [False] * 4
    with pytest.raises(ValueError, match="scope"):
        overlong_filter_applies(exploration, "regular")
    assert admit_to_replay(adv, 1.0, "gt").tolist() == [True, True, False, False]
    assert admit_to_replay(adv, 1.0, "abs_gt").tolist() == [True, True, True, False]


def rows(n, start=0):
    return [
        BufferedRow(key=f"k{i}", tag={}, advantage=float(i), exploration=False, step=0) for i in range(start, start + n)
    ]


def test_fifo_buffer_evicts_oldest_first_and_pops_in_order():
    buffer = FifoBuffer(capacity=5)
    assert buffer.extend(rows(3)) == []
    evicted = buffer.extend(rows(4, start=3))
    assert [r.key for r in evicted] == ["k0", "k1"]
    assert [r.key for r in buffer.pop_oldest(2)] == ["k2", "k3"]
    assert [r.key for r in buffer.rows()] == ["k4", "k5", "k6"]
    with pytest.raises(ValueError):
        buffer.pop_oldest(4)


def test_update_pops_whole_n0_blocks():
    # The released code pops the oldest floor(size / N0) * N0 rows once the buffer holds N0 or more.
    assert [update_pop_size(size, 32) for size in (0, 31, 32, 40, 63, 64)] == [0, 0, 32, 32, 32, 64]
    assert whole_blocks(95, 32) == 64


def test_replay_selection_follows_the_released_code():
    assert fifo_capacity(2.0, 2560) == 5120 and fifo_capacity(0.5, 10) == 10 and fifo_capacity(1.5, 10) == 15
    rng = random.Random(0)
    # below capacity: a uniform random sample of floor(size / N0) * N0 rows, in the sampled order
    chosen = select_replay_rows(rows(50), 16, 64, rng)
    assert len(chosen) == 48 and len({r.key for r in chosen}) == 48
    assert random.Random(0).sample(rows(50), 48) == chosen
    shuffled = select_replay_rows(rows(32), 16, 64, rng)
    assert {r.key for r in shuffled} == {r.key for r in rows(32)} and shuffled != rows(32)
    # a full buffer is replayed whole, oldest first
    assert select_replay_rows(rows(64), 16, 64, rng) == rows(64)
    assert select_replay_rows(rows(15), 16, 64, rng) == []  # below N0: no replay update
