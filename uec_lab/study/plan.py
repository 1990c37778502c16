"""The study's plan: which methods exist, how many seeds and steps each gets, where the runs happen, and the
pre-registered plan of the second study (docs/study-plan.md) that its report is held to.

The study package imports in one direction: ``plan`` (this module) <- ``report``, ``report_v2`` <- ``run``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from uec_lab.demo.ladder import BANDS, BETWEEN
from uec_lab.machine import machine_description  # noqa: F401  (re-exported for report and run)


@dataclass(frozen=True)
class Method:
    label: str  # the row name in tables and figures
    preset: str  # algo=<preset> (uec_recipe/config/algo/)
    overrides: tuple[str, ...] = ()  # hydra overrides on top of the preset
    group: str = "main"  # main | ablation | plus | control: which table the method belongs to


METHODS: dict[str, Method] = {
    "grpo": Method("GRPO", "grpo"),
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
    "uec_no_exploration": Method("w/o exploration", "uec", ("uec.exploration.enable=false",), "ablation"),
    "uec_no_replay": Method("w/o replay", "uec", ("uec.replay.enable=false",), "ablation"),
    "uec_no_retention": Method("w/o selective retention", "uec", ("uec.retention.enable=false",), "ablation"),
    # beyond the paper (docs/algorithm.md, "Options"): both options, and each alone
    "uec_plus": Method("UEC-RL+ (pipelined, adaptive)", "uec_plus", (), "plus"),
    "uec_pipelined": Method("UEC-RL pipelined", "uec", ("uec.exploration.schedule=pipelined",), "plus"),
    "uec_adaptive": Method("UEC-RL adaptive budget", "uec", ("uec.exploration.budget=adaptive",), "plus"),
    # controls a skeptic asks for: GRPO drawing as many samples per step as UEC-RL (task_algo/<task>_grpo_matched.yaml
    # sets n; docs/baselines.md), the released code's rules (|Â| > 1 for exploration retention and replay admission),
    # T' = T. They run when the plan lists them (run --plan) or on request (--methods)
    "grpo_matched": Method("GRPO, matched generation", "grpo_matched", (), "control"),
    "uec_release": Method("UEC-RL, release rules", "uec_release", (), "control"),
    "uec_same_temp": Method("UEC-RL, T′ = T", "uec_same_temp", (), "control"),
}
CORE = ("grpo", "grpo_matched", "uec", "uec_release")  # the methods the primary claims are about: the most seeds
QUICK_METHODS = ("grpo", "uec")
# The full study: the paper's comparisons (its methods and ablations). The options beyond the paper run on request
# (--methods uec_plus,uec_pipelined,uec_adaptive): their 6 runs take the study from about 3 to 4.3 hours (2 cores);
# so do the controls.
DEFAULT_METHODS = tuple(name for name, method in METHODS.items() if method.group in ("main", "ablation"))
DEFAULT_STEPS, QUICK_STEPS = 80, 30
EVAL = {"n": 16, "temperature": 1.0, "top_p": 1.0, "max_new_tokens": 96}  # sampling of the held-out evaluation
# the response budget of the evaluation per task: task/chain_sum.yaml and task/digit_sum.yaml's max_response_length
EVAL_MAX_NEW_TOKENS = {"chains": 96, "digits": 16}
SEED_BASE = 1000  # seed k of a study uses 1000 + k everywhere a seed is set
# Settings worth quoting beside the results (with every uec.* override the study passed).
QUOTED = (
    "data.train_batch_size",
    "actor_rollout_ref.rollout.n",
    "actor_rollout_ref.actor.optim.lr",
    "actor_rollout_ref.actor.ppo_mini_batch_size",
    "actor_rollout_ref.actor.kl_loss_coef",
    "actor_rollout_ref.actor.use_kl_loss",
    "actor_rollout_ref.rollout.top_p",
    "data.max_response_length",
)


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
    return planned_runs({m: seeds if m in CORE else other_seeds for m in methods}, steps)


def planned_runs(count: Mapping[str, int], steps: int) -> list[RunSpec]:
    """The runs of ``count`` (method -> seeds), seed-major: every method's seed k before any method's seed k + 1."""
    return [RunSpec(m, k, steps) for k in range(1, max(count.values()) + 1) for m in count if k <= count[m]]


# ---- the pre-registered plan (docs/study-plan.md) -----------------------------------------------------------------
#
# The second study is held to a plan written before its runs (docs/study-plan.md, "Analysis"): docs/study-plan.md
# holds exactly one fenced block opened with ```yaml study-plan:
#
#   task: chains                  # the study's task (study.json "task")
#   steps: 100                    # training steps of every run
#   analysis: paired              # paired: seed k against seed k (every method runs the same seed settings); welch
#   alpha: 0.05                   # each primary endpoint at 1 - alpha; the secondary family Holm-corrected at alpha
#   seeds: {grpo: 5, uec: 5, ...} # seeds 1..n of each method, fixed in advance
#   primary:                      # endpoints, each its own claim
#     - {id: P1, kind: accuracy, method: uec, reference: grpo, band: hard, direction: positive}
#   secondary:                    # one family, Holm's correction over it
#     - {id: S1, kind: pass_at_k, k: 16, method: uec, reference: grpo, band: hard, direction: positive}
#
# Endpoint kinds, each a per-seed value compared as method - reference:
#   accuracy        mean over the band's levels of avg@n (the sampled evaluation, eval/)
#   pass_at_k       mean over the band's levels of pass@k (eval/); needs k
#   greedy          mean over the band's levels of the greedy accuracy (eval_greedy/)
#   entropy_change  a per-step metric's mean over the run's last W steps minus its mean over its first W steps,
#                   W = max(1, steps // 10) (steps of the plan); needs metric, one the compact records keep

PLAN_BLOCK = "yaml study-plan"  # the fence's info string: ```yaml study-plan
ANALYSES = ("paired", "welch")
DIRECTIONS = ("positive", "negative")
ENDPOINT_KINDS = {  # kind -> the fields it needs beyond id, kind, method, reference, direction
    "accuracy": ("band",),
    "pass_at_k": ("band", "k"),
    "greedy": ("band",),
    "entropy_change": ("metric",),
}
PLAN_BANDS = (*BANDS, BETWEEN)
TASKS = tuple(EVAL_MAX_NEW_TOKENS)
# The per-step metrics a compact record of a run keeps (``python -m uec_lab.study record``): exact keys, and
# prefixes ending in "/". The report of the second study reads nothing else, so it runs from the records alone.
RECORDED_METRICS = (
    "entropy/",
    "uec/update_ran",
    "uec/replay_rows",
    "uec/replay_negative_share",
    "uec/exploration_group_successes/",
    "uec/regular_samples",  # with uec/exploration_samples: the samples a step, for matched-generation GRPO (match.py)
    "uec/exploration_samples",
    "timing_s/step",
    "timing_s/gen",
    "timing_s/gen_explore",
    "tokens/generated",
    "tokens/trained",
    "critic/score/mean",
)


def is_recorded(metric: str) -> bool:
    return any(metric == kept or (kept.endswith("/") and metric.startswith(kept)) for kept in RECORDED_METRICS)


class PlanError(ValueError):
    """A study plan that cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class Endpoint:
    id: str
    kind: str
    method: str
    reference: str
    direction: str
    family: str  # primary | secondary
    band: str | None = None
    k: int | None = None
    metric: str | None = None

    def quantity(self) -> str:
        """What is compared, in words."""
        if self.kind == "accuracy":
            return f"sampled accuracy (avg@n) on the {self.band} levels"
        if self.kind == "pass_at_k":
            return f"pass@{self.k} on the {self.band} levels"
        if self.kind == "greedy":
            return f"greedy accuracy on the {self.band} levels"
        return f"the change of {self.metric} from the first to the last steps"

    def claim(self) -> str:
        """The claim in words, with the methods' labels."""
        more = "higher" if self.direction == "positive" else "lower"
        method = METHODS[self.method].label
        reference = METHODS[self.reference].label
        return f"{method} − {reference}: {self.quantity()} is {more} under {method}"


@dataclass(frozen=True)
class StudyPlan:
    task: str
    steps: int
    analysis: str
    alpha: float
    seeds: dict[str, int]  # method -> seeds 1..n, in the plan's order
    primary: tuple[Endpoint, ...]
    secondary: tuple[Endpoint, ...] = ()
    source: str = "study plan"

    @property
    def window(self) -> int:
        """W of the entropy_change endpoints: the first and last W steps of a run."""
        return max(1, self.steps // 10)

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        return (*self.primary, *self.secondary)


def plan_block(text: str, source: str = "study plan") -> str:
    """The content of the one fenced block opened with ```yaml study-plan."""
    opening = re.compile(r"^(`{3,}|~{3,})[ \t]*" + re.escape(PLAN_BLOCK) + r"[ \t]*$")
    lines = text.splitlines()
    blocks = []
    index = 0
    while index < len(lines):
        match = opening.match(lines[index].strip())
        if not match:
            index += 1
            continue
        fence = match.group(1)
        end = next((j for j in range(index + 1, len(lines)) if lines[j].strip() == fence), None)
        if end is None:
            raise PlanError(f"{source}: the ```{PLAN_BLOCK} block opened on line {index + 1} is never closed")
        blocks.append((index + 1, "\n".join(lines[index + 1 : end])))
        index = end + 1
    if len(blocks) != 1:
        where = f" (lines {', '.join(str(line) for line, _ in blocks)})" if blocks else ""
        raise PlanError(f"{source}: expected exactly one ```{PLAN_BLOCK} block, found {len(blocks)}{where}")
    return blocks[0][1]


_TOP_FIELDS = ("task", "steps", "analysis", "alpha", "seeds", "primary", "secondary")
_ENDPOINT_FIELDS = ("id", "kind", "method", "reference", "direction")


def _positive_int(value, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PlanError(f"{where} must be a whole number >= 1, got {value!r}")
    return value


def _text(value, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise PlanError(f"{where} must be a non-empty string, got {value!r}")
    return value


def _choice(value, choices: Sequence[str], where: str) -> str:
    if value not in choices:
        raise PlanError(f"{where} must be one of {', '.join(choices)}; got {value!r}")
    return value


def _endpoint(entry, family: str, position: int, seeds: Mapping[str, int], source: str) -> Endpoint:
    where = f"{source}: {family}[{position}]"
    if not isinstance(entry, dict):
        raise PlanError(f"{where} must be a mapping {{id: ..., kind: ..., ...}}, got {entry!r}")
    if isinstance(entry.get("id"), str):
        where += f" ({entry['id']})"
    for name in _ENDPOINT_FIELDS:
        if name not in entry:
            raise PlanError(f"{where}: field '{name}' is required")
    kind = _choice(entry["kind"], tuple(ENDPOINT_KINDS), f"{where}: 'kind'")
    needed = ENDPOINT_KINDS[kind]
    for name in needed:
        if name not in entry:
            raise PlanError(f"{where}: field '{name}' is required for kind {kind}")
    for name in entry:
        if name not in _ENDPOINT_FIELDS and name not in needed:
            applies = [k for k, fields in ENDPOINT_KINDS.items() if name in fields]
            why = f"applies to kind {' and '.join(applies)} only" if applies else "is not a field of an endpoint"
            raise PlanError(f"{where}: field '{name}' {why}")
    for name in ("method", "reference"):
        method = _text(entry[name], f"{where}: '{name}'")
        if method not in seeds:
            raise PlanError(f"{where}: '{name}' {method!r} is not among the plan's seeds ({', '.join(seeds)})")
    if entry["method"] == entry["reference"]:
        raise PlanError(f"{where}: 'method' and 'reference' are both {entry['method']!r}")
    metric = None
    if kind == "entropy_change":
        metric = _text(entry["metric"], f"{where}: 'metric'")
        if not is_recorded(metric):
            raise PlanError(
                f"{where}: 'metric' {metric!r} is not kept in a run's compact record (RECORDED_METRICS: "
                f"{', '.join(RECORDED_METRICS)})"
            )
    return Endpoint(
        id=_text(entry["id"], f"{where}: 'id'"),
        kind=kind,
        method=entry["method"],
        reference=entry["reference"],
        direction=_choice(entry["direction"], DIRECTIONS, f"{where}: 'direction'"),
        family=family,
        band=_choice(entry["band"], PLAN_BANDS, f"{where}: 'band'") if "band" in needed else None,
        k=_positive_int(entry["k"], f"{where}: 'k'") if "k" in needed else None,
        metric=metric,
    )


def parse_plan(text: str, source: str = "study plan") -> StudyPlan:
    """The plan in the ```yaml study-plan block of ``text``; a PlanError names ``source`` and the field at fault."""
    import yaml  # PyYAML comes with hydra (omegaconf)

    block = plan_block(text, source)
    try:
        data = yaml.safe_load(block)
    except yaml.YAMLError as error:
        raise PlanError(f"{source}: the {PLAN_BLOCK} block is not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise PlanError(f"{source}: the {PLAN_BLOCK} block must be a mapping of {', '.join(_TOP_FIELDS)}")
    unknown = [name for name in data if name not in _TOP_FIELDS]
    if unknown:
        raise PlanError(f"{source}: unknown field(s) {', '.join(map(repr, unknown))}; known: {', '.join(_TOP_FIELDS)}")
    for name in ("task", "steps", "analysis", "alpha", "seeds", "primary"):
        if name not in data:
            raise PlanError(f"{source}: field '{name}' is required")
    task = _choice(data["task"], TASKS, f"{source}: 'task'")
    steps = _positive_int(data["steps"], f"{source}: 'steps'")
    analysis = _choice(data["analysis"], ANALYSES, f"{source}: 'analysis'")
    alpha = data["alpha"]
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise PlanError(f"{source}: 'alpha' must be a number in (0, 1), got {alpha!r}")
    if not isinstance(data["seeds"], dict) or not data["seeds"]:
        raise PlanError(f"{source}: 'seeds' must be a mapping method -> number of seeds, got {data['seeds']!r}")
    seeds = {}
    for method, count in data["seeds"].items():
        if method not in METHODS:
            raise PlanError(f"{source}: 'seeds' names unknown method {method!r}; known: {', '.join(METHODS)}")
        seeds[method] = _positive_int(count, f"{source}: 'seeds.{method}'")
    families = {}
    for family in ("primary", "secondary"):
        entries = data.get(family) or []
        if not isinstance(entries, list):
            raise PlanError(f"{source}: '{family}' must be a list of endpoints, got {entries!r}")
        families[family] = tuple(_endpoint(e, family, i, seeds, source) for i, e in enumerate(entries))
    if not families["primary"]:
        raise PlanError(f"{source}: 'primary' must list at least one endpoint")
    ids = [e.id for e in (*families["primary"], *families["secondary"])]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise PlanError(f"{source}: endpoint id(s) {', '.join(repeated)} used more than once")
    return StudyPlan(task, steps, analysis, float(alpha), seeds, families["primary"], families["secondary"], source)


def read_plan(path: str | Path) -> StudyPlan:
    path = Path(path)
    if not path.is_file():
        raise PlanError(f"no study plan at {path}: write it (one ```{PLAN_BLOCK} block) before the runs")
    return parse_plan(path.read_text(), str(path))


def _seed_list(seeds: Sequence[int]) -> str:
    return ("seed " if len(seeds) == 1 else "seeds ") + ", ".join(map(str, sorted(seeds)))


def plan_deviations(
    plan: StudyPlan, finished: Mapping[str, Mapping[int, int | None]], task: str | None = None
) -> list[str]:
    """Where the finished runs differ from the plan, one line each: ``finished`` maps method -> {seed: steps}
    (None: not recorded). Missing runs, runs the plan does not list, runs of other steps, another task. An empty
    list: the runs are the plan's."""
    lines = []
    if task is not None and task != plan.task:
        lines.append(f"task: the runs are on {task!r}, the plan is for {plan.task!r}")
    for method, count in plan.seeds.items():
        done = finished.get(method, {})
        missing = [k for k in range(1, count + 1) if k not in done]
        if missing:
            lines.append(f"missing: {method} {_seed_list(missing)} (planned {count}, finished {count - len(missing)})")
        extra = [k for k in done if not 1 <= k <= count]
        if extra:
            lines.append(f"extra: {method} {_seed_list(extra)} (the plan has seeds 1 to {count})")
    for method, done in finished.items():
        if method not in plan.seeds and done:
            lines.append(f"extra: {method} {_seed_list(list(done))} (not in the plan)")
    for method, done in finished.items():
        for seed in sorted(done):
            if done[seed] != plan.steps:
                ran = "an unrecorded number of" if done[seed] is None else str(done[seed])
                lines.append(f"other steps: {method} seed {seed} ran {ran} steps (planned {plan.steps})")
    return lines
