"""The study's statistics against values worked out by hand or from closed forms."""

from __future__ import annotations

import math
import random

import pytest

from uec_recipe.eval.stats import (
    Estimate,
    difference,
    holm_adjusted_p,
    holm_intervals,
    interquartile_mean,
    iqm_bootstrap,
    mean_ci,
    paired_difference,
    ratio_bootstrap,
    t_cdf,
    t_quantile,
    t_quantile_975,
    verdict,
    welch_difference,
)

# Two-sided 95 % quantiles of Student's t, t(0.975, df), df = 1..30, as printed (4 decimals) in standard tables.
T975_TABLE = (
    12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
    2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
    2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423,
)  # fmt: skip


# ---- Student's t ----------------------------------------------------------------------------------------------------


def quantile_df1(p):  # Cauchy: t = tan(pi (p - 1/2)), written as -cot(pi p) to stay exact near p = 0
    return -1.0 / math.tan(math.pi * p)


def quantile_df2(p):
    return (2 * p - 1) / math.sqrt(2 * p * (1 - p))


def quantile_df4(p):
    a = 4 * p * (1 - p)
    q = math.cos(math.acos(math.sqrt(a)) / 3) / math.sqrt(a)
    return math.copysign(2 * math.sqrt(q - 1), p - 0.5)


def cdf_df1(t):
    return 0.5 + math.atan(t) / math.pi


def cdf_df2(t):
    return 0.5 + t / (2 * math.sqrt(2 + t * t))


def cdf_df4(t):
    u = 1 + t * t / 4
    return 0.5 + 3 / 8 * t / math.sqrt(u) * (1 - t * t / (12 * u))


@pytest.mark.parametrize("p", [1e-9, 0.001, 0.025, 0.3, 0.6, 0.9, 0.975, 0.995, 0.999])
def test_t_quantiles_match_the_closed_forms(p):
    assert t_quantile(p, 1) == pytest.approx(quantile_df1(p), rel=1e-10)
    assert t_quantile(p, 2) == pytest.approx(quantile_df2(p), rel=1e-10)
    assert t_quantile(p, 4) == pytest.approx(quantile_df4(p), rel=1e-10)


@pytest.mark.parametrize("t", [-40.0, -2.0, -0.3, 0.0, 1e-6, 0.7, 3.0, 250.0])
def test_t_cdf_matches_the_closed_forms(t):
    assert t_cdf(t, 1) == pytest.approx(cdf_df1(t), abs=1e-14)
    assert t_cdf(t, 2) == pytest.approx(cdf_df2(t), abs=1e-14)
    assert t_cdf(t, 4) == pytest.approx(cdf_df4(t), abs=1e-14)


def test_small_tails_keep_their_precision():
    # P(T < -1e4) for df 1 is ~3.2e-5, computed from the tail itself, not as 1 - (something close to 1)
    assert t_cdf(-1e4, 1) == pytest.approx(1 / (math.pi * 1e4), rel=1e-7)
    assert t_cdf(-50, 2) == pytest.approx(cdf_df2(-50), rel=1e-10)


def test_t_quantiles_agree_with_the_printed_tables():
    for df, printed in enumerate(T975_TABLE, start=1):
        assert t_quantile(0.975, df) == pytest.approx(printed, abs=5e-5), df  # the tables round to 4 decimals
    # other levels (standard tables, 3 decimals)
    assert t_quantile(0.995, 3) == pytest.approx(5.841, abs=5e-4)
    assert t_quantile(0.95, 10) == pytest.approx(1.812, abs=5e-4)
    assert t_quantile(0.90, 5) == pytest.approx(1.476, abs=5e-4)
    assert t_quantile(0.999, 20) == pytest.approx(3.552, abs=5e-4)


def test_the_t_distribution_tends_to_the_normal():
    z = 1.959963984540054
    assert t_quantile(0.975, math.inf) == pytest.approx(z, abs=1e-12)
    # first-order expansion t = z + (z^3 + z) / (4 df)
    assert t_quantile(0.975, 1e5) == pytest.approx(z + (z**3 + z) / 4e5, abs=1e-8)


def test_fractional_degrees_of_freedom_lie_between_their_neighbours():
    q = t_quantile(0.975, 2.5)
    assert t_quantile(0.975, 3) < q < t_quantile(0.975, 2)
    assert t_cdf(q, 2.5) == pytest.approx(0.975, abs=1e-13)
    assert t_quantile(0.025, 7.3) == -t_quantile(0.975, 7.3)


def test_t_arguments_are_checked():
    for bad in (lambda: t_quantile(0.5, 0), lambda: t_quantile(1.0, 3), lambda: t_cdf(1.0, -1)):
        with pytest.raises(ValueError):
            bad()
    with pytest.raises(ValueError):
        t_quantile_975(0)


def test_the_95_percent_quantile_keeps_its_interface():
    assert t_quantile_975(2) == pytest.approx(4.302652729749464, abs=1e-12)  # 0.95 / sqrt(2 * 0.975 * 0.025)
    assert t_quantile_975(200) == pytest.approx(1.972, abs=5e-4)  # t, no longer the normal's 1.96 beyond df 30


# ---- means and differences ------------------------------------------------------------------------------------------


def test_mean_and_interval_of_three_seeds():
    # mean 0.6, sample sd 0.1, se 0.1/sqrt(3) = 0.057735; t(0.975, 2) = 4.302653: half-width 0.248414
    estimate = mean_ci([0.5, 0.6, 0.7])
    assert estimate.mean == pytest.approx(0.6) and estimate.half_width == pytest.approx(0.2484138, abs=1e-7)
    assert estimate.seeds == 3 and estimate.df == 2 and estimate.excludes_zero()
    assert estimate.format(100, 1) == "60.0 ± 24.8"
    # t = 0.6 / 0.057735 = 10.392; df 2: p = 1 - t / sqrt(2 + t^2) = 0.0091326
    assert estimate.p_value == pytest.approx(0.0091326114, abs=1e-9)
    # at 90 %: t(0.95, 2) = 0.9 / sqrt(0.095) = 2.919986, half-width 0.168585
    assert mean_ci([0.5, 0.6, 0.7], level=0.90).half_width == pytest.approx(0.1685854, abs=1e-7)
    assert estimate.at_level(0.90).half_width == pytest.approx(0.1685854, abs=1e-7)


def test_one_seed_has_no_interval_and_says_so():
    estimate = mean_ci([0.42])
    assert estimate.half_width is None and not estimate.excludes_zero() and estimate.p_value is None
    assert estimate.format(100, 1, signed=True) == "+42.0 (1 seed)"
    assert estimate.verdict("positive") == "not shown"
    with pytest.raises(ValueError):
        mean_ci([])
    with pytest.raises(ValueError):
        mean_ci([0.1, float("nan")])


def test_paired_difference_against_a_fixed_model():
    # seeds 0.30 and 0.36 against a base of 0.25: differences 0.05, 0.11; mean 0.08, sd 0.042426, se 0.03
    # half-width 12.706205 * 0.03 = 0.381186: two seeds cannot exclude 0 here
    estimate = paired_difference([0.30, 0.36], 0.25)
    assert estimate.mean == pytest.approx(0.08) and estimate.half_width == pytest.approx(0.3811861, abs=1e-7)
    assert not estimate.excludes_zero()
    with pytest.raises(ValueError):
        paired_difference([0.3, 0.4], [0.1])


def test_paired_difference_by_seed():
    # seed k against seed k: differences 0.1, 0.2, 0.3; mean 0.2, se 0.057735, df 2, t = 3.4641
    # p = 1 - t / sqrt(2 + t^2) = 1 - 3.4641 / 3.7417 = 0.074180; half-width 4.302653 * 0.057735 = 0.248414
    method, reference = [0.5, 0.6, 0.9], [0.4, 0.4, 0.6]
    paired = paired_difference(method, reference)
    assert paired.mean == pytest.approx(0.2) and paired.half_width == pytest.approx(0.2484138, abs=1e-7)
    assert paired.p_value == pytest.approx(0.0741799, abs=1e-7)
    # the same seeds read as independent samples: the seed-to-seed variation shared by both methods is not removed
    assert welch_difference(method, reference).p_value > paired.p_value


def test_welch_difference_with_two_degrees_of_freedom():
    # a = [.5, .7], b = [.2, .4]: s^2 = .02 each, v = .01 each, se = sqrt(.02) = 0.141421
    # df = (.02)^2 / (.01^2/1 + .01^2/1) = 2; t = 0.3 / 0.141421 = 2.12132
    # p = 1 - t / sqrt(2 + t^2) = 1 - 2.12132 / 2.54951 = 0.167950
    # 90 %: t(0.95, 2) = 2.919986, half-width 2.919986 * 0.141421 = 0.412948
    estimate = welch_difference([0.5, 0.7], [0.2, 0.4], level=0.90)
    assert estimate.mean == pytest.approx(0.3) and estimate.df == pytest.approx(2.0)
    assert estimate.standard_error == pytest.approx(math.sqrt(0.02))
    assert estimate.p_value == pytest.approx(0.1679497, abs=1e-7)
    assert estimate.half_width == pytest.approx(0.4129483, abs=1e-7) and estimate.level == 0.90


def test_welch_difference_with_four_degrees_of_freedom():
    # a = [1, 2, 3], b = [0, 1, 2]: v = 1/3 each, se = sqrt(2/3) = 0.816497, df = (2/3)^2 / (2 (1/3)^2 / 2) = 4
    # t = 1.224745; df-4 CDF 1/2 + 3/8 t/sqrt(u) (1 - t^2/(12u)), u = 1 + t^2/4 = 1.375: F = 0.856068, p = 0.287864
    # half-width t(0.975, 4) * se = 2.776445 * 0.816497 = 2.266958
    estimate = welch_difference([1, 2, 3], [0, 1, 2])
    assert estimate.df == pytest.approx(4.0) and estimate.p_value == pytest.approx(0.2878641, abs=1e-7)
    assert estimate.half_width == pytest.approx(2.2669579, abs=1e-7) and not estimate.excludes_zero()


def test_welch_degrees_of_freedom_are_not_rounded():
    # a = [.5, .6, .7] (v = 1/300), b = [.3, .35, .4] (v = 1/1200): df = (1/240)^2 / ((1/300)^2/2 + (1/1200)^2/2)
    # = 50/17 = 2.941; the interval uses that df, and excludes 0 exactly when p < 0.05
    a, b = [0.5, 0.6, 0.7], [0.3, 0.35, 0.4]
    estimate = welch_difference(a, b)
    assert estimate.df == pytest.approx(50 / 17)
    assert estimate.half_width == pytest.approx(t_quantile(0.975, 50 / 17) * math.sqrt(1 / 240))
    assert estimate.excludes_zero() is (estimate.p_value < 0.05)
    # difference() keeps the first study's convention: df rounded down to 2, half-width 4.302653 * 0.064550
    assert difference(a, b).half_width == pytest.approx(0.2777350, abs=1e-7) and difference(a, b).df == 2
    assert difference([0.5], [0.3, 0.4]).half_width is None


def test_an_interval_excludes_zero_exactly_when_its_p_value_is_below_alpha():
    rng = random.Random(7)
    for _ in range(200):
        a = [rng.gauss(0.3, 0.1) for _ in range(rng.randint(2, 6))]
        b = [rng.gauss(0.4, 0.1) for _ in range(rng.randint(2, 6))]
        level = rng.choice([0.8, 0.9, 0.95, 0.99])
        for estimate in (welch_difference(a, b, level), paired_difference(a[:2], b[:2], level)):
            assert estimate.excludes_zero() is (estimate.p_value < 1 - level)


# ---- seeds without spread -------------------------------------------------------------------------------------------


def test_seeds_without_spread_resolve_nothing():
    same = mean_ci([0.5, 0.5, 0.5])
    assert same.no_spread and same.half_width == 0.0 and not same.excludes_zero() and same.p_value is None
    assert same.format(100, 1) == "50.0, no spread (3 seeds)"
    assert same.verdict("positive") == "not shown"
    # identical up to float rounding: 0.3 - 0.1 and 0.5 - 0.3 differ in the last bit
    paired = paired_difference([0.3, 0.5], [0.1, 0.3])
    assert paired.no_spread and paired.format(100, 2, signed=True) == "+20.00, no spread (2 seeds)"
    welch = difference([0.5, 0.5], [0.3, 0.3])
    assert welch.no_spread and not welch.excludes_zero() and "± 0.0" not in welch.format(100, 1, signed=True)
    assert welch_difference([0.5, 0.5], [0.3, 0.3], level=0.9).no_spread
    # one side without spread is still an interval (the other side's)
    assert not welch_difference([0.5, 0.5], [0.2, 0.4]).no_spread


# ---- Holm -----------------------------------------------------------------------------------------------------------


def test_holm_adjusted_p_values():
    # sorted .005, .01, .03, .04 times 4, 3, 2, 1 = .02, .03, .06, .04 -> running maximum .02, .03, .06, .06
    assert holm_adjusted_p([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # a hypothesis without a p-value counts in m = 3 and is never rejected: .01 * 3, .02 * 2
    assert holm_adjusted_p([0.01, None, 0.02]) == [pytest.approx(0.03), None, pytest.approx(0.04)]
    assert holm_adjusted_p([0.4, 0.5]) == [0.8, 0.8]  # made non-decreasing, capped at 1
    with pytest.raises(ValueError):
        holm_adjusted_p([1.5])


def estimate_with_p(p: float) -> Estimate:
    """An estimate with 1 degree of freedom and standard error 1 whose two-sided p-value is p: with df 1,
    p = 1 - (2/pi) atan(t), so t = cot(pi p / 2); its interval at level 1 - a has half-width cot(pi a / 2)."""
    return Estimate.from_t(1 / math.tan(math.pi * p / 2), 1.0, 1.0, seeds=2)


def cot_half(a: float) -> float:
    return 1 / math.tan(math.pi * a / 2)


def test_holm_intervals_step_down_and_stop_at_the_first_non_rejection():
    family = [estimate_with_p(p) for p in (0.01, 0.04, 0.03, 0.005)]
    assert [e.p_value for e in family] == pytest.approx([0.01, 0.04, 0.03, 0.005])
    adjusted = holm_intervals(family, alpha=0.05)
    # rank 1 (p .005) at .05/4, rejected; rank 2 (.01) at .05/3, rejected; rank 3 (.03) at .05/2, not rejected:
    # stop, so rank 4 (.04) is also at .05/2
    assert [e.level for e in adjusted] == pytest.approx([1 - 0.05 / 3, 1 - 0.025, 1 - 0.025, 1 - 0.0125])
    assert [e.half_width for e in adjusted] == pytest.approx(
        [cot_half(0.05 / 3), cot_half(0.025), cot_half(0.025), cot_half(0.0125)], rel=1e-9
    )
    assert [e.excludes_zero() for e in adjusted] == [True, False, False, True]
    assert [e.mean for e in adjusted] == [e.mean for e in family]


def test_holm_intervals_exclude_zero_exactly_when_holm_rejects():
    rng = random.Random(11)
    for _ in range(100):
        family = [
            welch_difference([rng.gauss(0.1, 0.1) for _ in range(4)], [rng.gauss(0, 0.1) for _ in range(3)])
            for _ in range(rng.randint(1, 8))
        ]
        adjusted_p = holm_adjusted_p([e.p_value for e in family])
        intervals = holm_intervals(family, alpha=0.05)
        assert [e.excludes_zero() for e in intervals] == [p < 0.05 for p in adjusted_p]


def test_holm_keeps_estimates_without_a_p_value_in_the_family():
    # one seed, p = .01, no spread: m = 3, so p = .01 is tested at .05/3 (rejected); the two without a p-value come
    # after it, and the first of them stops the procedure at .05/2
    family = [mean_ci([0.3]), estimate_with_p(0.01), mean_ci([0.2, 0.2])]
    one_seed, tested, same = holm_intervals(family, alpha=0.05)
    assert tested.level == pytest.approx(1 - 0.05 / 3) and tested.excludes_zero()
    assert one_seed.level == same.level == pytest.approx(0.975)
    assert one_seed.half_width is None and same.no_spread and not same.excludes_zero()
    # with p = .02 the same family rejects nothing: .02 > .05/3 (leaving the other two out, m = 1, would reject it)
    family[1] = estimate_with_p(0.02)
    assert not holm_intervals(family, alpha=0.05)[1].excludes_zero()
    assert holm_intervals(family[1:2], alpha=0.05)[0].excludes_zero()


# ---- verdicts -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "low, high, direction, word",
    [
        (0.1, 0.5, "positive", "holds"),
        (-0.5, -0.1, "positive", "opposite"),
        (-0.1, 0.3, "positive", "not shown"),
        (0.0, 0.3, "positive", "not shown"),  # an endpoint at 0 does not exclude it
        (-0.5, -0.1, "negative", "holds"),
        (0.1, 0.5, "negative", "opposite"),
        (-0.3, 0.0, "negative", "not shown"),
    ],
)
def test_verdict_words(low, high, direction, word):
    assert verdict(low, high, direction) == word


def test_verdict_arguments_are_checked():
    with pytest.raises(ValueError):
        verdict(0.1, 0.5, "up")
    with pytest.raises(ValueError):
        verdict(0.5, 0.1, "positive")
    assert mean_ci([0.5, 0.6, 0.7]).verdict("negative") == "opposite"


# ---- interquartile mean and its bootstrap ---------------------------------------------------------------------------


def test_interquartile_mean_weights_the_quartile_boundaries():
    # n = 8: [2, 6] covers x3..x6 whole: the plain 25 % trimmed mean (3 + 4 + 5 + 6) / 4
    assert interquartile_mean([8, 1, 7, 2, 6, 3, 5, 4]) == pytest.approx(4.5)
    # n = 9: [2.25, 6.75]: x3 and x7 weigh 0.75, (0.75*3 + 4 + 5 + 6 + 0.75*7) / 4.5 = 5; the outlier 100 is out
    assert interquartile_mean([1, 2, 3, 4, 5, 6, 7, 8, 100]) == pytest.approx(5.0)
    # n = 5: [1.25, 3.75]: (0.75*2 + 4 + 0.75*8) / 2.5 = 4.6 (scipy's trim_mean(x, 0.25) would give 14/3)
    assert interquartile_mean([1, 2, 4, 8, 16]) == pytest.approx(4.6)
    # n = 3: [0.75, 2.25]: (0.25*0 + 3 + 0.25*30) / 1.5 = 7
    assert interquartile_mean([30, 0, 3]) == pytest.approx(7.0)
    assert interquartile_mean([0.4]) == 0.4 and interquartile_mean([0.2, 0.6]) == pytest.approx(0.4)
    with pytest.raises(ValueError):
        interquartile_mean([])


def test_the_bootstrap_resamples_within_each_stratum():
    # every resample of {A: three 0s, B: three 1s} is again three 0s and three 1s: the IQM (n = 6, [1.5, 4.5]:
    # (0.5*0 + 0 + 1 + 0.5*1) / 3 = 0.5) never moves, so the interval has no width; pooled as one stratum it would
    stratified = iqm_bootstrap({"A": [0, 0, 0], "B": [1, 1, 1]}, resamples=200, seed=3)
    assert (stratified.value, stratified.low, stratified.high) == (0.5, 0.5, 0.5)
    assert stratified.no_spread and not stratified.excludes_zero()
    assert stratified.format(100) == "50.0, no spread (6 runs)"
    pooled = iqm_bootstrap([[0, 0, 0, 1, 1, 1]], resamples=200, seed=3)
    assert pooled.low < 0.5 < pooled.high


def test_the_bootstrap_percentile_interval():
    # one stratum [0, 1]: a resample is {0,0} (1/4, IQM 0), {0,1} (1/2, IQM 0.5) or {1,1} (1/4, IQM 1)
    # 95 %: the 2.5 % and 97.5 % quantiles are 0 and 1; 40 %: the 30 % and 70 % quantiles are both 0.5
    wide = iqm_bootstrap([[0, 1]], resamples=4000, seed=0)
    assert (wide.value, wide.low, wide.high, wide.resamples, wide.runs) == (0.5, 0.0, 1.0, 4000, 2)
    assert wide.format(100) == "50.0 [0.0, 100.0]"
    narrow = iqm_bootstrap([[0, 1]], level=0.4, resamples=4000, seed=0)
    assert (narrow.low, narrow.high) == (0.5, 0.5)


def test_the_bootstrap_is_reproducible_from_its_seed():
    scores = {"L08": [0.31, 0.62, 0.58, 0.60], "L13": [0.05, 0.21, 0.18, 0.25]}
    first, again = iqm_bootstrap(scores, resamples=500, seed=1), iqm_bootstrap(scores, resamples=500, seed=1)
    assert first == again and first.resamples == 500
    assert iqm_bootstrap(scores, resamples=500, seed=2) != first
    assert first.value == pytest.approx(interquartile_mean([v for s in scores.values() for v in s]))
    assert first.low <= first.value <= first.high
    for bad in ({"L08": []}, {}):
        with pytest.raises(ValueError):
            iqm_bootstrap(bad)
    with pytest.raises(ValueError):
        iqm_bootstrap(scores, resamples=0)


# ---- a ratio of means ------------------------------------------------------------------------------------------------


def test_the_ratio_bootstrap_resamples_each_side_on_its_own():
    # numerator [2, 4]: a resampled mean is 2 (1/4), 3 (1/2) or 4 (1/4); the denominator [1] never moves
    wide = ratio_bootstrap([2, 4], [1], resamples=4000, seed=0)
    assert (wide.value, wide.low, wide.high, wide.runs) == (3.0, 2.0, 4.0, 3)
    assert wide.format(1, 2) == "3.00 [2.00, 4.00]"
    narrow = ratio_bootstrap([2, 4], [1], level=0.4, resamples=4000, seed=0)
    assert (narrow.low, narrow.high) == (3.0, 3.0)
    # the denominator's resampled means 1, 2, 3 give ratios 2, 1, 2/3 around the ratio of the means, 2 / 2
    flipped = ratio_bootstrap([2], [1, 3], resamples=4000, seed=0)
    assert (flipped.value, flipped.low, flipped.high) == (1.0, pytest.approx(2 / 3), 2.0)
    assert ratio_bootstrap([2, 4], [1], resamples=300, seed=5) == ratio_bootstrap([2, 4], [1], resamples=300, seed=5)
    one_each = ratio_bootstrap([3], [2], resamples=50)
    assert one_each.value == 1.5 and one_each.no_spread
    for numerator, denominator in (([], [1]), ([1], []), ([1], [0]), ([1], [float("nan")])):
        with pytest.raises(ValueError):
            ratio_bootstrap(numerator, denominator)
    with pytest.raises(ValueError):
        ratio_bootstrap([1], [1], resamples=0)
