"""Stage 5, selective retention and the overlong-positive filter (5a-5d), and stage 7a, replay admission
(docs/algorithm.md, "The step")."""

from __future__ import annotations

import torch


def keep_regular(advantages: torch.Tensor, abs_threshold: float = 0.05) -> torch.Tensor:
    """Regular samples are kept when |Â| > threshold: this drops all-correct and all-wrong groups."""
    return advantages.abs() > abs_threshold


def keep_exploration(advantages: torch.Tensor, rule: str = "positive") -> torch.Tensor:
    """Exploration samples: ``positive`` keeps Â > 0 (paper); ``abs_gt_1`` keeps |Â| > 1 (released code).

    With G' = 20 and k correct samples, a correct sample has Â = +4.25 (k=1), +2.92 (k=2), +1.69 (k=5), +1.08 (k=9),
    so ``abs_gt_1`` keeps exactly the rare successes while k <= 9, nothing at k = 10 and only failures for k >= 11.
    """
    if rule == "positive":
        return advantages > 0
    if rule == "abs_gt_1":
        return advantages.abs() > 1
    raise ValueError(f"unknown exploration retention rule {rule!r}; use 'positive' or 'abs_gt_1'")


OVERLONG_SCOPES = ("all", "exploration", "none")


def overlong_positive(
    advantages: torch.Tensor, response_lengths: torch.Tensor, max_response_length: int
) -> torch.Tensor:
    """Rows that hit the response-length limit and still got Â > 0 (dropped by the released code).

    The released code tests whether the last response position is a real token, i.e. the response is exactly
    ``max_response_length`` long (597358816/EFRame, verl/trainer/ray_trainer.py, ``_filtering_overlong``).
    """
    return (response_lengths >= max_response_length) & (advantages > 0)


def overlong_filter_applies(exploration: torch.Tensor, scope: str = "all") -> torch.Tensor:
    """Which survivors the overlong-positive filter looks at.

    ``all`` (released code): every survivor, regular and exploration — the release filters the concatenation of
    both; ``exploration``: the T' samples only; ``none``: no row (e.g. a policy that never emits EOS).
    """
    if scope == "all":
        return torch.ones_like(exploration, dtype=torch.bool)
    if scope == "exploration":
        return exploration.bool()
    if scope == "none":
        return torch.zeros_like(exploration, dtype=torch.bool)
    raise ValueError(f"unknown overlong-positive scope {scope!r}; use one of {OVERLONG_SCOPES}")


def admit_to_replay(advantages: torch.Tensor, threshold: float = 1.0, rule: str = "gt") -> torch.Tensor:
    """Replay admission (stage 7a): ``gt`` keeps Â > A0 (later branch), ``abs_gt`` keeps |Â| > A0 (release)."""
    if rule == "gt":
        return advantages > threshold
    if rule == "abs_gt":
        return advantages.abs() > threshold
    raise ValueError(f"unknown replay admission rule {rule!r}; use 'gt' or 'abs_gt'")
