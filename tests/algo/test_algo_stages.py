"""Unit tests of the UEC stages on verl DataProto objects, with hand-computed values (no Ray)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from verl import DataProto
from verl.trainer.ppo import core_algos

import uec_recipe.algo.estimators  # noqa: F401  (registers "uec")
from uec_recipe.algo.buffers import BufferedRow, FifoBuffer, fifo_capacity, replay_sample_size, select_replay_rows
from uec_recipe.algo.difficulty import difficult_groups, sequence_advantages
from uec_recipe.algo.retention import admit_to_replay, keep_exploration, keep_regular, overlong_positive


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
    assert difficult_groups(data) == ["a", "d"]
    assert difficult_groups(rollout({"x": [1, 0]})) == []


@pytest.mark.parametrize("k, expected", [(1, 4.2485), (2, 2.9240), (5, 1.6882), (9, 1.0776)])
def test_exploration_advantage_table_for_20_samples(k, expected):
    # The algorithm doc's table (+4.25, +2.92, +1.69, +1.08), to four places: (1 - k/20) / unbiased std.
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


def test_replay_sample_sizes():
    assert replay_sample_size(0, 32) == 0
    assert replay_sample_size(31, 32) == 0  # below N0: no replay update
    assert replay_sample_size(40, 32) == 32
    assert replay_sample_size(64, 32) == 64  # full buffer (s' = 2): all of it
    assert fifo_capacity(2.0, 2560) == 5120 and fifo_capacity(0.5, 10) == 10
    rng = random.Random(0)
    chosen = select_replay_rows(rows(50), 16, rng)
    assert len(chosen) == 48 and len({r.key for r in chosen}) == 48
    assert select_replay_rows(rows(32), 16, rng) == rows(32)
    assert select_replay_rows(rows(15), 16, rng) == []
