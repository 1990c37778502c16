"""Means over seeds with 95 % confidence intervals (Student's t), as every multi-seed figure of the project states.

With k seeds the interval is mean ± t(0.975, k−1) · s / √k, s the sample standard deviation: with two or three
seeds it is wide (t = 12.71 and 4.30), which is the honest width of what so few runs can show.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

# Two-sided 95 % quantiles of Student's t, t(0.975, df), df = 1..30 (standard tables).
_T975 = (
    12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
    2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
    2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423,
)  # fmt: skip
_Z975 = 1.959964


def t_quantile_975(df: int) -> float:
    """t(0.975, df): the table above for df <= 30, the normal quantile beyond (4 % narrower than t at df = 31,
    1 % at df = 120); the study's intervals have at most a few seeds, well inside the table."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    return _T975[df - 1] if df <= len(_T975) else _Z975


@dataclass(frozen=True)
class Estimate:
    """A mean over seeds and the half-width of its 95 % interval (None with a single seed)."""

    mean: float
    half_width: float | None
    seeds: int

    @property
    def low(self) -> float | None:
        return None if self.half_width is None else self.mean - self.half_width

    @property
    def high(self) -> float | None:
        return None if self.half_width is None else self.mean + self.half_width

    def excludes_zero(self) -> bool:
        return self.half_width is not None and (self.low > 0 or self.high < 0)

    def format(self, scale: float = 1.0, digits: int = 1, signed: bool = False) -> str:
        sign = "+" if signed else ""
        text = f"{self.mean * scale:{sign}.{digits}f}"
        if self.half_width is None:
            return text + " (1 seed)"
        return f"{text} ± {self.half_width * scale:.{digits}f}"


def mean_ci(values: Sequence[float]) -> Estimate:
    """Mean and 95 % t-interval half-width of per-seed values."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("no values to average")
    if any(not math.isfinite(v) for v in values):
        raise ValueError(f"non-finite value among {values}")
    k = len(values)
    mean = sum(values) / k
    if k == 1:
        return Estimate(mean, None, 1)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (k - 1))
    return Estimate(mean, t_quantile_975(k - 1) * sd / math.sqrt(k), k)


def paired_difference(values: Sequence[float], reference: Sequence[float] | float) -> Estimate:
    """Mean and interval of values − reference, seed by seed (a float reference: a fixed model, e.g. the base)."""
    if isinstance(reference, (int, float)):
        return mean_ci([v - float(reference) for v in values])
    if len(values) != len(reference):
        raise ValueError(f"paired difference needs as many seeds on each side, got {len(values)} and {len(reference)}")
    return mean_ci([v - r for v, r in zip(values, reference)])


def difference(a: Sequence[float], b: Sequence[float]) -> Estimate:
    """mean(a) − mean(b) for two independent sets of seeds, with Welch's 95 % interval.

    The degrees of freedom are Welch–Satterthwaite's, rounded down (a slightly wider, conservative interval).
    With a single seed on either side there is no interval.
    """
    a, b = [float(v) for v in a], [float(v) for v in b]
    if not a or not b:
        raise ValueError("both sides need at least one seed")
    mean = sum(a) / len(a) - sum(b) / len(b)
    if len(a) < 2 or len(b) < 2:
        return Estimate(mean, None, min(len(a), len(b)))

    def var_of_mean(values):
        m = sum(values) / len(values)
        return sum((v - m) ** 2 for v in values) / (len(values) - 1) / len(values)

    va, vb = var_of_mean(a), var_of_mean(b)
    if va + vb == 0:
        return Estimate(mean, 0.0, min(len(a), len(b)))
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return Estimate(mean, t_quantile_975(max(1, math.floor(df))) * math.sqrt(va + vb), min(len(a), len(b)))
