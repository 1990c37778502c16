"""pass@k / pass^k against brute force over all k-subsets, and the training-time validation metrics."""

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest

from uec_recipe.eval.passk import (
    ks_for,
    pass_at_k,
    pass_hat_k,
    summarize_counts,
    validation_passk_metrics,
)


def brute_force(n, c, k):
    """Exact pass@k and pass^k by enumerating every k-subset of n samples of which the first c are correct."""
    outcomes = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(outcomes, k))
    any_correct = Fraction(sum(any(s) for s in subsets), len(subsets))
    all_correct = Fraction(sum(all(s) for s in subsets), len(subsets))
    return float(any_correct), float(all_correct)


@pytest.mark.parametrize("n", range(1, 9))
def test_matches_enumeration_of_all_subsets(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            expected_any, expected_all = brute_force(n, c, k)
            assert pass_at_k(n, c, k) == pytest.approx(expected_any, abs=1e-12), (n, c, k)
            assert pass_hat_k(n, c, k) == pytest.approx(expected_all, abs=1e-12), (n, c, k)


def test_pass_at_1_is_accuracy_and_avg_at_n():
    counts = [(8, 0), (8, 3), (8, 8), (4, 1)]
    for n, c in counts:
        assert pass_at_k(n, c, 1) == pytest.approx(c / n)
        assert pass_hat_k(n, c, 1) == pytest.approx(c / n)
    summary = summarize_counts(counts)
    mean_accuracy = np.mean([c / n for n, c in counts])
    assert summary["avg@n"] == pytest.approx(mean_accuracy)
    assert summary["pass@k"][1] == pytest.approx(mean_accuracy)
    assert summary["n"] == 4 and summary["n_max"] == 8 and summary["num_problems"] == 4
    assert list(summary["pass@k"]) == [1, 2, 4]  # k stops at the smallest n
    assert summary["pass@k"][4] == pytest.approx(np.mean([pass_at_k(n, c, 4) for n, c in counts]))


def test_stable_for_large_n_where_binomials_overflow_floats():
    # C(2000, 1000) is about 1e600, beyond a float; the product form never builds it.
    assert pass_at_k(2000, 1, 1000) == pytest.approx(0.5)
    exact = 1 - Fraction(math.comb(300 - 7, 64), math.comb(300, 64))
    assert pass_at_k(300, 7, 64) == pytest.approx(float(exact), rel=1e-12)
    exact_hat = Fraction(math.comb(250, 40), math.comb(300, 40))
    assert pass_hat_k(300, 250, 40) == pytest.approx(float(exact_hat), rel=1e-10)
    assert pass_at_k(np.int64(8), np.int64(2), 4) == pytest.approx(brute_force(8, 2, 4)[0])


def test_verl_best_at_k_is_biased_low_where_pass_at_k_is_exact():
    """The reason this module exists: 1 correct out of 4 means pass@4 = 1, verl's bootstrap says ~0.68."""
    from verl.trainer.ppo.metric_utils import process_validation_metrics

    verl = process_validation_metrics(["ds"] * 4, ["u"] * 4, {"acc": [1.0, 0.0, 0.0, 0.0]})
    assert verl["ds"]["acc"]["best@4/mean"] < 0.75
    assert pass_at_k(4, 1, 4) == 1.0


@pytest.mark.parametrize(
    "n, c, k, error",
    [
        (4, 1, 5, ValueError),  # k > n
        (4, 5, 1, ValueError),  # c > n
        (-1, 0, 1, ValueError),
        (4, -1, 1, ValueError),
        (4, 1, -2, ValueError),
        (4, 1, 0, ValueError),
        (0, 0, 1, ValueError),
        (4.0, 1, 1, TypeError),
        (4, True, 1, TypeError),
    ],
)
def test_bad_counts_raise(n, c, k, error):
    with pytest.raises(error):
        pass_at_k(n, c, k)
    with pytest.raises(error):
        pass_hat_k(n, c, k)


def test_k_too_large_for_a_problem_in_the_summary():
    with pytest.raises(ValueError, match="n >= 8"):
        summarize_counts([(8, 1), (4, 1)], ks=[8])
    with pytest.raises(ValueError, match="no problems"):
        summarize_counts([])


def test_ks_for_powers_of_two():
    assert ks_for(1) == [1]
    assert ks_for(8) == [1, 2, 4, 8]
    assert ks_for(12) == [1, 2, 4, 8]
    assert ks_for(64)[-1] == 64
    for bad in (0, -4, 2.0):
        with pytest.raises(ValueError):
            ks_for(bad)


# ---- training-time validation -----------------------------------------------------------------------------------


def _validation_batch():
    """What verl's V1 `_validate` hands process_validation_metrics: per-sample lists, n=4 samples per prompt."""
    per_prompt = {("gsm8k", "u1"): [1, 1, 0, 0], ("gsm8k", "u2"): [0, 0, 0, 1], ("aime", "u3"): [0, 0, 0, 0]}
    data_sources, uids, accs, scores = [], [], [], []
    for (source, uid), outcomes in per_prompt.items():
        for outcome in outcomes:
            data_sources.append(source)
            uids.append(uid)
            accs.append(float(outcome))
            scores.append(float(outcome))
    return data_sources, uids, {"reward": scores, "acc": accs, "pred": ["x"] * len(accs)}, per_prompt


def test_validation_metrics_per_data_source():
    data_sources, uids, infos, per_prompt = _validation_batch()
    metrics = validation_passk_metrics(data_sources, uids, infos, temperature=0.6, top_p=0.95)
    for k in (1, 2, 4):
        expected = np.mean([pass_at_k(4, sum(v), k) for (s, _), v in per_prompt.items() if s == "gsm8k"])
        assert metrics[f"val-passk/gsm8k/pass@{k}"] == pytest.approx(expected)
        assert metrics[f"val-passk/aime/pass@{k}"] == 0.0
    assert metrics["val-passk/gsm8k/pass@1"] == pytest.approx(3 / 8)
    assert metrics["val-passk/gsm8k/pass@4"] == 1.0
    assert metrics["val-passk/gsm8k/pass^2"] == pytest.approx((1 / 6 + 0) / 2)
    assert metrics["val-passk/gsm8k/n"] == 4.0
    assert metrics["val-passk/gsm8k/num_problems"] == 2.0
    assert metrics["val-passk/gsm8k/temperature"] == 0.6 and metrics["val-passk/aime/top_p"] == 0.95
    assert "val-passk/gsm8k/pass@8" not in metrics
    assert all(isinstance(v, float) for v in metrics.values())


def test_validation_metrics_take_verls_own_arguments():
    """Same positional arguments as verl's process_validation_metrics, so the trainer passes them through."""
    from verl.trainer.ppo.metric_utils import process_validation_metrics

    data_sources, uids, infos, _ = _validation_batch()
    expected_counts = {("gsm8k", "u1"): 4, ("gsm8k", "u2"): 4, ("aime", "u3"): 4}
    verl = process_validation_metrics(data_sources, uids, infos, expected_acc_counts=expected_counts)
    ours = validation_passk_metrics(data_sources, uids, infos, expected_counts)
    assert ours["val-passk/gsm8k/pass@1"] == pytest.approx(verl["gsm8k"]["acc"]["mean@4"])


def test_validation_counts_missing_sessions_as_wrong_like_verl():
    # u1 expected 4 samples but only 2 materialised (failed agent sessions): verl pads acc with zeros.
    data_sources = ["ds", "ds", "ds", "ds", "ds", "ds"]
    uids = ["u1", "u1", "u2", "u2", "u2", "u2"]
    infos = {"acc": [1.0, None, 0.0, 0.0, 1.0, 1.0]}
    metrics = validation_passk_metrics(data_sources, uids, infos, {("ds", "u1"): 4, ("ds", "u2"): 4})
    assert metrics["val-passk/ds/pass@1"] == pytest.approx((1 / 4 + 2 / 4) / 2)
    assert metrics["val-passk/ds/n"] == 4.0
    # Without the expected counts the same data has n=1 for u1, so k stops at 1.
    unpadded = validation_passk_metrics(data_sources, uids, infos)
    assert unpadded["val-passk/ds/n"] == 1.0 and "val-passk/ds/pass@2" not in unpadded


def test_validation_without_accuracy_or_with_partial_credit():
    assert validation_passk_metrics(["ds"], ["u"], {"reward": [0.3]}) == {}
    with pytest.raises(ValueError, match="0/1 accuracy"):
        validation_passk_metrics(["ds", "ds"], ["u", "u"], {"acc": [0.5, 1.0]})
    with pytest.raises(ValueError, match="values for"):
        validation_passk_metrics(["ds", "ds"], ["u", "u"], {"acc": [1.0]})
