"""Advantage estimators registered into verl's registry (``algorithm.adv_estimator=<name>``).

Imported by the plugin right after ``verl.trainer.ppo.core_algos`` (see ``uec_recipe/plugin.py``).
"""

from __future__ import annotations

import torch
from verl.trainer.ppo.core_algos import compute_grpo_outcome_advantage, register_adv_est


@register_adv_est("uec")
def compute_uec_advantage(
    token_level_rewards: torch.Tensor, response_mask: torch.Tensor, index=None, config=None, **kwargs
):
    """GRPO-normalised group advantage, Â = (r − mean_group r) / (std_group r + 1e-6), unbiased std (paper §3).

    Groups are uids. The UEC step gives each prompt's G' exploration samples a fresh uid, so they form their own
    group, separate from the prompt's regular samples: the advantage of an exploration sample is computed within
    the exploration samples only (docs/algorithm.md, "The step", stages 1 and 4).
    """
    if index is None:
        raise ValueError("the 'uec' advantage estimator needs the uid of every row (index) to form groups")
    norm_by_std = True if config is None else bool(config.get("norm_adv_by_std_in_grpo", True))
    return compute_grpo_outcome_advantage(
        token_level_rewards=token_level_rewards,
        response_mask=response_mask,
        index=index,
        norm_adv_by_std_in_grpo=norm_by_std,
    )
