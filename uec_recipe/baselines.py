"""Trainer glue for the baselines that verl does not ship: the Entropy-Adv advantage shaping.

GRPO, DAPO and KL-Cov are plain verl settings (config/algo/*.yaml). Entropy-Adv (Cheng et al. 2025, arXiv
2506.14758) changes the advantages, so it runs in the trainer, right after verl's ``_compute_advantage``:

    sample → old log-prob (writes per-token ``entropy``) → ref log-prob → advantage → **shaping** → update

``UECTrainer._compute_advantage`` calls ``apply_entropy_advantage`` when ``algorithm.entropy_adv.enable`` is set.
H_t is therefore the behaviour policy's entropy at the rollout temperature, from the old-log-prob pass
(docs/baselines.md explains the choice and when it equals the paper's current-policy entropy).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import transfer_queue as tq
from tensordict import TensorDict

from uec_recipe.algo.entropy_adv import capped_fraction, shape_advantages

ENTROPY_ADV_FIELDS = ["advantages", "entropy", "response_mask"]


@dataclass
class EntropyAdvConfig:
    """``algorithm.entropy_adv``'s schema; verl 0.9.1's V1 trainer never builds AlgoConfig, so extra keys there are
    safe. alpha and kappa have no default here: their one default is the preset (config/algo/entropy_adv.yaml)."""

    enable: bool = False
    alpha: Optional[float] = None
    kappa: Optional[float] = None


def parse_entropy_adv(section) -> EntropyAdvConfig:
    """Type- and range-check ``algorithm.entropy_adv`` (a DictConfig, dict or None); raise ValueError naming every
    bad key. The returned values are the ones the shaping uses."""
    settings, problems = _parse(section)
    _raise(problems)
    return settings


def _raise(problems: list[str]) -> None:
    if problems:
        raise ValueError("invalid Entropy-Adv configuration:\n  - " + "\n  - ".join(problems))


def _parse(section) -> tuple[Optional[EntropyAdvConfig], list[str]]:
    from omegaconf import DictConfig, OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    data = OmegaConf.to_container(section, resolve=True) if isinstance(section, DictConfig) else dict(section or {})
    typed = OmegaConf.structured(EntropyAdvConfig)
    problems = []
    for key, value in data.items():
        if key not in EntropyAdvConfig.__dataclass_fields__:
            problems.append(
                f"algorithm.entropy_adv.{key}: unknown key (known: {', '.join(EntropyAdvConfig.__dataclass_fields__)})"
            )
            continue
        try:
            setattr(typed, key, value)
        except OmegaConfBaseException:
            kind = "true or false" if key == "enable" else "a number"
            problems.append(f"algorithm.entropy_adv.{key}={value!r}: must be {kind}")
    settings = EntropyAdvConfig(**OmegaConf.to_container(typed)) if not problems else None
    if settings is not None and settings.enable:
        if settings.alpha is None or not settings.alpha >= 0:
            problems.append(
                f"algorithm.entropy_adv.alpha={settings.alpha!r}: must be a number >= 0 (paper 0.4, the preset's)"
            )
        if settings.kappa is None or not settings.kappa > 1:
            problems.append(
                f"algorithm.entropy_adv.kappa={settings.kappa!r}: must be a number > 1 (paper 2, the preset's), "
                "otherwise the bonus can flip an advantage's sign"
            )
    return settings, problems


def entropy_adv_config(config) -> EntropyAdvConfig:
    """Parse ``algorithm.entropy_adv`` from the full trainer config, with the rule it shares with the uec section."""
    section = config.algorithm.get("entropy_adv", None)
    settings, problems = _parse(section)
    uec = config.get("uec", None)
    if (section or {}).get("enable", False) is True and uec is not None and uec.get("enable", False):
        problems.append(
            "algorithm.entropy_adv.enable=true with uec.enable=true: the UEC step computes its own advantages and "
            "never calls the shaping; use algo=entropy_adv (uec.enable=false)"
        )
    _raise(problems)
    return settings


def check_baselines(config) -> None:
    """Checks the dry run can make for the baseline presets; each raises ValueError naming the key."""
    entropy_adv_config(config)
    reward = config.get("reward", None) or {}
    manager = (reward.get("reward_manager", None) or {}).get("name", None)
    kwargs = reward.get("reward_kwargs", None) or {}
    buffer = kwargs.get("overlong_buffer_cfg", None) or {}
    if manager == "dapo" and buffer.get("enable", False):
        # verl's DAPO reward manager asserts this inside the reward workers, after Ray has started
        max_len, buffer_len = kwargs.get("max_resp_len", None), buffer.get("len", None)
        if max_len is None or buffer_len is None or not 0 < buffer_len <= max_len:
            raise ValueError(
                f"reward.reward_kwargs.overlong_buffer_cfg.len={buffer_len!r}: DAPO's overlong buffer must be "
                f"> 0 and <= reward.reward_kwargs.max_resp_len={max_len!r} (data.max_response_length); the "
                "preset's 410 is for 2048-token responses"
            )


def apply_entropy_advantage(batch, settings, metrics: dict):
    """Shape the stored advantages of ``batch`` (a TQ ``KVBatchMeta``) in place; return the meta of the write.

    ``settings``: the parsed ``EntropyAdvConfig`` (parse it once, with ``entropy_adv_config``), or the trainer's
    ``algorithm`` section, which is then parsed here. Reads ``advantages``, ``entropy`` (written by verl's
    ``_compute_old_log_prob``) and ``response_mask`` from TransferQueue as jagged nested tensors, shapes them padded
    and writes the advantages back, nested, the way verl's ``PPOTrainer._compute_advantage`` stores them.
    ``returns`` are left as they are (GRPO's actor update does not read them).
    """
    from verl.workers.utils.padding import response_to_nested

    if not isinstance(settings, EntropyAdvConfig):
        settings = parse_entropy_adv(settings.get("entropy_adv", None))
    alpha, kappa = settings.alpha, settings.kappa
    data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=ENTROPY_ADV_FIELDS)
    nested_mask = data["response_mask"]
    padded = data.to_padded_tensor()
    advantages, entropy, response_mask = padded["advantages"], padded["entropy"], padded["response_mask"]

    shaped, mean_term = shape_advantages(advantages, entropy, response_mask, alpha, kappa)
    metrics["entropy_adv/mean_shaping_term"] = mean_term
    metrics["entropy_adv/capped_fraction"] = capped_fraction(advantages, entropy, response_mask, alpha, kappa)

    fields_out = TensorDict({"advantages": response_to_nested(shaped, nested_mask)}, batch_size=len(batch))
    return tq.kv_batch_put(keys=batch.keys, partition_id=batch.partition_id, fields=fields_out)
