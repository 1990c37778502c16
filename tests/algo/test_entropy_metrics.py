"""The entropy measurements on scripted rows, against values worked out by hand (uec_recipe/algo/entropy_metrics.py).
tests/algo/test_uec_step.py checks that the trainer feeds them the fields of the right rows."""

from __future__ import annotations

import pytest
import torch

from uec_recipe.algo.entropy_metrics import (
    logp_advantage_covariance,
    mean_negative_log_prob,
    rollout_entropy_by_band,
    row_band,
    update_row_metrics,
)


def rows(*values):
    return [torch.tensor(v, dtype=torch.float32) for v in values]


def test_the_entropy_figure_is_a_token_mean_over_the_valid_tokens():
    log_probs = rows([-1.0, -3.0], [-0.5, -100.0, -0.5, -0.5])
    masks = rows([1, 1], [1, 0, 1, 1])  # a masked token (a tool reply) counts nowhere
    # (1 + 3 + 0.5 · 3) / 5 tokens; the mean of the row means would be (2 + 0.5) / 2
    assert mean_negative_log_prob(log_probs, masks) == pytest.approx(5.5 / 5)
    assert mean_negative_log_prob(log_probs[:1]) == pytest.approx(2.0)
    assert mean_negative_log_prob(rows([-1.0]), rows([0])) is None  # a padding row: no token


def test_the_covariance_is_the_population_covariance_over_the_valid_tokens():
    # tokens (log π, Â): (−1, 1), (−3, 1), (−2, −1), (−2, −1); the masked token would add (−50, 5)
    log_probs, advantages = rows([-1.0, -3.0], [-2.0, -2.0, -50.0]), rows([1.0, 1.0], [-1.0, -1.0, 5.0])
    masks = rows([1, 1], [1, 1, 0])
    # E[log π·Â] = (−1 − 3 + 2 + 2) / 4 = 0, E[log π] = −2, E[Â] = 0  ->  0
    assert logp_advantage_covariance(log_probs, advantages, masks) == pytest.approx(0.0)
    # tokens (−1, 1), (−2, −1): E[log π·Â] = (−1 + 2) / 2 = 0.5, E[log π] = −1.5, E[Â] = 0  ->  0.5
    assert logp_advantage_covariance(rows([-1.0], [-2.0]), rows([1.0], [-1.0]), rows([1], [1])) == pytest.approx(0.5)
    assert logp_advantage_covariance(rows([-1.0]), rows([1.0]), rows([0])) is None


def test_update_row_metrics_name_the_update_and_the_origins_present():
    old_log_probs = rows([-1.0, -1.0], [-3.0])
    advantages = rows([0.5, 0.5], [-1.0])
    masks = rows([1, 1], [1])
    metrics = update_row_metrics("main", old_log_probs, advantages, masks, origins=["regular", "exploration"])
    # all three tokens: entropy 5/3; Cov: E[log π·Â] = (−1 + 3) / 3, E[log π] = −5/3, E[Â] = 0
    assert metrics == pytest.approx(
        {
            "entropy/update_rows/main": 5 / 3,
            "entropy/cov_logp_adv/main": 2 / 3,
            "entropy/update_rows/main/regular": 1.0,
            "entropy/cov_logp_adv/main/regular": 0.0,
            "entropy/update_rows/main/exploration": 3.0,
            "entropy/cov_logp_adv/main/exploration": 0.0,
        }
    )
    # π at the start of a replay update comes apart from the stored π_old; the covariance keeps π_old
    replay = update_row_metrics("replay", old_log_probs, advantages, masks, log_probs=rows([-2.0, -2.0], [-2.0]))
    assert replay == pytest.approx({"entropy/update_rows/replay": 2.0, "entropy/cov_logp_adv/replay": 2 / 3})
    assert update_row_metrics("main", rows([-1.0]), rows([1.0]), rows([0])) == {}
    with pytest.raises(ValueError, match="2 origins for 1 rows"):
        update_row_metrics("main", rows([-1.0]), rows([1.0]), rows([1]), origins=["regular", "regular"])


def test_a_rows_band_is_its_extra_info_band():
    assert row_band({"band": "hard", "index": 3}) == "hard"
    for extra_info in ({"index": 3}, {"band": ""}, {"band": None}, None, "uec_demo/digit_sum/hard"):
        assert row_band(extra_info) is None


def test_rollout_entropy_by_band_leaves_rows_without_a_band_out():
    log_probs = rows([-0.5, -0.5], [-1.0], [-2.0, -2.0, -2.0], [-9.0])
    metrics = rollout_entropy_by_band("entropy/regular_rollout", log_probs, ["easy", "easy", "hard", None])
    # easy: (0.5 + 0.5 + 1) / 3 tokens
    assert metrics == pytest.approx({"entropy/regular_rollout/easy": 2 / 3, "entropy/regular_rollout/hard": 2.0})
    assert rollout_entropy_by_band("entropy/regular_rollout", log_probs, [None] * 4) == {}
