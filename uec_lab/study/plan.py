"""The study's plan: which methods exist, how many seeds and steps each gets, and where the runs happen.

The study package imports in one direction: ``plan`` (this module) <- ``report`` <- ``run``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from uec_lab.machine import machine_description  # noqa: F401  (re-exported for report and run)


@dataclass(frozen=True)
class Method:
    label: str  # the row name in tables and figures
    preset: str  # algo=<preset> (uec_recipe/config/algo/)
    overrides: tuple[str, ...] = ()  # hydra overrides on top of the preset
    group: str = "main"  # main | ablation | plus: which table the method belongs to


METHODS: dict[str, Method] = {
    "grpo": Method("GRPO", "grpo"),
    # GRPO drawing as many samples per step as UEC-RL (task_algo/<task>_grpo_matched.yaml sets n; docs/baselines.md)
    "grpo_matched": Method("GRPO, matched generation", "grpo_matched"),
    # DAPO's soft overlong buffer on the demo's 16-token responses: config/task_algo/digit_sum_dapo.yaml
    "dapo": Method("DAPO", "dapo"),
    # KL-Cov's penalty |log pi - log pi_old| is zero on an update's first, on-policy mini-batch; with the study's
    # single mini-batch per update it would be GRPO exactly (measured: docs/results.md). It runs with two.
    "kl_cov": Method(
        "KL-Cov",
        "kl_cov",
        ("actor_rollout_ref.actor.ppo_mini_batch_size=16", "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=80"),
    ),
    "entropy_adv": Method("Entropy-Adv", "entropy_adv"),
    "uec": Method("UEC-RL", "uec"),
    # the released code's rules (|Â| > 1 for exploration retention and replay admission) and T' = T: controls
    "uec_release": Method("UEC-RL, release rules", "uec_release"),
    "uec_same_temp": Method("UEC-RL, T' = T", "uec_same_temp", (), "ablation"),
    "uec_no_exploration": Method("w/o exploration", "uec", ("uec.exploration.enable=false",), "ablation"),
    "uec_no_replay": Method("w/o replay", "uec", ("uec.replay.enable=false",), "ablation"),
    "uec_no_retention": Method("w/o selective retention", "uec", ("uec.retention.enable=false",), "ablation"),
    # beyond the paper (docs/algorithm.md, "Options"): both options, and each alone
    "uec_plus": Method("UEC-RL+ (pipelined, adaptive)", "uec_plus", (), "plus"),
    "uec_pipelined": Method("UEC-RL pipelined", "uec", ("uec.exploration.schedule=pipelined",), "plus"),
    "uec_adaptive": Method("UEC-RL adaptive budget", "uec", ("uec.exploration.budget=adaptive",), "plus"),
}
CORE = ("grpo", "grpo_matched", "uec", "uec_release")  # the methods the primary claims are about: the most seeds
QUICK_METHODS = ("grpo", "uec")
# The full study: the paper's comparisons (its methods and ablations). The options beyond the paper run on request
# (--methods uec_plus,uec_pipelined,uec_adaptive): their 6 runs take the study from about 3 to 4.3 hours (2 cores).
DEFAULT_METHODS = tuple(name for name, method in METHODS.items() if method.group != "plus")
DEFAULT_STEPS, QUICK_STEPS = 80, 30
EVAL = {"n": 16, "temperature": 1.0, "top_p": 1.0, "max_new_tokens": 96}  # sampling of the held-out evaluation
# the response budget of the evaluation per task: task/chain_sum.yaml and task/digit_sum.yaml's max_response_length
EVAL_MAX_NEW_TOKENS = {"chains": 96, "digits": 16}
SEED_BASE = 1000  # seed k of a study uses 1000 + k everywhere a seed is set


# ---- planning ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSpec:
    method: str
    seed: int  # 1-based seed index within the study
    steps: int

    @property
    def name(self) -> str:
        return f"{self.method}/seed{self.seed}"


def plan(methods: Sequence[str], seeds: int, other_seeds: int, steps: int) -> list[RunSpec]:
    """Seed-major order: every method's first seed before any second seed, so a partial study compares methods."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; known: {', '.join(METHODS)}")
    if seeds < 1 or other_seeds < 1 or steps < 1:
        raise ValueError("--seeds, --other-seeds and --steps must be >= 1")
    count = {m: seeds if m in CORE else other_seeds for m in methods}
    return [RunSpec(m, k, steps) for k in range(1, max(count.values()) + 1) for m in methods if k <= count[m]]
