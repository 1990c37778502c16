"""Unbiased pass@k and pass^k from n samples per problem, plus the training-time validation metrics.

pass@k is the probability that at least one of k samples drawn *without replacement* from the n we have is
correct. Chen et al. 2021 ("Evaluating Large Language Models Trained on Code", arXiv 2107.03374, §2.1) give the
unbiased estimator 1 - C(n-c, k) / C(n, k) for a problem with c correct out of n; we evaluate it as the product
1 - prod_{i=n-c+1}^{n} (1 - k/i), which never forms a large binomial coefficient.

pass^k ("pass-hat-k") is the reliability direction: the probability that *all* k samples are correct,
C(c, k) / C(n, k) = prod_{i=0}^{k-1} (c - i) / (n - i).

verl's own validation reports `best@k/mean`, a bootstrap that resamples *with* replacement; it is biased low and
is not pass@k (with 1 correct of 4 it reports about 0.68 at k=4, where pass@4 is 1). That is why this module exists.
"""

from __future__ import annotations

import math
import numbers
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any


def _check_counts(n: int, c: int, k: int) -> None:
    for name, value in (("n", n), ("c", c), ("k", k)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(f"{name} must be an integer, got {value!r}")
        if value < 0:
            raise ValueError(f"{name} must be non-negative, got {name}={value}")
    if n == 0:
        raise ValueError("n must be at least 1 (no samples means no estimate)")
    if k == 0:
        raise ValueError("k must be at least 1")
    if c > n:
        raise ValueError(f"c={c} correct samples cannot exceed n={n} samples")
    if k > n:
        raise ValueError(f"pass@{k} needs at least k samples per problem, but n={n}")


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem with c correct among n samples (Chen et al. 2021)."""
    _check_counts(n, c, k)
    if n - c < k:  # every k-subset contains a correct sample
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def pass_hat_k(n: int, c: int, k: int) -> float:
    """pass^k for one problem: probability that k samples drawn without replacement are all correct."""
    _check_counts(n, c, k)
    if c < k:
        return 0.0
    return math.prod((c - i) / (n - i) for i in range(k))


def ks_for(n: int) -> list[int]:
    """The k values we report for n samples: powers of two up to n (1, 2, 4, ...), as prime-rl does."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    n = int(n)
    return [1 << p for p in range(n.bit_length()) if (1 << p) <= n]


def summarize_counts(counts: Iterable[tuple[int, int]], ks: Sequence[int] | None = None) -> dict[str, Any]:
    """Average pass@k and pass^k over problems, given (n, c) per problem.

    Problems may have different n; k then runs over powers of two up to the smallest n, because the estimator
    needs n >= k for every problem. Returns {"num_problems", "n", "n_max", "avg@n", "pass@k": {k: v},
    "pass^k": {k: v}} with values as fractions in [0, 1]. "avg@n" is the mean of c/n, which equals pass@1.
    """
    counts = [(int(n), int(c)) for n, c in counts]
    if not counts:
        raise ValueError("no problems to summarize")
    n_min = min(n for n, _ in counts)
    ks = list(ks) if ks is not None else ks_for(n_min)
    for k in ks:
        if k > n_min:
            raise ValueError(f"pass@{k} needs n >= {k} for every problem, but one problem has n={n_min}")
    num = len(counts)
    return {
        "num_problems": num,
        "n": n_min,
        "n_max": max(n for n, _ in counts),
        "avg@n": sum(c / n for n, c in counts) / num,
        "pass@k": {k: sum(pass_at_k(n, c, k) for n, c in counts) / num for k in ks},
        "pass^k": {k: sum(pass_hat_k(n, c, k) for n, c in counts) / num for k in ks},
    }


def is_correct(value: Any, where: str) -> bool:
    """An accuracy value must be 0/1 (or bool): pass@k is undefined for partial credit."""
    number = float(value)
    if number not in (0.0, 1.0):
        raise ValueError(f"pass@k needs a 0/1 accuracy per sample; got {value!r} for {where}")
    return number == 1.0


def validation_passk_metrics(
    data_sources: Sequence[Any],
    sample_uids: Sequence[Any],
    infos_dict: Mapping[str, Sequence[Any]],
    expected_acc_counts: Mapping[tuple[str, str], int] | None = None,
    *,
    acc_key: str = "acc",
    temperature: float | None = None,
    top_p: float | None = None,
    prefix: str = "val-passk",
) -> dict[str, float]:
    """Unbiased pass@k / pass^k for verl's training-time validation, as a flat metrics dict.

    Takes the same arguments verl 0.9.1's `process_validation_metrics` gets from the V1 trainer's `_validate`:
    per-sample `data_sources` and `sample_uids` (one uid per prompt, shared by its `val_kwargs.n` samples),
    `infos_dict` = `reward_extra_infos_dict` (must hold `acc_key`, one value per sample, None where a sample
    has none), and optionally `expected_acc_counts` {(data_source, uid): n}. As verl does for `acc`, samples that
    were expected but never materialised (failed agent sessions) count as wrong.

    Returns, per data source:
      {prefix}/{ds}/pass@{k} and {prefix}/{ds}/pass^{k} for k = 1, 2, 4, ... <= n,
      {prefix}/{ds}/n (smallest samples-per-prompt), {prefix}/{ds}/num_problems,
      and {prefix}/{ds}/temperature, /top_p when those are given (so the number never travels without them).
    Data sources without any `acc_key` value are left out (their reward is not an accuracy).
    """
    if len(data_sources) != len(sample_uids):
        raise ValueError(f"{len(data_sources)} data_sources but {len(sample_uids)} sample_uids")
    accs = infos_dict.get(acc_key)
    if accs is None:
        return {}
    if len(accs) != len(data_sources):
        raise ValueError(f"infos_dict[{acc_key!r}] has {len(accs)} values for {len(data_sources)} samples")

    # data_source -> uid -> list of per-sample correctness (None-valued samples dropped, like verl does).
    outcomes: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    for data_source, uid, acc in zip(data_sources, sample_uids, accs, strict=True):
        if acc is None:
            continue
        outcomes[str(data_source)][str(uid)].append(is_correct(acc, f"data_source={data_source} uid={uid}"))
    for (data_source, uid), expected in (expected_acc_counts or {}).items():
        if data_source not in outcomes:
            continue  # this source reports no accuracy at all
        observed = outcomes[data_source][uid]
        observed.extend([False] * max(int(expected) - len(observed), 0))

    metrics: dict[str, float] = {}
    for data_source, by_uid in outcomes.items():
        summary = summarize_counts((len(v), sum(v)) for v in by_uid.values() if v)
        base = f"{prefix}/{data_source}"
        for k, value in summary["pass@k"].items():
            metrics[f"{base}/pass@{k}"] = value
        for k, value in summary["pass^k"].items():
            metrics[f"{base}/pass^{k}"] = value
        metrics[f"{base}/n"] = float(summary["n"])
        metrics[f"{base}/num_problems"] = float(summary["num_problems"])
        if temperature is not None:
            metrics[f"{base}/temperature"] = float(temperature)
        if top_p is not None:
            metrics[f"{base}/top_p"] = float(top_p)
    return metrics
