"""The ``uec`` configuration section: its schema, and the rules between values that a schema cannot state.

The defaults, with where each comes from (the paper, arXiv 2604.14646 §3; the authors' released EasyR1 tree,
github.com/597358816/EFRame; or a guess), live in one place: ``uec_recipe/config/uec_trainer.yaml``. The dataclasses
below are the section's schema: OmegaConf checks every key's name and type against them (a structured merge), so
the only hand-written checks left are the value ranges and the rules that tie two settings together. A dataclass
built without the YAML (a test's ``UECConfig.from_mapping({...})``) uses the schema's defaults, which mirror it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, Optional

EXPLORATION_RETENTION_RULES = ("positive", "abs_gt_1")
REPLAY_ADMISSION_RULES = ("gt", "abs_gt")
OVERLONG_SCOPES = ("all", "exploration", "none")
EXPLORATION_SCHEDULES = ("sync", "pipelined")
EXPLORATION_BUDGETS = ("fixed", "adaptive")
KNOWN_ROLLOUTS = ("vllm", "sglang", "trtllm", "hf")
# Estimators whose advantage is normalised within a uid group: UEC-RL's retention thresholds (|Â| > 0.05, Â > A0)
# and its exploration groups are defined on GRPO advantages.
GROUP_ESTIMATORS = ("uec", "grpo")

# Keys that moved or were removed, with what to use instead (a stale override gets this hint, not a bare error).
MOVED_KEYS = {
    "exploration.drop_overlong_positive": (
        "moved to uec.retention.drop_overlong_positive, which takes a scope: all (released code: regular and "
        "exploration survivors), exploration, or none"
    ),
    "logprob_temperature": (
        "removed: old log-probs of the T' samples are always recomputed at the base temperature with no "
        "correction (the reference behaviour), and algorithm.rollout_correction is refused under UEC-RL"
    ),
}

# What each key accepts: the message of a value of the wrong type (from the schema) or out of range (validate()).
RULES = {
    "enable": "must be true or false",
    "exploration.enable": "must be true or false",
    "retention.enable": "must be true or false",
    "replay.enable": "must be true or false",
    "exploration.n": "must be an integer >= 2 (advantages are normalised within the G' samples)",
    "exploration.temperature": "must be a number > 0 (reference 1.2)",
    "exploration.difficulty_threshold": "must be in (0, 1] (reference 0.01)",
    "exploration.retention": f"must be one of {EXPLORATION_RETENTION_RULES}",
    "exploration.schedule": f"must be one of {EXPLORATION_SCHEDULES} (reference: sync)",
    "exploration.budget": f"must be one of {EXPLORATION_BUDGETS} (reference: fixed)",
    "exploration.budget_floor": "must be an integer >= 2",
    "exploration.budget_cap": "must be null (= 2 x exploration.n) or an integer",
    "retention.regular_abs_adv": "must be a number >= 0 (reference 0.05)",
    "retention.drop_overlong_positive": f"must be one of {OVERLONG_SCOPES} (reference: all)",
    "batch_buffer.capacity_multiple": "must be >= 1 (the buffer must hold one update batch N0)",
    "replay.admission": f"must be one of {REPLAY_ADMISSION_RULES}",
    "replay.adv_threshold": "must be a number >= 0 (reference A0 = 1.0)",
    "replay.capacity_multiple": (
        "must be a whole number >= 1 (paper s' = 2): a full replay buffer is replayed whole, so its capacity "
        "must be whole update batches of N0 rows"
    ),
    "replay.frequency": "must be an integer >= 1 (reference f_replay = 5)",
    "sample_poll_interval_s": "must be null (verl default 2 s) or seconds > 0",
    "n0": "must be null (= train_batch_size x rollout.n) or an integer >= 1",
    "seed": "must be an integer",
}


class UECConfigError(ValueError):
    """A bad ``uec`` (or related) setting; the message names every offending key."""


# The schema. Defaults mirror uec_trainer.yaml (tests/algo/test_config.py checks that they agree).


@dataclass
class ExplorationConfig:
    enable: bool = True
    n: int = 20
    temperature: float = 1.2
    difficulty_threshold: float = 0.01
    retention: str = "positive"
    schedule: str = "sync"  # sync | pipelined (uec_plus)
    budget: str = "fixed"  # fixed | adaptive (uec_plus; uec_recipe/algo/exploration_budget.py)
    budget_floor: int = 2
    budget_cap: Optional[int] = None


@dataclass
class RetentionConfig:
    enable: bool = True
    regular_abs_adv: float = 0.05
    drop_overlong_positive: str = "all"


@dataclass
class BatchBufferConfig:
    capacity_multiple: float = 2.0


@dataclass
class ReplayConfig:
    enable: bool = True
    admission: str = "gt"
    adv_threshold: float = 1.0
    capacity_multiple: int = 2
    frequency: int = 5


@dataclass
class UECConfig:
    enable: bool = True
    exploration: ExplorationConfig = field(default_factory=ExplorationConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    batch_buffer: BatchBufferConfig = field(default_factory=BatchBufferConfig)
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    sample_poll_interval_s: Optional[float] = None
    n0: Optional[int] = None
    seed: int = 0  # seeds the replay-buffer sampling

    @classmethod
    def from_mapping(cls, mapping: Any) -> "UECConfig":
        """Merge a DictConfig/dict onto the schema; every unknown key and badly typed value is one error."""
        from omegaconf import DictConfig, OmegaConf
        from omegaconf.errors import OmegaConfBaseException

        if mapping is None:
            return cls(enable=False)
        data = OmegaConf.to_container(mapping, resolve=True) if isinstance(mapping, DictConfig) else dict(mapping)
        typed = OmegaConf.structured(cls)
        problems = []
        # One key at a time, so that every problem is reported, not only the first the merge meets.
        for key, value in _leaves(data):
            if key in MOVED_KEYS:
                problems.append(f"uec.{key}: {MOVED_KEYS[key]}")
                continue
            unknown = _unknown_key(cls, key)
            if unknown is not None:
                if unknown not in problems:  # a whole unknown section is one problem
                    problems.append(unknown)
                continue
            try:
                OmegaConf.update(typed, key, value, merge=True)
            except OmegaConfBaseException:
                problems.append(f"uec.{key}={value!r}: {RULES.get(key, 'has the wrong type')}")
        if problems:
            raise UECConfigError("invalid uec configuration:\n  - " + "\n  - ".join(problems))
        return OmegaConf.to_object(typed)


SECTIONS = {
    "exploration": ExplorationConfig,
    "retention": RetentionConfig,
    "batch_buffer": BatchBufferConfig,
    "replay": ReplayConfig,
}


def _leaves(data: dict, prefix: str = ""):
    """(dotted key, value) of every setting; a section is walked (a section set to null keeps its defaults)."""
    for key, value in data.items():
        if isinstance(value, dict):
            yield from _leaves(value, f"{prefix}{key}.")
        elif not (value is None and not prefix and key in SECTIONS):
            yield f"{prefix}{key}", value


def _unknown_key(cls, dotted: str) -> Optional[str]:
    """None when ``dotted`` names a field of the schema, else the problem: the first unknown part and the keys known
    at that level."""
    node, path = cls, []
    for name in dotted.split("."):
        path.append(name)
        names = [f.name for f in fields(node)] if node is not None else []
        if name not in names:
            known = f" (known: {', '.join(sorted(names))})" if names else ""
            return f"uec.{'.'.join(path)}: unknown key{known}"
        node = SECTIONS.get(name) if node is cls else None
    return None


def validate(uec: UECConfig, config=None) -> list[str]:
    """Return one message per problem (empty when valid). ``config`` is the full trainer config, if any.

    The types are the schema's (``UECConfig.from_mapping``); these are the ranges and the rules between values.
    """
    problems = []

    def bad(key, value):
        problems.append(f"uec.{key}={value!r}: {RULES[key]}")

    ex, rt, bb, rp = uec.exploration, uec.retention, uec.batch_buffer, uec.replay
    if ex.n < 2:
        bad("exploration.n", ex.n)
    if not _finite(ex.temperature) or ex.temperature <= 0:
        bad("exploration.temperature", ex.temperature)
    if ex.schedule not in EXPLORATION_SCHEDULES:
        bad("exploration.schedule", ex.schedule)
    if ex.budget not in EXPLORATION_BUDGETS:
        bad("exploration.budget", ex.budget)
    if ex.budget == "adaptive":
        cap = 2 * ex.n if ex.budget_cap is None else ex.budget_cap
        if not 2 <= ex.budget_floor <= ex.n <= cap:
            problems.append(
                f"uec.exploration.budget_floor/budget_cap={(ex.budget_floor, ex.budget_cap)!r}: need integers with "
                f"2 <= budget_floor <= exploration.n ({ex.n}) <= budget_cap (null = 2·n): a group of one sample has "
                "no advantage to compare"
            )
    if not _finite(ex.difficulty_threshold) or not 0 < ex.difficulty_threshold <= 1:
        bad("exploration.difficulty_threshold", ex.difficulty_threshold)
    if ex.retention not in EXPLORATION_RETENTION_RULES:
        bad("exploration.retention", ex.retention)
    if not _finite(rt.regular_abs_adv) or rt.regular_abs_adv < 0:
        bad("retention.regular_abs_adv", rt.regular_abs_adv)
    if rt.drop_overlong_positive not in OVERLONG_SCOPES:
        bad("retention.drop_overlong_positive", rt.drop_overlong_positive)
    if not _finite(bb.capacity_multiple) or bb.capacity_multiple < 1:
        bad("batch_buffer.capacity_multiple", bb.capacity_multiple)
    if rp.admission not in REPLAY_ADMISSION_RULES:
        bad("replay.admission", rp.admission)
    if not _finite(rp.adv_threshold) or rp.adv_threshold < 0:
        bad("replay.adv_threshold", rp.adv_threshold)
    if rp.capacity_multiple < 1:
        bad("replay.capacity_multiple", rp.capacity_multiple)
    if rp.frequency < 1:
        bad("replay.frequency", rp.frequency)
    if uec.sample_poll_interval_s is not None and (
        not _finite(uec.sample_poll_interval_s) or uec.sample_poll_interval_s <= 0
    ):
        bad("sample_poll_interval_s", uec.sample_poll_interval_s)
    if uec.n0 is not None and uec.n0 < 1:
        bad("n0", uec.n0)

    if config is not None and uec.enable and not problems:
        problems.extend(_validate_against_trainer(uec, config))
    return problems


def _finite(value: float) -> bool:
    return math.isfinite(value)


def update_batch_rows(uec: UECConfig, config) -> int:
    """N0: rows per policy update."""
    if uec.n0 is not None:
        return int(uec.n0)
    return int(config.data.train_batch_size) * int(config.actor_rollout_ref.rollout.n)


def data_parallel_size(config) -> int:
    """GPUs divided by the actor's sequence-parallel size: the ranks that each take a share of a batch."""
    actor = config.actor_rollout_ref.actor
    sp = max(
        int(actor.get("ulysses_sequence_parallel_size", 1) or 1),
        int(actor.get("fsdp_config", {}).get("ulysses_sequence_parallel_size", 1) or 1),
    )
    return max(1, int(config.trainer.n_gpus_per_node) * int(config.trainer.nnodes) // sp)


def required_row_multiple(config) -> int:
    """Rows per update must split into whole PPO mini-batches across the data-parallel ranks."""
    dp = data_parallel_size(config)
    mini = int(config.actor_rollout_ref.actor.ppo_mini_batch_size) * int(config.actor_rollout_ref.rollout.n)
    return math.lcm(dp, mini)


def _validate_against_trainer(uec: UECConfig, config) -> list[str]:
    problems = []
    n0 = update_batch_rows(uec, config)
    multiple = required_row_multiple(config)
    if n0 % multiple != 0:
        problems.append(
            f"uec.n0={n0}: each UEC update pops a whole number of N0-row blocks (the oldest floor(size/N0)*N0 "
            "buffered rows) and each replay update uses whole N0 blocks; both must split into whole PPO "
            "mini-batches on every data-parallel rank, so N0 must be a multiple of lcm(n_gpus_per_node*nnodes, "
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
    problems.extend(_unsupported_under_uec(config))
    if config.algorithm.get("filter_groups", {}).get("enable", False):
        problems.append(
            "algorithm.filter_groups.enable=True: UEC-RL filters groups itself (selective retention); "
            "verl's DAPO group filter would discard the difficult prompts before exploration sees them"
        )
    return problems


def rollout_correction_active(config) -> bool:
    """Whether verl's algorithm.rollout_correction would act (IS weights, rejection sampling or bypass mode)."""
    correction = config.algorithm.get("rollout_correction", None)
    if correction is None:
        return False
    return (
        correction.get("rollout_is", None) is not None
        or correction.get("rollout_rs", None) is not None
        or bool(correction.get("bypass_mode", False))
    )


def _unsupported_under_uec(config) -> list[str]:
    """Settings the UEC step cannot honour: refused, not silently ignored."""
    problems = []
    estimator = config.algorithm.adv_estimator
    if estimator not in GROUP_ESTIMATORS:
        problems.append(
            f"algorithm.adv_estimator={estimator!r}: UEC-RL's difficulty test, retention thresholds and "
            f"exploration groups are defined on group-normalised advantages; use one of {GROUP_ESTIMATORS}"
        )
    critic = config.get("critic", {}) or {}
    if critic.get("enable", None):
        problems.append(
            "critic.enable=True: the UEC step trains the actor only (GRPO has no critic); set critic.enable=null"
        )
    if not config.algorithm.get("norm_adv_by_std_in_grpo", True):
        problems.append(
            "algorithm.norm_adv_by_std_in_grpo=False: the retention threshold |Â| > 0.05 and replay's A0 = 1 are "
            "defined on std-normalised group advantages (paper §3); set it to True"
        )
    reward_model = config.get("reward", {}).get("reward_model", {}) or {}
    if reward_model.get("enable", False) and not reward_model.get("enable_resource_pool", False):
        problems.append(
            "reward.reward_model.enable=True without reward.reward_model.enable_resource_pool: verl then scores "
            "rollouts inside its own step, which the UEC step replaces, so no row would have a score; give the "
            "reward model its own resource pool"
        )
    sampler = config.get("trainer", {}).get("v1", {}).get("sampler", {}) or {}
    if sampler.get("sync_refill_failed_groups", False):
        problems.append(
            "trainer.v1.sampler.sync_refill_failed_groups=True: verl would refill a failed exploration group with "
            "regular prompts while the UEC step waits for its groups; set it to False"
        )
    if config.get("trainer", {}).get("rollout_data_dir", None):
        problems.append(
            "trainer.rollout_data_dir: verl dumps the batch a step returns, which under UEC-RL is the list of rows "
            "to delete, not the rollout; unset it (every step's metrics are in the file logger)"
        )
    if config.algorithm.get("use_kl_in_reward", False):
        problems.append(
            "algorithm.use_kl_in_reward=True: the UEC step computes advantages from the reward alone (the paper "
            "puts KL in the loss); set algorithm.use_kl_in_reward=False and use actor_rollout_ref.actor.use_kl_loss"
        )
    if rollout_correction_active(config):
        problems.append(
            "algorithm.rollout_correction: verl applies it inside its own advantage step, which the UEC step does "
            "not run, so it would have no effect; UEC-RL recomputes the T' samples' old log-probs at the base "
            "temperature with no correction (the reference behaviour). Set algorithm.rollout_correction.rollout_is"
            "=null, rollout_rs=null and bypass_mode=False"
        )
    return problems


def validate_common(config) -> list[str]:
    """Checks that hold for every method preset, UEC-RL or not."""
    problems = []
    actor = config.actor_rollout_ref.actor
    grad_clip, clip_grad = actor.get("grad_clip", None), actor.get("optim", {}).get("clip_grad", None)
    if grad_clip is not None and clip_grad is not None and float(grad_clip) != float(clip_grad):
        problems.append(
            f"actor_rollout_ref.actor.grad_clip={grad_clip}: verl 0.9.1's FSDP engine never reads this key; the "
            f"gradient is clipped at actor_rollout_ref.actor.optim.clip_grad={clip_grad}. Set optim.clip_grad "
            "instead (and leave grad_clip at its default)"
        )
    return problems


def _micro_batch_problems(n0: int, config) -> list[str]:
    """Each rank's share of an N0 update must split into whole micro-batches (verl asserts this mid-run)."""
    problems = []
    dp = data_parallel_size(config)
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
    ]
    for key, micro, dynamic, rows_per_rank in checks:
        if micro and not dynamic and rows_per_rank % int(micro) != 0:
            problems.append(
                f"{key}={micro}: each data-parallel rank gets {rows_per_rank} rows per UEC update (N0={n0}), "
                "which must be a multiple of the micro-batch size; "
                f"pick a divisor of {rows_per_rank} or enable dynamic batch size"
            )
    actor = _actor_micro_batch_problem(config)
    return problems + ([actor] if actor else [])


def _actor_micro_batch_problem(config) -> str | None:
    """A PPO mini-batch must split into whole micro-batches on each data-parallel rank (verl asserts this inside
    the actor worker, after Ray and the models have started)."""
    actor = config.actor_rollout_ref.actor
    micro = actor.get("ppo_micro_batch_size_per_gpu")
    if not micro or actor.get("use_dynamic_bsz", False):
        return None
    rows = int(actor.ppo_mini_batch_size) * int(config.actor_rollout_ref.rollout.n) // data_parallel_size(config)
    if rows % int(micro) == 0:
        return None
    return (
        f"actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu={micro}: a mini-batch gives each data-parallel "
        f"rank {rows} rows (actor.ppo_mini_batch_size x rollout.n / ranks), which must be a multiple of the "
        f"micro-batch size; pick a divisor of {rows}"
    )


def check_actor_micro_batch(config) -> None:
    """Every method, UEC-RL or not: the actor's micro-batch rule, checked before Ray starts."""
    problem = _actor_micro_batch_problem(config)
    if problem:
        raise ValueError(problem)


def load_and_validate(config) -> UECConfig:
    """Parse ``config.uec`` and raise one UECConfigError listing every problem."""
    mode = config.get("trainer", {}).get("v1", {}).get("trainer_mode")
    if config.get("uec") is None and mode == "uec":
        # verl's own config (python -m verl.trainer.main_ppo) has no uec section: without one the trainer would
        # quietly run verl's GRPO step
        raise UECConfigError(
            "trainer.v1.trainer_mode=uec but the configuration has no uec section: add +uec.enable=true (and the "
            "knobs you change, e.g. +uec.exploration.n=20), or launch with python -m uec_recipe.main_uec, whose "
            "configuration has it"
        )
    uec = UECConfig.from_mapping(config.get("uec"))
    problems = validate(uec, config) + validate_common(config)
    if problems:
        raise UECConfigError("invalid UEC-RL configuration:\n  - " + "\n  - ".join(problems))
    return uec
