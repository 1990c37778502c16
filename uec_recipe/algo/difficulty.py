"""Stage 2, difficult prompts, decided on accuracy (docs/algorithm.md, "The step"; paper §3); and the per-row
scores and advantages that stages 1 and 4 produce, as the planner reads them."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Sequence

import numpy as np
import torch
from verl import DataProto


def sequence_scores(data: DataProto) -> torch.Tensor:
    """Outcome score of each row: the token-level reward summed over the response."""
    return data.batch["token_level_scores"].sum(dim=-1)


def sequence_advantages(data: DataProto) -> torch.Tensor:
    """Each row's scalar advantage (GRPO broadcasts one value over the response tokens)."""
    mask = data.batch["response_mask"].to(data.batch["advantages"].dtype)
    return (data.batch["advantages"] * mask).sum(dim=-1) / mask.sum(dim=-1).clamp(min=1)


def sequence_accuracy(extra_fields: Sequence[Any], scores: torch.Tensor) -> tuple[torch.Tensor, str]:
    """Each row's accuracy: the reward's ``acc`` when every row reports one, else its score.

    verl's reward loop stores what a reward function returns besides ``score`` under
    ``extra_fields["reward_extra_info"]``. The score can carry more than correctness (a format bonus gives a
    well-formatted wrong answer 0.1), so a "difficult" prompt — one the policy never solves — is decided on
    accuracy. Returns the tensor and where it came from (``"acc"`` or ``"score"``).
    """
    values = []
    for extra in extra_fields:
        extra = getattr(extra, "data", extra)  # a NonTensorData wrapper when read from TransferQueue
        info = extra.get("reward_extra_info", {}) if isinstance(extra, dict) else {}
        if not isinstance(info, dict) or info.get("acc") is None:
            return scores.detach().clone().float(), "score"
        values.append(float(info["acc"]))
    if len(values) != len(scores):
        raise ValueError(f"{len(values)} rows of reward info for {len(scores)} scored rows")
    return torch.tensor(values, dtype=torch.float32), "acc"


def group_rows(uids: Sequence[Any]) -> "OrderedDict[str, list[int]]":
    """Row indices per uid, in first-seen order."""
    groups: OrderedDict[str, list[int]] = OrderedDict()
    for row, uid in enumerate(uids):
        groups.setdefault(str(uid), []).append(row)
    return groups


def difficult_groups(uids: Sequence[Any] | np.ndarray, accuracy: torch.Tensor, threshold: float = 0.01) -> list[str]:
    """uids of prompts whose every sample has accuracy below ``threshold`` (binary accuracy: all wrong).

    Decided on this step's samples only, with no history (paper §3). The released code tests |Â| < 0.01 and
    score < 0.01 for every sample of the group (597358816/EFRame, verl/trainer/ray_trainer.py,
    ``_select_hard_prompts``); its reward is accuracy, and a group whose accuracies are all below the threshold
    and equal has Â = 0, so the accuracy test alone is the same rule — and stays right when the training reward
    adds a format bonus to the score.
    """
    return [uid for uid, rows in group_rows(uids).items() if bool((accuracy[rows] < threshold).all())]
