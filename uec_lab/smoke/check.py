"""The smoke test's checks on what a short UEC training run wrote, one PASS/FAIL line each.

A run folder holds ``metrics.jsonl`` (verl's file logger), ``requests.jsonl`` (the agent loop's request log,
``UEC_AGENT_REQUEST_LOG``, one line per request as the rollout received it) and ``checkpoints/`` (verl's
``trainer.default_local_dir``). The checks:

* metrics        one metric line per training step;
* regular        every training prompt's requests came at the base temperature T and top_p, G per prompt group,
                 P groups per step;
* exploration    T' requests came in groups of G' samples, as many groups per step as the step found difficult
                 prompts (``uec/difficult_prompts``), with the same top_p; at least one such group;
* update         a policy update ran (``uec/update_ran``) with a finite ``actor/pg_loss``;
* replay         a replay update ran (``uec/replay_rows`` > 0) with a finite ``uec_replay/actor/pg_loss``;
* checkpoint     ``global_step_<last>/uec_state.pt`` was written, loads, and belongs to the last step.

``python -m uec_lab.smoke.check --run text=DIR --steps 3 --prompts 8 --n 4 --temperature 1.0 --top-p 0.99
--exploration-n 8 --exploration-temperature 1.2`` prints the lines and exits 1 if any check failed.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

METRICS_FILE = "metrics.jsonl"
REQUESTS_FILE = "requests.jsonl"
CHECKPOINT_DIR = "checkpoints"
# UEC-RL's per-step metrics (uec_recipe/trainer.py) and verl's actor-update metric.
DIFFICULT = "uec/difficult_prompts"
EXPLORATION_SAMPLES = "uec/exploration_samples"
UPDATE_RAN = "uec/update_ran"
UPDATE_LOSS = "actor/pg_loss"
REPLAY_ROWS = "uec/replay_rows"
REPLAY_LOSS = "uec_replay/actor/pg_loss"
TOLERANCE = 1e-6


@dataclass(frozen=True)
class Expected:
    """The settings the run was launched with (run_scripts/gpu/smoke.sh passes the values it set)."""

    steps: int  # training steps
    prompts: int  # P, data.train_batch_size
    n: int  # G, rollout.n
    temperature: float  # T
    top_p: float
    exploration_n: int  # G'
    exploration_temperature: float  # T'

    def __post_init__(self):
        for name in ("steps", "prompts", "n", "exploration_n"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if abs(self.temperature - self.exploration_temperature) < TOLERANCE:
            raise ValueError(
                "--temperature and --exploration-temperature are equal: regular and exploration requests could not "
                "be told apart"
            )


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str

    def line(self, label: str = "") -> str:
        prefix = f"[{label}] " if label else ""
        return f"{'PASS' if self.passed else 'FAIL'} {prefix}{self.name}: {self.detail}"


# ---- reading ------------------------------------------------------------------------------------------------------


def read_jsonl(path: Path) -> list[dict]:
    records = []
    with open(path) as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise ValueError(f"{path}:{number}: not JSON ({error})") from None
    return records


def read_metrics(path: Path) -> dict[int, dict]:
    """verl's file logger lines (``{"step": N, "data": {...}}``) merged per step."""
    steps: dict[int, dict] = {}
    for record in read_jsonl(path):
        steps.setdefault(int(record["step"]), {}).update(record.get("data", {}))
    return steps


def _close(a, b) -> bool:
    return a is not None and b is not None and abs(float(a) - float(b)) < TOLERANCE


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _per_step(counts: dict[int, int], steps: int) -> str:
    return "/".join(str(counts.get(step, 0)) for step in range(1, steps + 1))


# ---- the checks ---------------------------------------------------------------------------------------------------


def check_metrics(metrics: dict[int, dict], expected: Expected) -> Check:
    logged = sorted(step for step in metrics if step >= 1)
    wanted = list(range(1, expected.steps + 1))
    if logged != wanted:
        return Check("metrics", False, f"training steps logged {logged}, expected {wanted}")
    return Check("metrics", True, f"{len(logged)} training steps logged")


def _groups(requests: list[dict]) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = defaultdict(list)
    for request in requests:
        groups[str(request.get("uid"))].append(request)
    return groups


def _group_problems(groups: dict[str, list[dict]], size: int, temperature: float, top_p: float) -> list[str]:
    """What is wrong with request groups that should each be ``size`` samples at ``temperature`` / ``top_p``."""
    problems = []
    for uid, group in groups.items():
        sessions = sorted(r.get("session_id") for r in group if r.get("session_id") is not None)
        if len(group) != size or sessions != list(range(size)):
            problems.append(f"group {uid} has {len(group)} requests (sessions {sessions}), expected {size}")
        sent = sorted({r.get("temperature") for r in group}, key=str)
        if not all(_close(r.get("temperature"), temperature) for r in group):
            problems.append(f"group {uid} was sent at temperature {sent}, expected {temperature}")
        if not all(_close(r.get("top_p"), top_p) for r in group):
            problems.append(f"group {uid} was sent with top_p {sorted({r.get('top_p') for r in group}, key=str)}")
        if len({r.get("global_steps") for r in group}) != 1:
            problems.append(f"group {uid} spans steps {sorted({r.get('global_steps') for r in group}, key=str)}")
    return problems


def _summarise(problems: list[str], limit: int = 3) -> str:
    more = f" (+{len(problems) - limit} more)" if len(problems) > limit else ""
    return "; ".join(problems[:limit]) + more


def split_requests(requests: list[dict], expected: Expected) -> tuple[list[dict], list[dict], list[dict], list[dict]]:
    """(regular, exploration, other training, untagged) requests by the row temperature the trainer set."""
    regular, exploration, other, untagged = [], [], [], []
    for request in requests:
        row_temperature = request.get("row_temperature")
        if row_temperature is None:
            untagged.append(request)  # validation rows carry no uec_temperature
        elif _close(row_temperature, expected.temperature):
            regular.append(request)
        elif _close(row_temperature, expected.exploration_temperature):
            exploration.append(request)
        else:
            other.append(request)
    return regular, exploration, other, untagged


def check_regular_requests(requests: list[dict], expected: Expected) -> Check:
    regular, _, other, _ = split_requests(requests, expected)
    if not regular:
        return Check("regular requests", False, f"no request carried row temperature T={expected.temperature}")
    groups = _groups(regular)
    problems = _group_problems(groups, expected.n, expected.temperature, expected.top_p)
    if other:
        temps = sorted({r["row_temperature"] for r in other})
        problems.append(f"{len(other)} training requests at unexpected row temperatures {temps}")
    per_step = Counter(group[0].get("global_steps") for group in groups.values())
    for step in range(1, expected.steps + 1):
        if per_step.get(step, 0) != expected.prompts:
            problems.append(f"step {step} had {per_step.get(step, 0)} regular groups, expected P={expected.prompts}")
    detail = (
        f"{len(regular)} requests in {len(groups)} groups of G={expected.n} at T={expected.temperature} "
        f"top_p={expected.top_p} (groups per step {_per_step(per_step, expected.steps)})"
    )
    return Check("regular requests", not problems, _summarise(problems) if problems else detail)


def check_exploration_requests(requests: list[dict], metrics: dict[int, dict], expected: Expected) -> Check:
    _, exploration, _, _ = split_requests(requests, expected)
    name = "exploration requests"
    difficult = {step: int(metrics.get(step, {}).get(DIFFICULT, 0)) for step in range(1, expected.steps + 1)}
    if not exploration:
        return Check(
            name,
            False,
            f"no request carried row temperature T'={expected.exploration_temperature}; difficult prompts per step "
            f"{_per_step(difficult, expected.steps)} (without a difficult prompt nothing is explored)",
        )
    groups = _groups(exploration)
    problems = _group_problems(groups, expected.exploration_n, expected.exploration_temperature, expected.top_p)
    per_step = Counter(group[0].get("global_steps") for group in groups.values())
    for step in range(1, expected.steps + 1):
        if per_step.get(step, 0) != difficult[step]:
            problems.append(
                f"step {step} explored {per_step.get(step, 0)} groups but found {difficult[step]} difficult"
            )
        samples = metrics.get(step, {}).get(EXPLORATION_SAMPLES)
        if samples is not None and int(samples) != difficult[step] * expected.exploration_n:
            problems.append(f"step {step} logged {int(samples)} exploration samples, expected {difficult[step]}xG'")
    detail = (
        f"{len(exploration)} requests in {len(groups)} groups of G'={expected.exploration_n} at "
        f"T'={expected.exploration_temperature} top_p={expected.top_p}, one group per difficult prompt "
        f"(per step {_per_step(per_step, expected.steps)})"
    )
    return Check(name, not problems, _summarise(problems) if problems else detail)


def check_update(metrics: dict[int, dict]) -> Check:
    ran = {step: row for step, row in sorted(metrics.items()) if row.get(UPDATE_RAN) == 1}
    if not ran:
        return Check("update", False, f"no step logged {UPDATE_RAN}=1")
    bad = {step: row.get(UPDATE_LOSS) for step, row in ran.items() if not _finite(row.get(UPDATE_LOSS))}
    if bad:
        return Check("update", False, f"{UPDATE_LOSS} not finite at steps {bad}")
    losses = ", ".join(f"step {step} {row[UPDATE_LOSS]:.4g}" for step, row in ran.items())
    return Check("update", True, f"{len(ran)} policy updates, {UPDATE_LOSS}: {losses}")


def check_replay(metrics: dict[int, dict]) -> Check:
    replayed = {step: row for step, row in sorted(metrics.items()) if (row.get(REPLAY_ROWS) or 0) > 0}
    if not replayed:
        return Check("replay", False, f"no step logged {REPLAY_ROWS} > 0")
    bad = {step: row.get(REPLAY_LOSS) for step, row in replayed.items() if not _finite(row.get(REPLAY_LOSS))}
    if bad:
        return Check("replay", False, f"{REPLAY_LOSS} not finite at steps {bad}")
    losses = ", ".join(
        f"step {step} {int(row[REPLAY_ROWS])} rows {row[REPLAY_LOSS]:.4g}" for step, row in replayed.items()
    )
    return Check("replay", True, f"{len(replayed)} replay updates, {REPLAY_LOSS}: {losses}")


def check_checkpoint(checkpoint_dir: Path, expected: Expected) -> Check:
    from uec_recipe.checkpoint import STATE_FILE, read_state

    folder = checkpoint_dir / f"global_step_{expected.steps}"
    path = folder / STATE_FILE
    if not path.exists():
        found = sorted(str(p.relative_to(checkpoint_dir)) for p in checkpoint_dir.glob(f"global_step_*/{STATE_FILE}"))
        return Check("checkpoint", False, f"{path} was not written (found {found or 'none'})")
    try:
        state = read_state(path)
    except Exception as error:  # a torn or foreign file: report it as the failure it is
        return Check("checkpoint", False, f"{path} does not load: {error}")
    if state.get("global_steps") != expected.steps:
        return Check("checkpoint", False, f"{path} holds step {state.get('global_steps')}, expected {expected.steps}")
    tracker = checkpoint_dir / "latest_checkpointed_iteration.txt"
    latest = tracker.read_text().strip() if tracker.exists() else None
    if latest != str(expected.steps):
        return Check("checkpoint", False, f"{tracker} reads {latest!r}, expected {expected.steps}")
    buffers = state.get("buffers", {})
    rows = tuple(len(buffers.get(name, {}).get("records", [])) for name in ("batch_buffer", "replay_buffer"))
    return Check(
        "checkpoint", True, f"{path} ({rows[0]} batch-buffer rows, {rows[1]} replay rows), verl's tracker at {latest}"
    )


def check_run(run_dir, expected: Expected) -> list[Check]:
    """Every check on one run folder; missing files fail the checks that need them."""
    run_dir = Path(run_dir)
    checks = []
    metrics_path, requests_path = run_dir / METRICS_FILE, run_dir / REQUESTS_FILE
    metrics = read_metrics(metrics_path) if metrics_path.exists() else None
    requests = read_jsonl(requests_path) if requests_path.exists() else None
    if metrics is None:
        checks.append(Check("metrics", False, f"{metrics_path} was not written"))
    else:
        checks.append(check_metrics(metrics, expected))
    if requests is None:
        missing = f"{requests_path} was not written (is UEC_AGENT_REQUEST_LOG reaching the agent-loop workers?)"
        checks += [Check("regular requests", False, missing), Check("exploration requests", False, missing)]
    else:
        checks.append(check_regular_requests(requests, expected))
        checks.append(check_exploration_requests(requests, metrics or {}, expected))
    if metrics is None:
        checks += [Check(name, False, f"{metrics_path} was not written") for name in ("update", "replay")]
    else:
        checks += [check_update(metrics), check_replay(metrics)]
    checks.append(check_checkpoint(run_dir / CHECKPOINT_DIR, expected))
    return checks


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="append", required=True, metavar="LABEL=DIR", help="a run folder to check")
    parser.add_argument("--steps", type=int, required=True, nargs="+", help="training steps, one value or one per run")
    parser.add_argument("--prompts", type=int, required=True, help="P, data.train_batch_size")
    parser.add_argument("--n", type=int, required=True, help="G, actor_rollout_ref.rollout.n")
    parser.add_argument("--temperature", type=float, required=True, help="T, actor_rollout_ref.rollout.temperature")
    parser.add_argument("--top-p", type=float, required=True, help="actor_rollout_ref.rollout.top_p")
    parser.add_argument("--exploration-n", type=int, required=True, help="G', uec.exploration.n")
    parser.add_argument("--exploration-temperature", type=float, required=True, help="T', uec.exploration.temperature")
    args = parser.parse_args(argv)
    runs = []
    for spec in args.run:
        label, sep, folder = spec.partition("=")
        if not sep or not label or not folder:
            parser.error(f"--run {spec!r}: expected LABEL=DIR, e.g. --run text=outputs/gpu_smoke/text")
        runs.append((label, Path(folder)))
    if len(args.steps) not in (1, len(runs)):
        parser.error(f"--steps: give one value or one per --run ({len(runs)}), got {len(args.steps)}")
    steps = args.steps * len(runs) if len(args.steps) == 1 else args.steps
    failed = 0
    for (label, folder), run_steps in zip(runs, steps):
        try:
            expected = Expected(
                steps=run_steps,
                prompts=args.prompts,
                n=args.n,
                temperature=args.temperature,
                top_p=args.top_p,
                exploration_n=args.exploration_n,
                exploration_temperature=args.exploration_temperature,
            )
        except ValueError as error:
            parser.error(str(error))
        for check in check_run(folder, expected):
            print(check.line(label), flush=True)
            failed += not check.passed
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
