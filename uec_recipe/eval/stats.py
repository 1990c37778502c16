"""The statistics of multi-seed results: means and differences over seeds with Student-t intervals and p-values,
Holm's step-down correction over a family of comparisons, the interquartile mean with a stratified bootstrap
interval, and the words a verdict uses (docs/evaluation.md, "Statistics over seeds").

With k seeds the interval of a mean is mean ± t(1 − α/2, k − 1) · s / √k, s the sample standard deviation: with two
or three seeds it is wide (t(0.975) = 12.71 and 4.30), which is the honest width of what so few runs can show.

Student's t is computed here, not taken from scipy: scipy would be a compiled dependency of every install (GPU nodes
included) for three functions, while the t distribution is one special function away. The CDF is the regularized
incomplete beta function, P(T > t) = I_x(ν/2, 1/2) / 2 with x = ν / (ν + t²), evaluated by its continued fraction
(modified Lentz; Numerical Recipes §6.4) to about 1e-14; a quantile is found by bisection on that tail. Non-integer
degrees of freedom (Welch's) are exact, not rounded. tests/eval/test_stats.py checks both against the closed forms
for ν = 1, 2 and 4, the printed table of t(0.975, 1..30) and the normal limit.

A set of identical per-seed values (or identical paired differences) has no spread: its t-interval would have zero
width and "exclude 0" whatever the mean. Such an estimate is printed "no spread (k seeds)" and resolves nothing
(``excludes_zero()`` is False, its verdict "not shown").
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

# Relative tolerance under which per-seed values count as identical (differences of equal accuracies can differ in
# the last bits: 0.3 - 0.1 != 0.5 - 0.3).
_SAME = 1e-12


# ---- Student's t ----------------------------------------------------------------------------------------------------


def _check_df(df: float) -> None:
    if not df > 0:  # also refuses NaN
        raise ValueError(f"degrees of freedom must be > 0, got {df}")


def _beta_fraction(x: float, a: float, b: float) -> float:
    """The continued fraction of I_x(a, b) (modified Lentz), converging fast for x < (a + 1) / (a + b + 2)."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    fraction = d
    for m in range(1, 100_000):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            fraction *= c * d
        if abs(c * d - 1.0) < 1e-15:
            return fraction
    raise ArithmeticError(f"incomplete beta fraction did not converge (x={x}, a={a}, b={b})")


def _incomplete_beta(x: float, y: float, a: float, b: float) -> float:
    """I_x(a, b), the regularized incomplete beta function; y = 1 − x, passed separately so that neither loses
    precision when the other is close to 1."""
    if x <= 0.0:
        return 0.0
    if y <= 0.0:
        return 1.0
    if x > (a + 1.0) / (a + b + 2.0):
        return 1.0 - _incomplete_beta(y, x, b, a)
    log_front = a * math.log(x) + b * math.log(y) - (math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b))
    return math.exp(log_front) / a * _beta_fraction(x, a, b)


def _t_tail(t: float, df: float) -> float:
    """P(T > t) for t >= 0; df = inf is the normal distribution."""
    if math.isinf(t):
        return 0.0
    if math.isinf(df):
        return 0.5 * math.erfc(t / math.sqrt(2.0))
    return 0.5 * _incomplete_beta(df / (df + t * t), t * t / (df + t * t), df / 2.0, 0.5)


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` > 0 degrees of freedom (any real df; inf = the normal)."""
    _check_df(df)
    if math.isnan(t):
        raise ValueError("t is NaN")
    tail = _t_tail(abs(t), df)
    return 1.0 - tail if t > 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The t with P(T <= t) = p, 0 < p < 1: bisection on the tail probability min(p, 1 − p), to adjacent floats or
    2^-200 absolute (the tail is computed directly, so small tails keep their precision)."""
    _check_df(df)
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    tail = min(p, 1.0 - p)
    if tail == 0.5:
        return 0.0
    low, high = 0.0, 1.0
    while _t_tail(high, df) > tail:
        low, high = high, 2.0 * high
    for _ in range(200):
        middle = (low + high) / 2.0
        if middle in (low, high):
            break
        if _t_tail(middle, df) > tail:
            low = middle
        else:
            high = middle
    t = (low + high) / 2.0
    return t if p > 0.5 else -t


def t_quantile_975(df: int) -> float:
    """t(0.975, df) for integer df >= 1: the quantile of every two-sided 95 % interval."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    return t_quantile(0.975, df)


def _two_sided(level: float) -> float:
    """The t quantile of a two-sided interval at confidence ``level``."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"confidence level must be in (0, 1), got {level}")
    return 1.0 - (1.0 - level) / 2.0


# ---- estimates over seeds -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    """A mean over seeds (or a difference of means), the half-width of its two-sided t-interval at ``level``, and
    what the interval was built from.

    ``half_width`` is None with a single seed (no interval) and 0.0 when the per-seed values have no spread (then
    ``no_spread`` is True and the estimate resolves nothing). ``standard_error`` and ``df`` give the interval at any
    other level (``at_level``) and the two-sided p-value of "the mean is 0" (``p_value``).
    """

    mean: float
    half_width: float | None
    seeds: int
    standard_error: float | None = None
    df: float | None = None
    level: float = 0.95

    @classmethod
    def from_t(cls, mean: float, standard_error: float, df: float, seeds: int, level: float = 0.95) -> Estimate:
        """mean ± t(1 − α/2, df) · standard_error; a zero standard error is the no-spread case."""
        if standard_error < 0 or not math.isfinite(standard_error):
            raise ValueError(f"standard error must be finite and >= 0, got {standard_error}")
        _check_df(df)
        half = 0.0 if standard_error == 0 else t_quantile(_two_sided(level), df) * standard_error
        return cls(mean, half, seeds, standard_error, df, level)

    @property
    def low(self) -> float | None:
        return None if self.half_width is None else self.mean - self.half_width

    @property
    def high(self) -> float | None:
        return None if self.half_width is None else self.mean + self.half_width

    @property
    def no_spread(self) -> bool:
        """Several seeds, all with the same value (or the same paired difference): an interval of zero width."""
        return self.half_width == 0.0

    @property
    def p_value(self) -> float | None:
        """Two-sided p-value of "the mean is 0" from the same t distribution as the interval; None without an
        interval or without spread."""
        if self.standard_error is None or self.df is None or self.standard_error == 0:
            return None
        return min(1.0, 2.0 * _t_tail(abs(self.mean) / self.standard_error, self.df))

    def at_level(self, level: float) -> Estimate:
        """The same estimate with its interval at another confidence level."""
        if self.standard_error is None or self.df is None:
            _two_sided(level)
            return replace(self, level=level)
        return Estimate.from_t(self.mean, self.standard_error, self.df, self.seeds, level)

    def excludes_zero(self) -> bool:
        return self.half_width is not None and not self.no_spread and (self.low > 0 or self.high < 0)

    def verdict(self, direction: str) -> str:
        """``verdict`` of this interval; "not shown" without an interval or without spread."""
        if self.half_width is None or self.no_spread:
            _check_direction(direction)
            return "not shown"
        return verdict(self.low, self.high, direction)

    def format(self, scale: float = 1.0, digits: int = 1, signed: bool = False) -> str:
        sign = "+" if signed else ""
        text = f"{self.mean * scale:{sign}.{digits}f}"
        if self.half_width is None:
            return text + " (1 seed)"
        if self.no_spread:
            return f"{text}, no spread ({self.seeds} seeds)"
        return f"{text} ± {self.half_width * scale:.{digits}f}"


def _finite_values(values: Sequence[float], what: str = "values") -> list[float]:
    values = [float(v) for v in values]
    if any(not math.isfinite(v) for v in values):
        raise ValueError(f"non-finite value among {what} {values}")
    return values


def _same(values: Sequence[float]) -> bool:
    low, high = min(values), max(values)
    return high - low <= _SAME * max(1.0, abs(low), abs(high))


def _variance_of_mean(values: Sequence[float]) -> float:
    """s² / k, or 0 when the values are identical up to float rounding."""
    if _same(values):
        return 0.0
    mean = sum(values) / len(values)
    return sum((v - mean) ** 2 for v in values) / (len(values) - 1) / len(values)


def mean_ci(values: Sequence[float], level: float = 0.95) -> Estimate:
    """Mean of per-seed values and its t-interval (k − 1 degrees of freedom) at ``level``."""
    values = _finite_values(values)
    if not values:
        raise ValueError("no values to average")
    k = len(values)
    mean = sum(values) / k
    if k == 1:
        _two_sided(level)
        return Estimate(mean, None, 1, level=level)
    return Estimate.from_t(mean, math.sqrt(_variance_of_mean(values)), k - 1, k, level)


def paired_difference(values: Sequence[float], reference: Sequence[float] | float, level: float = 0.95) -> Estimate:
    """Mean and t-interval of values − reference, seed by seed: seed k of one method against seed k of the other
    (the same seed index), or against a float (a fixed model, e.g. the base). The p-value is the paired t-test's."""
    if isinstance(reference, (int, float)):
        return mean_ci([v - float(reference) for v in values], level)
    if len(values) != len(reference):
        raise ValueError(f"paired difference needs as many seeds on each side, got {len(values)} and {len(reference)}")
    return mean_ci([v - r for v, r in zip(values, reference)], level)


def welch_difference(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> Estimate:
    """mean(a) − mean(b) for two independent sets of seeds: Welch's t-interval at ``level`` and p-value.

    The standard error is √(s_a²/n_a + s_b²/n_b); the degrees of freedom are Welch–Satterthwaite's,
    (v_a + v_b)² / (v_a²/(n_a − 1) + v_b²/(n_b − 1)) with v = s²/n, used as they are (not rounded), so that the
    interval excludes 0 exactly when the p-value is below 1 − level. With a single seed on either side there is no
    interval; with no spread on both sides, no spread.
    """
    return _welch(a, b, level, round_df_down=False)


def difference(a: Sequence[float], b: Sequence[float]) -> Estimate:
    """mean(a) − mean(b) with Welch's 95 % interval, the degrees of freedom rounded down (a slightly wider interval):
    the convention of the first study's report (uec_lab/study/report.py), kept so that its figures regenerate as
    printed. New analyses use ``welch_difference``."""
    return _welch(a, b, 0.95, round_df_down=True)


def _welch(a: Sequence[float], b: Sequence[float], level: float, round_df_down: bool) -> Estimate:
    a, b = _finite_values(a, "a"), _finite_values(b, "b")
    if not a or not b:
        raise ValueError("both sides need at least one seed")
    mean = sum(a) / len(a) - sum(b) / len(b)
    seeds = min(len(a), len(b))
    if len(a) < 2 or len(b) < 2:
        _two_sided(level)
        return Estimate(mean, None, seeds, level=level)
    va, vb = _variance_of_mean(a), _variance_of_mean(b)
    if va + vb == 0:
        return Estimate(mean, 0.0, seeds, 0.0, None, level)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    if round_df_down:
        df = max(1, math.floor(df))
    return Estimate.from_t(mean, math.sqrt(va + vb), df, seeds, level)


# ---- multiplicity: Holm's step-down procedure -----------------------------------------------------------------------


def _holm_order(p_values: Sequence[float | None]) -> list[int]:
    """Indices by ascending p-value; hypotheses without a p-value last (they are never rejected)."""
    for p in p_values:
        if p is not None and not 0.0 <= p <= 1.0:
            raise ValueError(f"p-values must be in [0, 1], got {p}")
    return sorted(range(len(p_values)), key=lambda i: (p_values[i] is None, p_values[i] or 0.0))


def holm_adjusted_p(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's adjusted p-values, in the order given: with the m p-values sorted, p_(1) <= ... <= p_(m), the adjusted
    p_(i) is max over j <= i of min(1, (m − j + 1) · p_(j)). A hypothesis is rejected at family-wise level α when its
    adjusted p-value is below α.

    A hypothesis without a p-value (None: one seed, or no spread) counts in the family size m, gets None and is never
    rejected: leaving it out would make the correction of the others smaller than the plan's family.
    """
    m = len(p_values)
    adjusted: list[float | None] = [None] * m
    running = 0.0
    for rank, i in enumerate(_holm_order(p_values), start=1):
        if p_values[i] is None:
            continue
        running = max(running, min(1.0, (m - rank + 1) * p_values[i]))
        adjusted[i] = running
    return adjusted


def holm_intervals(estimates: Sequence[Estimate], alpha: float = 0.05) -> list[Estimate]:
    """Each estimate with its interval at the level Holm's procedure tests it at, in the order given, so that an
    interval excludes 0 exactly when Holm rejects its hypothesis at family-wise level ``alpha``.

    Definition (step-down, m hypotheses): sort by p-value. The hypothesis of rank i (1-based) is tested at
    α/(m − i + 1) as long as every hypothesis before it was rejected; its interval is at confidence
    1 − α/(m − i + 1), and it is rejected when p < α/(m − i + 1), which is when that interval excludes 0. At the
    first non-rejection, rank j, the procedure stops: that hypothesis and every later one get the interval at
    1 − α/(m − j + 1). Their p-values are at least p_(j) >= α/(m − j + 1), so none of those intervals excludes 0.
    Estimates without a p-value (one seed, no spread) sort last, count in m and are never rejected; they come back
    with only their level changed.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    m = len(estimates)
    p_values = [e.p_value for e in estimates]
    result = list(estimates)
    stopped_at: float | None = None  # alpha / (m - j + 1) once rank j was not rejected
    for rank, i in enumerate(_holm_order(p_values), start=1):
        tested_at = alpha / (m - rank + 1) if stopped_at is None else stopped_at
        if stopped_at is None and (p_values[i] is None or not p_values[i] < tested_at):
            stopped_at = tested_at
        result[i] = estimates[i].at_level(1.0 - tested_at)
    return result


# ---- verdict words --------------------------------------------------------------------------------------------------

DIRECTIONS = ("positive", "negative")
VERDICTS = ("holds", "opposite", "not shown")


def _check_direction(direction: str) -> None:
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")


def verdict(low: float, high: float, direction: str) -> str:
    """The word for an interval (low, high) of a difference against a claim that it is ``direction`` ("positive":
    > 0, "negative": < 0): "holds" when the whole interval is on the claimed side of 0, "opposite" when it is on the
    other side, "not shown" when it contains 0 (an endpoint at 0 included). "not shown" is absence of evidence,
    never evidence of absence."""
    _check_direction(direction)
    if not low <= high:
        raise ValueError(f"interval low {low} > high {high}")
    if low > 0:
        side = "positive"
    elif high < 0:
        side = "negative"
    else:
        return "not shown"
    return "holds" if side == direction else "opposite"


# ---- interquartile mean and its stratified bootstrap ---------------------------------------------------------------


def interquartile_mean(values: Sequence[float]) -> float:
    """The mean of the middle 50 % of the values (Agarwal et al. 2021, "Deep RL at the Edge of the Statistical
    Precipice"), with fractional weights at the quartile boundaries.

    Sorted values x_1 <= ... <= x_n each own a unit of the interval [0, n]; x_i is weighted by how much of its unit
    [i − 1, i] lies inside [n/4, 3n/4], and the weights (summing to n/2) average the values. With n a multiple of 4 this
    drops exactly n/4 values at each end and equals rliable's ``aggregate_iqm`` (scipy.stats.trim_mean(x, 0.25)).
    Otherwise trim_mean drops floor(n/4) whole values at each end and averages more than half of them: for
    1, 2, 4, 8, 16 it gives 4.67 where this gives (0.75·2 + 4 + 0.75·8) / 2.5 = 4.6.
    """
    x = sorted(_finite_values(values))
    n = len(x)
    if n == 0:
        raise ValueError("no values for an interquartile mean")
    lower, upper = n / 4, 3 * n / 4
    weighted = sum(max(0.0, min(i + 1, upper) - max(i, lower)) * v for i, v in enumerate(x))
    return weighted / (n / 2)


def _percentile(ordered: Sequence[float], q: float) -> float:
    """The q-quantile of sorted values, interpolated linearly between order statistics (numpy's default)."""
    position = (len(ordered) - 1) * q
    below = math.floor(position)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (position - below) * (ordered[above] - ordered[below])


@dataclass(frozen=True)
class BootstrapInterval:
    """A statistic of the pooled runs and its bootstrap percentile interval."""

    value: float
    low: float
    high: float
    level: float
    resamples: int
    runs: int  # values pooled over every stratum

    @property
    def no_spread(self) -> bool:
        """Every resample gave the same value: an interval of zero width, which resolves nothing."""
        return self.low == self.high

    def excludes_zero(self) -> bool:
        return not self.no_spread and (self.low > 0 or self.high < 0)

    def format(self, scale: float = 1.0, digits: int = 1) -> str:
        text = f"{self.value * scale:.{digits}f}"
        if self.no_spread:
            return f"{text}, no spread ({self.runs} runs)"
        return f"{text} [{self.low * scale:.{digits}f}, {self.high * scale:.{digits}f}]"


def iqm_bootstrap(
    strata: Mapping[str, Sequence[float]] | Sequence[Sequence[float]],
    level: float = 0.95,
    resamples: int = 10_000,
    seed: int = 0,
) -> BootstrapInterval:
    """The interquartile mean over every run of every stratum, with a stratified bootstrap percentile interval.

    ``strata`` holds the per-seed scores of each stratum (e.g. each difficulty level: {level: [seed 1, seed 2, ...]});
    the pooled score matrix is all of them. One resample draws, within each stratum independently, as many seeds as
    it has, with replacement, and recomputes the IQM over the pooled resampled matrix (rliable's
    ``StratifiedBootstrap``: tasks are never mixed, so every resample keeps each level's share). The interval is the
    (1 − level)/2 and (1 + level)/2 quantiles of the ``resamples`` IQMs, interpolated linearly between order
    statistics. ``seed`` seeds a private ``random.Random``: the same inputs give the same interval.
    """
    groups = list(strata.values()) if isinstance(strata, Mapping) else list(strata)
    groups = [_finite_values(g) for g in groups]
    if not groups or any(not g for g in groups):
        raise ValueError("every stratum needs at least one value")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    upper = _two_sided(level)
    rng = random.Random(seed)
    statistics = []
    for _ in range(resamples):
        pooled = [g[rng.randrange(len(g))] for g in groups for _ in g]
        statistics.append(interquartile_mean(pooled))
    statistics.sort()
    pooled = [v for g in groups for v in g]
    low, high = _percentile(statistics, 1.0 - upper), _percentile(statistics, upper)
    return BootstrapInterval(interquartile_mean(pooled), low, high, level, resamples, len(pooled))


# ---- a ratio of two methods' means (costs) ---------------------------------------------------------------------------


def ratio_bootstrap(
    numerator: Sequence[float],
    denominator: Sequence[float],
    level: float = 0.95,
    resamples: int = 10_000,
    seed: int = 0,
) -> BootstrapInterval:
    """mean(numerator) / mean(denominator), e.g. UEC-RL's seconds per step over GRPO's, with a percentile bootstrap
    interval: one resample draws each side's values with replacement, independently (two methods' runs are separate
    measurements, whatever their seed index), and takes the ratio of the resampled means. With one value on both
    sides every resample is the same: no spread. ``seed`` seeds a private ``random.Random``."""
    top, bottom = _finite_values(numerator, "numerator"), _finite_values(denominator, "denominator")
    if not top or not bottom:
        raise ValueError("both sides of a ratio need at least one value")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    if any(v <= 0 for v in bottom):
        raise ValueError(f"the denominator's values must be > 0, got {bottom}")
    upper = _two_sided(level)
    rng = random.Random(seed)
    statistics = []
    for _ in range(resamples):
        a = sum(top[rng.randrange(len(top))] for _ in top) / len(top)
        b = sum(bottom[rng.randrange(len(bottom))] for _ in bottom) / len(bottom)
        statistics.append(a / b)
    statistics.sort()
    value = (sum(top) / len(top)) / (sum(bottom) / len(bottom))
    low, high = _percentile(statistics, 1.0 - upper), _percentile(statistics, upper)
    return BootstrapInterval(value, low, high, level, resamples, len(top) + len(bottom))
