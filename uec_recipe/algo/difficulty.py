"""Stage 2: difficult prompts (algorithm doc §1.2)."""

from __future__ import annotations

from collections import OrderedDict

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


def group_rows(uids: np.ndarray) -> "OrderedDict[str, list[int]]":
    """Row indices per uid, in first-seen order."""
    groups: OrderedDict[str, list[int]] = OrderedDict()
    for row, uid in enumerate(uids):
        groups.setdefault(str(uid), []).append(row)
    return groups


def difficult_groups(data: DataProto, score_threshold: float = 0.01) -> list[str]:
    """uids of prompts whose every sample scored below ``score_threshold`` (binary reward: all wrong).

    Decided on this step's samples only, with no history (paper §3). The released code's test is
    |Â| < 0.01 and score < 0.01 for every sample; with GRPO advantages a group whose scores are all below the
    threshold and (near) equal has |Â| ≈ 0, so the score test alone is the same rule.
    """
    scores = sequence_scores(data)
    return [
        uid
        for uid, rows in group_rows(data.non_tensor_batch["uid"]).items()
        if bool((scores[rows] < score_threshold).all())
    ]
