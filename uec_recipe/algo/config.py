"""The ``uec`` configuration section: every UEC-RL knob, its reference value, and one validate().

Reference values come from the paper (arXiv 2604.14646, §3) and the authors' released EasyR1 tree
(github.com/597358816/EFRame); where the two differ, both rules are selectable and the default is stated.
The same keys, with comments, are in ``uec_recipe/config/uec_trainer.yaml``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

EXPLORATION_RETENTION_RULES = ("positive", "abs_gt_1")
REPLAY_ADMISSION_RULES = ("gt", "abs_gt")
LOGPROB_TEMPERATURE_MODES = ("base",)
KNOWN_ROLLOUTS = ("vllm", "sglang", "trtllm", "hf")


class UECConfigError(ValueError):
    """A bad ``uec`` (or related) setting; the message names every offending key."""


@dataclass
class ExplorationConfig:
    enable: bool = True
    n: int = 20  # G': paper §3 and released code
    temperature: float = 1.2  # T': paper; the authors' other branches used 1.1 and 1.15
    difficulty_threshold: float = 0.01  # difficult = every sample of the group scores below this (released code)
    retention: str = "positive"  # paper: keep Â>0; released code: |Â|>1 ("abs_gt_1")
    drop_overlong_positive: bool = True  # released code: drop samples that hit max length and have Â>0


@dataclass
class RetentionConfig:
    enable: bool = True  # False = the paper's "w/o selective retention" ablation: keep every sample
    regular_abs_adv: float = 0.05  # keep regular samples with |Â| > 0.05 (paper and released code)


@dataclass
class BatchBufferConfig:
    capacity_multiple: float = 2.0  # × N0; released code 2, the authors' later branch 4


@dataclass
class ReplayConfig:
    enable: bool = True
    admission: str = "gt"  # "gt": Â > A0 (later branch); "abs_gt": |Â| > A0 (released code)
    adv_threshold: float = 1.0  # A0 (paper and both code trees)
    capacity_multiple: float = 2.0  # s' × N0 (paper: s' = 2.0)
    frequency: int = 5  # f_replay: an extra update every 5 steps (paper)


@dataclass
class UECConfig:
    enable: bool = True
    exploration: ExplorationConfig = field(default_factory=ExplorationConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    batch_buffer: BatchBufferConfig = field(default_factory=BatchBufferConfig)
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    # Old log-probs of the T' samples are recomputed at the base rollout temperature with no importance
    # correction (reference behaviour, paper §3; the resulting bias is what raises entropy).
    logprob_temperature: str = "base"
    n0: Optional[int] = None  # rows per policy update; None = data.train_batch_size × rollout.n (paper's N0)
    seed: int = 0  # seeds the replay-buffer sampling

    @classmethod
    def from_mapping(cls, mapping: Any) -> "UECConfig":
        """Build from a DictConfig/dict; unknown keys are errors (a typo must not silently use a default)."""
        from omegaconf import DictConfig, OmegaConf

        if mapping is None:
            return cls(enable=False)
        data = OmegaConf.to_container(mapping, resolve=True) if isinstance(mapping, DictConfig) else dict(mapping)
        problems = []
        sections = {
            "exploration": ExplorationConfig,
            "retention": RetentionConfig,
            "batch_buffer": BatchBufferConfig,
            "replay": ReplayConfig,
        }
        kwargs = {}
        top_level = {f for f in cls.__dataclass_fields__}
        for key, value in data.items():
            if key not in top_level:
                problems.append(f"uec.{key}: unknown key (known: {', '.join(sorted(top_level))})")
            elif key in sections:
                section_cls = sections[key]
                value = value or {}
                unknown = sorted(set(value) - set(section_cls.__dataclass_fields__))
                for name in unknown:
                    problems.append(
                        f"uec.{key}.{name}: unknown key (known: {', '.join(sorted(section_cls.__dataclass_fields__))})"
                    )
                kwargs[key] = section_cls(**{k: v for k, v in value.items() if k not in unknown})
            else:
                kwargs[key] = value
        if problems:
            raise UECConfigError("invalid uec configuration:\n  - " + "\n  - ".join(problems))
        return cls(**kwargs)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def validate(uec: UECConfig, config=None) -> list[str]:
    """Return one message per problem (empty when valid). ``config`` is the full trainer config, if any."""
    problems = []

    def bad(key, value, allowed):
        problems.append(f"uec.{key}={value!r}: {allowed}")

    ex, rt, bb, rp = uec.exploration, uec.retention, uec.batch_buffer, uec.replay
    for key, value in [
        ("enable", uec.enable),
        ("exploration.enable", ex.enable),
        ("retention.enable", rt.enable),
        ("replay.enable", rp.enable),
        ("exploration.drop_overlong_positive", ex.drop_overlong_positive),
    ]:
        if not isinstance(value, bool):
            bad(key, value, "must be true or false")
    if not isinstance(ex.n, int) or isinstance(ex.n, bool) or ex.n < 2:
        bad("exploration.n", ex.n, "must be an integer >= 2 (advantages are normalised within the G' samples)")
    if not _is_number(ex.temperature) or ex.temperature <= 0:
        bad("exploration.temperature", ex.temperature, "must be a number > 0 (reference 1.2)")
    if not _is_number(ex.difficulty_threshold) or not 0 < ex.difficulty_threshold <= 1:
        bad("exploration.difficulty_threshold", ex.difficulty_threshold, "must be in (0, 1] (reference 0.01)")
    if ex.retention not in EXPLORATION_RETENTION_RULES:
        bad("exploration.retention", ex.retention, f"must be one of {EXPLORATION_RETENTION_RULES}")
    if not _is_number(rt.regular_abs_adv) or rt.regular_abs_adv < 0:
        bad("retention.regular_abs_adv", rt.regular_abs_adv, "must be a number >= 0 (reference 0.05)")
    if not _is_number(bb.capacity_multiple) or bb.capacity_multiple < 1:
        bad(
            "batch_buffer.capacity_multiple",
            bb.capacity_multiple,
            "must be >= 1 (the buffer must hold one update batch N0)",
        )
    if rp.admission not in REPLAY_ADMISSION_RULES:
        bad("replay.admission", rp.admission, f"must be one of {REPLAY_ADMISSION_RULES}")
    if not _is_number(rp.adv_threshold) or rp.adv_threshold < 0:
        bad("replay.adv_threshold", rp.adv_threshold, "must be a number >= 0 (reference A0 = 1.0)")
    if not _is_number(rp.capacity_multiple) or rp.capacity_multiple < 1:
        bad("replay.capacity_multiple", rp.capacity_multiple, "must be >= 1 (a replay update needs N0 rows)")
    if not isinstance(rp.frequency, int) or isinstance(rp.frequency, bool) or rp.frequency < 1:
        bad("replay.frequency", rp.frequency, "must be an integer >= 1 (reference f_replay = 5)")
    if uec.logprob_temperature not in LOGPROB_TEMPERATURE_MODES:
        bad(
            "logprob_temperature",
            uec.logprob_temperature,
            f"must be one of {LOGPROB_TEMPERATURE_MODES}; for an importance-weight correction of the T' samples "
            "use verl's algorithm.rollout_correction instead",
        )
    if uec.n0 is not None and (not isinstance(uec.n0, int) or isinstance(uec.n0, bool) or uec.n0 < 1):
        bad("n0", uec.n0, "must be null (= train_batch_size x rollout.n) or an integer >= 1")

    if config is not None and uec.enable and not problems:
        problems.extend(_validate_against_trainer(uec, config))
    return problems


def update_batch_rows(uec: UECConfig, config) -> int:
    """N0: rows per policy update."""
    if uec.n0 is not None:
        return int(uec.n0)
    return int(config.data.train_batch_size) * int(config.actor_rollout_ref.rollout.n)


def required_row_multiple(config) -> int:
    """Rows per update must split into whole PPO mini-batches across the data-parallel ranks."""
    dp = int(config.trainer.n_gpus_per_node) * int(config.trainer.nnodes)
    mini = int(config.actor_rollout_ref.actor.ppo_mini_batch_size) * int(config.actor_rollout_ref.rollout.n)
    return math.lcm(dp, mini)


def _validate_against_trainer(uec: UECConfig, config) -> list[str]:
    problems = []
    n0 = update_batch_rows(uec, config)
    multiple = required_row_multiple(config)
    if n0 % multiple != 0:
        problems.append(
            f"uec.n0={n0}: each UEC update pops N0 rows and must split into whole PPO mini-batches on every "
            f"data-parallel rank, so N0 must be a multiple of lcm(n_gpus_per_node*nnodes, "
            f"actor.ppo_mini_batch_size*rollout.n) = {multiple}; change uec.n0, data.train_batch_size or "
            "actor.ppo_mini_batch_size"
        )
    else:
        problems.extend(_micro_batch_problems(n0, config))
    rollout = config.actor_rollout_ref.rollout
    if rollout.name not in KNOWN_ROLLOUTS:
        problems.append(
            f"actor_rollout_ref.rollout.name={rollout.name!r}: unknown rollout engine; use one of {KNOWN_ROLLOUTS} "
            "('hf' is the CPU rollout of this recipe)"
        )
    if not float(rollout.temperature) > 0:
        problems.append(
            f"actor_rollout_ref.rollout.temperature={rollout.temperature}: the regular rollout must sample "
            "(temperature > 0), or no group would ever have mixed rewards"
        )
    if int(config.actor_rollout_ref.rollout.n) < 2:
        problems.append(
            f"actor_rollout_ref.rollout.n={config.actor_rollout_ref.rollout.n}: UEC-RL needs groups of >= 2 samples "
            "(difficult prompts are those whose whole group scored 0)"
        )
    if config.actor_rollout_ref.rollout.agent.default_agent_loop != "uec_agent" and uec.exploration.enable:
        problems.append(
            "actor_rollout_ref.rollout.agent.default_agent_loop="
            f"{config.actor_rollout_ref.rollout.agent.default_agent_loop!r}: "
            "exploration needs the per-row temperature agent loop; set it to 'uec_agent'"
        )
    if config.trainer.v1.trainer_mode != "uec":
        problems.append(f"trainer.v1.trainer_mode={config.trainer.v1.trainer_mode!r}: the UEC step needs 'uec'")
    if not config.trainer.get("use_v1", True):
        problems.append("trainer.use_v1=False: UEC-RL is built on verl's V1 trainer; set trainer.use_v1=True")
    if config.algorithm.get("filter_groups", {}).get("enable", False):
        problems.append(
            "algorithm.filter_groups.enable=True: UEC-RL filters groups itself (selective retention); "
            "verl's DAPO group filter would discard the difficult prompts before exploration sees them"
        )
    return problems


def _micro_batch_problems(n0: int, config) -> list[str]:
    """Each rank's share of an N0 update must split into whole micro-batches (verl asserts this mid-run)."""
    problems = []
    dp = int(config.trainer.n_gpus_per_node) * int(config.trainer.nnodes)
    arr = config.actor_rollout_ref
    checks = [
        (
            "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu",
            arr.rollout.get("log_prob_micro_batch_size_per_gpu"),
            arr.rollout.get("log_prob_use_dynamic_bsz", False),
            n0 // dp,
        ),
        (
            "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu",
            arr.ref.get("log_prob_micro_batch_size_per_gpu"),
            arr.ref.get("log_prob_use_dynamic_bsz", False),
            n0 // dp,
        ),
        (
            "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu",
            arr.actor.get("ppo_micro_batch_size_per_gpu"),
            arr.actor.get("use_dynamic_bsz", False),
            int(arr.actor.ppo_mini_batch_size) * int(arr.rollout.n) // dp,
        ),
    ]
    for key, micro, dynamic, rows_per_rank in checks:
        if micro and not dynamic and rows_per_rank % int(micro) != 0:
            problems.append(
                f"{key}={micro}: each data-parallel rank gets {rows_per_rank} rows per UEC update (N0={n0}), "
                "which must be a multiple of the micro-batch size; "
                f"pick a divisor of {rows_per_rank} or enable dynamic batch size"
            )
    return problems


def load_and_validate(config) -> UECConfig:
    """Parse ``config.uec`` and raise one UECConfigError listing every problem."""
    uec = UECConfig.from_mapping(config.get("uec"))
    problems = validate(uec, config)
    if problems:
        raise UECConfigError("invalid UEC-RL configuration:\n  - " + "\n  - ".join(problems))
    return uec
