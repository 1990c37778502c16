"""The smoke test's toy reward: a random-init policy earns it on about one sample in five.

The smoke trains random-init policies for a few steps, so a real grader would score every sample 0: no group would
have mixed rewards, nothing would survive retention and no update would run. This reward is 1 when a hash of the
response (with the row's ground truth) falls in one of ``POSITIVE_RATE_DENOMINATOR`` buckets, so each sample is
positive with probability 1/5 whatever the model writes, provided responses differ. With G = 4 samples per prompt,
about 0.8^4 = 41 % of the groups are all-zero ("difficult"), and an exploration group of G' = 8 finds at least one
positive with probability 1 - 0.8^8 = 83 %: every UEC stage acts within a couple of steps.

It is a verl custom reward function (same contract as ``uec_recipe.reward.compute_score``, referenced as
``reward.custom_reward_function.path=pkg://uec_lab.smoke.reward``) and scores every data source alike.
"""

from __future__ import annotations

import hashlib

POSITIVE_RATE_DENOMINATOR = 5


def is_positive(solution_str: str, ground_truth) -> bool:
    digest = hashlib.sha256(f"{ground_truth}\n{solution_str}".encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") % POSITIVE_RATE_DENOMINATOR == 0


def compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs) -> dict:
    """``{"score", "acc", "pred"}``: 1.0 for about one response in five, else 0.0. ``acc`` is reported so that the
    UEC step decides difficulty on it, as it does with the real rewards."""
    acc = 1.0 if is_positive(solution_str, ground_truth) else 0.0
    return {"score": acc, "acc": acc, "pred": ""}
