"""Entropy measurements of the rows an update trains on and of the rollout, as plain functions on per-row tensors.

They exist to tell apart why entropy moves under UEC-RL (docs/algorithm.md, "Entropy: which figure is which"; the
first-order rule ΔH ≈ −η·Cov(log π(a), Â)):

* ``mean_negative_log_prob``: mean −log π(a) over the sampled response tokens. Over the rows an update trains on,
  with π the weights the update starts from, it is the paper's entropy figure (the released code's
  ``actor/entropy_loss``); over a rollout, with the rollout's own log-probs, an unbiased estimate of the rollout
  policy's per-token entropy.
* ``logp_advantage_covariance``: the token-level population covariance Cov(log π_old(a), Â) over the same tokens,
  the first-order predictor of the entropy change an update causes.
* ``update_row_metrics`` and ``rollout_entropy_by_band`` name them per update type, row origin and difficulty band.

Every function takes one 1-D tensor per row (a jagged TransferQueue field unbound into rows) and, where given, a
response mask per row: only tokens with mask 1 count, so padding rows (all-zero mask) and tool tokens never do.
Nothing here knows about the trainer or TransferQueue.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

REGULAR, EXPLORATION = "regular", "exploration"


def valid_tokens(rows: Sequence[torch.Tensor], masks: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
    """The values of every row's valid response tokens, concatenated, in float64 (the sums run over many tokens)."""
    if masks is not None and len(masks) != len(rows):
        raise ValueError(f"{len(masks)} response masks for {len(rows)} rows; give one per row")
    parts = []
    for i, row in enumerate(rows):
        row = row.reshape(-1).double()
        if masks is not None:
            mask = masks[i].reshape(-1)
            if mask.numel() != row.numel():
                raise ValueError(f"row {i}: {row.numel()} values for a response mask of {mask.numel()} tokens")
            row = row[mask > 0]
        parts.append(row)
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float64)


def mean_negative_log_prob(
    log_probs: Sequence[torch.Tensor], masks: Sequence[torch.Tensor] | None = None
) -> float | None:
    """Token mean of −log π(a) over the valid tokens of all rows together (None without a token)."""
    tokens = valid_tokens(log_probs, masks)
    return float(-tokens.mean()) if tokens.numel() else None


def logp_advantage_covariance(
    log_probs: Sequence[torch.Tensor], advantages: Sequence[torch.Tensor], masks: Sequence[torch.Tensor]
) -> float | None:
    """Population covariance (divided by the token count) of log π(a) and Â over the valid tokens of all rows.

    A positive value means the update raises already-likely tokens and lowers unlikely ones: to first order the
    entropy falls (ΔH ≈ −η·Cov). None without a token.
    """
    log_p, adv = valid_tokens(log_probs, masks), valid_tokens(advantages, masks)
    if not log_p.numel():
        return None
    return float(((log_p - log_p.mean()) * (adv - adv.mean())).mean())


def update_row_metrics(
    update: str,
    old_log_probs: Sequence[torch.Tensor],
    advantages: Sequence[torch.Tensor],
    masks: Sequence[torch.Tensor],
    origins: Sequence[str] | None = None,
    log_probs: Sequence[torch.Tensor] | None = None,
) -> dict[str, float]:
    """The update-row figures of one actor update (``update`` is ``main`` or ``replay``).

    ``entropy/update_rows/<update>``: mean −log π over the valid tokens of the update's rows, with ``log_probs``
    (π under the weights the update starts from) or, when not given, ``old_log_probs`` (the same thing whenever
    the old log-probs were just recomputed). ``entropy/cov_logp_adv/<update>``: Cov(log π_old, Â) over the same
    tokens, with the old log-probs the update's ratio uses. With ``origins`` (``regular`` or ``exploration`` per
    row) both are also given per origin present, under ``.../<update>/<origin>``.
    """
    log_probs = old_log_probs if log_probs is None else log_probs
    for name, values in (("log_probs", log_probs), ("advantages", advantages), ("masks", masks)):
        if len(values) != len(old_log_probs):
            raise ValueError(f"update_row_metrics: {len(values)} {name} for {len(old_log_probs)} rows")
    groups = {"": list(range(len(old_log_probs)))}
    if origins is not None:
        if len(origins) != len(old_log_probs):
            raise ValueError(f"update_row_metrics: {len(origins)} origins for {len(old_log_probs)} rows")
        for origin in (REGULAR, EXPLORATION):
            rows = [i for i, o in enumerate(origins) if o == origin]
            if rows:
                groups[f"/{origin}"] = rows
    metrics = {}
    for suffix, rows in groups.items():
        row_masks = [masks[i] for i in rows]
        entropy = mean_negative_log_prob([log_probs[i] for i in rows], row_masks)
        covariance = logp_advantage_covariance(
            [old_log_probs[i] for i in rows], [advantages[i] for i in rows], row_masks
        )
        if entropy is not None:
            metrics[f"entropy/update_rows/{update}{suffix}"] = entropy
            metrics[f"entropy/cov_logp_adv/{update}{suffix}"] = covariance
    return metrics


def row_band(extra_info: Any) -> str | None:
    """A training row's difficulty band: its dataset row's ``extra_info["band"]`` when that is a non-empty string.

    verl copies every column of a dataset row into the row's TransferQueue fields, ``extra_info`` included, so a
    dataset that knows its prompts' bands writes them there (as the demo's validation and evaluation rows do:
    ``uec_lab/demo/build.py``, ``rl_rows``). A row without one has none. The data source is not read: data sources
    contain '/' themselves (``<owner>/<task>``), and the rows that name a band there carry it in extra_info too.
    """
    extra_info = getattr(extra_info, "data", extra_info)  # a NonTensorData wrapper when read from TransferQueue
    band = extra_info.get("band") if isinstance(extra_info, dict) else None
    return band if isinstance(band, str) and band else None


def rollout_entropy_by_band(
    name: str, log_probs: Sequence[torch.Tensor], bands: Sequence[str | None]
) -> dict[str, float]:
    """``<name>/<band>``: mean −log q over the sampled tokens of the rows of each band present (rows without a
    band are left out), the same estimate as ``<name>`` over all rows."""
    if len(bands) != len(log_probs):
        raise ValueError(f"{len(bands)} bands for {len(log_probs)} rows; give one per row (None: no band)")
    metrics = {}
    for band in sorted({band for band in bands if band is not None}):
        entropy = mean_negative_log_prob([row for row, b in zip(log_probs, bands) if b == band])
        if entropy is not None:
            metrics[f"{name}/{band}"] = entropy
    return metrics
