"""Means over seeds and their 95 % intervals, against values worked out by hand."""

from __future__ import annotations

import pytest

from uec_recipe.eval.stats import difference, mean_ci, paired_difference, t_quantile_975


def test_t_quantiles_are_the_table_values():
    assert t_quantile_975(1) == pytest.approx(12.7062)
    assert t_quantile_975(2) == pytest.approx(4.3027)
    assert t_quantile_975(30) == pytest.approx(2.0423)
    assert t_quantile_975(200) == pytest.approx(1.96, abs=1e-3)
    with pytest.raises(ValueError):
        t_quantile_975(0)


def test_mean_and_interval_of_three_seeds():
    # mean 0.6, sample sd 0.1, half-width 4.3027 * 0.1 / sqrt(3) = 0.24842
    estimate = mean_ci([0.5, 0.6, 0.7])
    assert estimate.mean == pytest.approx(0.6) and estimate.half_width == pytest.approx(0.248417, abs=1e-6)
    assert estimate.seeds == 3 and estimate.excludes_zero()
    assert estimate.format(100, 1) == "60.0 ± 24.8"


def test_one_seed_has_no_interval_and_says_so():
    estimate = mean_ci([0.42])
    assert estimate.half_width is None and not estimate.excludes_zero()
    assert estimate.format(100, 1, signed=True) == "+42.0 (1 seed)"
    with pytest.raises(ValueError):
        mean_ci([])
    with pytest.raises(ValueError):
        mean_ci([0.1, float("nan")])


def test_paired_difference_against_a_fixed_model():
    # seeds 0.30 and 0.36 against a base of 0.25: differences 0.05, 0.11; mean 0.08, sd 0.042426
    # half-width 12.7062 * 0.042426 / sqrt(2) = 0.38119: two seeds cannot exclude 0 here
    estimate = paired_difference([0.30, 0.36], 0.25)
    assert estimate.mean == pytest.approx(0.08) and estimate.half_width == pytest.approx(0.381186, abs=1e-5)
    assert not estimate.excludes_zero()
    with pytest.raises(ValueError):
        paired_difference([0.3, 0.4], [0.1])


def test_welch_difference_of_two_methods():
    # a = [.5, .6, .7] (var of mean .01/3), b = [.3, .35, .4] (var of mean .0025/3); df = 2.94 -> 2 (floor)
    # half-width 4.3027 * sqrt(.004167) = 0.27774
    estimate = difference([0.5, 0.6, 0.7], [0.3, 0.35, 0.4])
    assert estimate.mean == pytest.approx(0.25) and estimate.half_width == pytest.approx(0.277738, abs=1e-5)
    assert difference([0.5], [0.3, 0.4]).half_width is None
    assert difference([0.5, 0.5], [0.3, 0.3]).half_width == 0.0
