"""Entropy-based advantage shaping, the Entropy-Adv baseline (Cheng et al. 2025, arXiv 2506.14758).

Each response token's advantage gets a bonus proportional to the policy's entropy at that token, capped so that it
can never outweigh the advantage itself:

    Â'_t = Â_t + ψ_t,   ψ_t = min(α · H_t, |Â_t| / κ),   H_t detached (a bonus on the advantage, not a loss term)

With κ > 1 the bonus is at most |Â_t|/κ < |Â_t|, so a token's advantage keeps its sign: a failed sample is punished
less at uncertain tokens, a successful one is rewarded more, and a zero advantage stays zero. The paper's values
for GRPO, α = 0.4 and κ = 2, are set in one place, the preset uec_recipe/config/algo/entropy_adv.yaml. Which
policy's entropy H_t is, and why, is discussed in docs/baselines.md.
"""

from __future__ import annotations

import torch


def shaping_term(
    advantages: torch.Tensor,
    entropy: torch.Tensor,
    response_mask: torch.Tensor,
    alpha: float,
    kappa: float,
) -> torch.Tensor:
    """ψ_t = min(α·H_t, |Â_t|/κ) on response tokens, 0 elsewhere. Shapes (rows, response_length)."""
    if not kappa > 1:
        raise ValueError(f"entropy_adv.kappa={kappa!r}: must be > 1, otherwise the bonus can flip an advantage's sign")
    if not alpha >= 0:
        raise ValueError(f"entropy_adv.alpha={alpha!r}: must be >= 0")
    # Entropy is non-negative; clamping float noise keeps the bonus non-negative, hence the sign guarantee exact.
    entropy = entropy.detach().to(advantages.dtype).clamp_min(0)
    term = torch.minimum(alpha * entropy, advantages.detach().abs() / kappa)
    return torch.where(response_mask.bool(), term, torch.zeros_like(term))


def shape_advantages(
    advantages: torch.Tensor,
    entropy: torch.Tensor,
    response_mask: torch.Tensor,
    alpha: float,
    kappa: float,
) -> tuple[torch.Tensor, float]:
    """Return (Â + ψ, mean ψ over response tokens). Tokens outside the response mask keep their advantage."""
    term = shaping_term(advantages, entropy, response_mask, alpha, kappa)
    tokens = response_mask.bool()
    mean_term = float(term[tokens].mean()) if tokens.any() else 0.0
    return advantages + term, mean_term


def capped_fraction(
    advantages: torch.Tensor,
    entropy: torch.Tensor,
    response_mask: torch.Tensor,
    alpha: float,
    kappa: float,
) -> float:
    """Share of response tokens with Â ≠ 0 whose bonus is limited by the cap |Â|/κ rather than by α·H.

    Tokens with Â = 0 (every token of an all-correct or all-wrong GRPO group) are left out: their bonus is 0
    whatever the entropy, and counting them would only measure how many groups had no signal.
    """
    tokens = response_mask.bool() & (advantages != 0)
    if not tokens.any():
        return 0.0
    entropy = entropy.detach().to(advantages.dtype).clamp_min(0)
    capped = alpha * entropy > advantages.abs() / kappa
    return float(capped[tokens].float().mean())
