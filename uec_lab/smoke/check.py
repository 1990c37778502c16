"""The smoke test's checks on what a short UEC training run wrote, one PASS/FAIL line each.

A run folder holds ``metrics.jsonl`` (verl's file logger), ``requests.jsonl`` (the agent loop's request log,
``UEC_AGENT_REQUEST_LOG``: one line per request as the agent loop sends it, with the row it belongs to),
``server/`` (the vLLM server's own request log, ``UEC_SERVER_LOG``, uec_recipe/rollout/server_log.py: one line per
request as ``vLLMHttpServer.generate`` received it) and ``checkpoints/`` (verl's ``trainer.default_local_dir``).
The checks:

* metrics        one metric line per training step;
* regular        every training prompt's requests left the agent loop at the base temperature T and top_p, G per
                 prompt group, P groups per step;
* exploration    T' requests left in groups of G' samples, as many groups per step as the step found difficult
                 prompts (``uec/difficult_prompts``), with the same top_p; at least one such group;
* server         what vLLM's server received matches what the agent loop sent: the same number of requests at
                 each (temperature, top_p), T requests in groups of G and T' requests in groups of G' of one prompt
                 (prompt ids and picture) each, as many groups of each as the agent loop sent;
* images         (runs with pictures) every request reached the server with its picture and the run's
                 ``data.mm_processor_kwargs``;
* validation     (validated runs) the recipe's validation metrics (``val-passk/<source>/...``) were logged at the
                 validation temperature, for as many requests as the agent loop sent at it;
* update         a policy update ran (``uec/update_ran``) with a finite ``actor/pg_loss``;
* replay         a replay update ran (``uec/replay_rows`` > 0) with a finite ``uec_replay/actor/pg_loss``;
* checkpoint     ``global_step_<last>/uec_state.pt`` was written, loads, and belongs to the last step.

``python -m uec_lab.smoke.check --run text=DIR --run vlm=DIR --steps 3 2 --prompts 8 --n 4 --temperature 1.0
--top-p 0.99 --exploration-n 8 --exploration-temperature 1.2 --validate text --val-temperature 0.5 --images vlm
--mm-processor-kwargs '{"min_pixels": 3136, "max_pixels": 12544}'`` prints the lines and exits 1 if any failed.
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
SERVER_DIR = "server"
CHECKPOINT_DIR = "checkpoints"
# UEC-RL's per-step metrics (uec_recipe/trainer.py) and verl's actor-update metric.
DIFFICULT = "uec/difficult_prompts"
EXPLORATION_SAMPLES = "uec/exploration_samples"
UPDATE_RAN = "uec/update_ran"
UPDATE_LOSS = "actor/pg_loss"
REPLAY_ROWS = "uec/replay_rows"
REPLAY_LOSS = "uec_replay/actor/pg_loss"
VALIDATION_PREFIX = "val-passk/"  # uec_recipe/eval/passk.py, logged by the recipe's validation hook
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
    validation_temperature: float | None = None  # set for a run that validates (val_kwargs.temperature)
    images: bool = False  # every request carries a picture (the VLM run)
    mm_processor_kwargs: dict | None = None  # what an image request must reach the server with

    def __post_init__(self):
        for name in ("steps", "prompts", "n", "exploration_n"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if abs(self.temperature - self.exploration_temperature) < TOLERANCE:
            raise ValueError(
                "--temperature and --exploration-temperature are equal: regular and exploration requests could not "
                "be told apart"
            )
        if self.validation_temperature is not None and any(
            abs(self.validation_temperature - t) < TOLERANCE for t in (self.temperature, self.exploration_temperature)
        ):
            raise ValueError(
                "--val-temperature equals --temperature or --exploration-temperature: validation requests could not "
                "be told apart on the server"
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


def read_server_log(folder: Path) -> list[dict] | None:
    """Every server process's lines (``server-<host>-<pid>.jsonl``), or None when no server wrote any file."""
    paths = sorted(folder.glob("server-*.jsonl")) if folder.is_dir() else []
    if not paths:
        return None
    return [record for path in paths for record in read_jsonl(path)]


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


def _key(value) -> float | None:
    """A temperature or top_p as a comparable key (the agent loop rounds to 6 digits; so does this)."""
    return None if value is None else round(float(value), 6)


def _sampling_counts(records: list[dict]) -> Counter:
    return Counter((_key(r.get("temperature")), _key(r.get("top_p"))) for r in records)


def _server_groups(records: list[dict], size: int) -> tuple[int, list[str]]:
    """(groups, problems) of server requests of one temperature: the samples of one prompt share its prompt ids and
    picture, so the requests per (prompt, picture) must be a whole number of groups of ``size``."""
    per_prompt = Counter((r.get("prompt_digest"), r.get("image_digest")) for r in records)
    problems = [
        f"a prompt got {count} requests at T={_key(records[0].get('temperature'))}, not a multiple of {size}"
        for count in per_prompt.values()
        if count % size
    ]
    return sum(count // size for count in per_prompt.values()), problems


def check_server_requests(server: list[dict], requests: list[dict], expected: Expected) -> Check:
    name = "server requests"
    problems = []
    sent, received = _sampling_counts(requests), _sampling_counts(server)
    for params in sorted(set(sent) | set(received), key=str):
        if sent.get(params, 0) != received.get(params, 0):
            problems.append(
                f"the agent loop sent {sent.get(params, 0)} requests at (temperature, top_p)={params}, "
                f"the server received {received.get(params, 0)}"
            )
    regular, exploration, _, _ = split_requests(requests, expected)
    counts = {}
    for label, temperature, size, sent_groups in (
        ("T", expected.temperature, expected.n, len(_groups(regular))),
        ("T'", expected.exploration_temperature, expected.exploration_n, len(_groups(exploration))),
    ):
        at = [r for r in server if _close(r.get("temperature"), temperature)]
        groups, group_problems = _server_groups(at, size) if at else (0, [])
        problems += group_problems
        if groups != sent_groups:
            problems.append(
                f"the server received {groups} groups at {label}={temperature}, the agent loop sent {sent_groups}"
            )
        counts[label] = (len(at), groups)
    if not server:
        problems.append("no request reached the server")
    (regular_count, regular_groups), (explore_count, explore_groups) = counts["T"], counts["T'"]
    detail = (
        f"{len(server)} requests as the agent loop sent them; T={expected.temperature}: {regular_count} in "
        f"{regular_groups} groups of G={expected.n}, T'={expected.exploration_temperature}: {explore_count} in "
        f"{explore_groups} groups of G'={expected.exploration_n}"
    )
    return Check(name, not problems, _summarise(problems) if problems else detail)


def check_images(server: list[dict], expected: Expected) -> Check:
    name = "images"
    without = [r for r in server if not r.get("images")]
    problems = []
    if not server:
        problems.append("no request reached the server")
    if without:
        problems.append(f"{len(without)} of {len(server)} requests reached the server without a picture")
    if expected.mm_processor_kwargs is not None:
        wanted = expected.mm_processor_kwargs
        wrong = [r.get("mm_processor_kwargs") for r in server if r.get("mm_processor_kwargs") != wanted]
        if wrong:
            problems.append(
                f"{len(wrong)} requests reached the server with mm_processor_kwargs {wrong[0]}, "
                f"expected {expected.mm_processor_kwargs}"
            )
    pictures = len({r.get("image_digest") for r in server})
    kwargs = "" if expected.mm_processor_kwargs is None else f", mm_processor_kwargs {expected.mm_processor_kwargs}"
    detail = f"all {len(server)} requests reached the server with their picture ({pictures} distinct){kwargs}"
    return Check(name, not problems, _summarise(problems) if problems else detail)


def check_validation(metrics: dict[int, dict], requests: list[dict], expected: Expected) -> Check:
    name = "validation"
    temperature = expected.validation_temperature
    logged = {
        (step, key[len(VALIDATION_PREFIX) :].rpartition("/")[0]): row
        for step, row in metrics.items()
        for key in row
        if key.startswith(VALIDATION_PREFIX) and key.endswith("/temperature")
    }
    _, _, _, untagged = split_requests(requests, expected)
    problems = []
    if not logged:
        problems.append(f"no step logged {VALIDATION_PREFIX}<source>/temperature (did validation run?)")
    expected_requests = 0
    for (step, source), row in logged.items():
        base = f"{VALIDATION_PREFIX}{source}"
        if not _close(row.get(f"{base}/temperature"), temperature):
            problems.append(f"step {step} validated {source} at temperature {row.get(f'{base}/temperature')}")
        expected_requests += int(row.get(f"{base}/num_problems") or 0) * int(row.get(f"{base}/n") or 0)
    off = sorted({r.get("temperature") for r in untagged if not _close(r.get("temperature"), temperature)}, key=str)
    if off:
        problems.append(f"validation requests were sent at temperature {off}, expected {temperature}")
    if logged and len(untagged) != expected_requests:
        problems.append(
            f"the agent loop sent {len(untagged)} validation requests, the metrics count {expected_requests}"
        )
    steps = sorted({step for step, _ in logged})
    detail = (
        f"{len(untagged)} requests at T={temperature} (validation at steps {steps}, "
        f"{len({source for _, source in logged})} data source(s))"
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


def check_names(expected: Expected) -> list[str]:
    """The checks ``check_run`` makes for a run, in order."""
    names = ["metrics", "regular requests", "exploration requests", "server requests"]
    names += ["images"] * expected.images + ["validation"] * (expected.validation_temperature is not None)
    return names + ["update", "replay", "checkpoint"]


def check_run(run_dir, expected: Expected) -> list[Check]:
    """Every check on one run folder; missing files fail the checks that need them."""
    run_dir = Path(run_dir)
    checks = []
    metrics_path, requests_path, server_dir = run_dir / METRICS_FILE, run_dir / REQUESTS_FILE, run_dir / SERVER_DIR
    metrics = read_metrics(metrics_path) if metrics_path.exists() else None
    requests = read_jsonl(requests_path) if requests_path.exists() else None
    server = read_server_log(server_dir)
    if metrics is None:
        checks.append(Check("metrics", False, f"{metrics_path} was not written"))
    else:
        checks.append(check_metrics(metrics, expected))
    missing_requests = f"{requests_path} was not written (is UEC_AGENT_REQUEST_LOG reaching the agent-loop workers?)"
    missing_server = (
        f"{server_dir}/server-*.jsonl was not written (is UEC_SERVER_LOG reaching the rollout servers, and does "
        "uec_recipe/plugin.py install uec_recipe.rollout.server_log?)"
    )
    if requests is None:
        checks += [Check(name, False, missing_requests) for name in ("regular requests", "exploration requests")]
    else:
        checks.append(check_regular_requests(requests, expected))
        checks.append(check_exploration_requests(requests, metrics or {}, expected))
    if server is None or requests is None:
        checks.append(Check("server requests", False, missing_server if server is None else missing_requests))
    else:
        checks.append(check_server_requests(server, requests, expected))
    if expected.images:
        checks.append(check_images(server, expected) if server is not None else Check("images", False, missing_server))
    if expected.validation_temperature is not None:
        if metrics is None or requests is None:
            missing = f"{metrics_path} was not written" if metrics is None else missing_requests
            checks.append(Check("validation", False, missing))
        else:
            checks.append(check_validation(metrics, requests, expected))
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
    parser.add_argument("--validate", action="append", default=[], metavar="LABEL", help="a run that validated")
    parser.add_argument("--val-temperature", type=float, help="actor_rollout_ref.rollout.val_kwargs.temperature")
    parser.add_argument("--images", action="append", default=[], metavar="LABEL", help="a run with pictures")
    parser.add_argument(
        "--mm-processor-kwargs", type=json.loads, metavar="JSON", help="data.mm_processor_kwargs of the --images runs"
    )
    args = parser.parse_args(argv)
    runs = []
    for spec in args.run:
        label, sep, folder = spec.partition("=")
        if not sep or not label or not folder:
            parser.error(f"--run {spec!r}: expected LABEL=DIR, e.g. --run text=outputs/gpu_smoke/text")
        runs.append((label, Path(folder)))
    labels = [label for label, _ in runs]
    for option, named in (("--validate", args.validate), ("--images", args.images)):
        unknown = sorted(set(named) - set(labels))
        if unknown:
            parser.error(f"{option} {unknown}: not a --run label ({labels})")
    if args.validate and args.val_temperature is None:
        parser.error("--validate needs --val-temperature")
    if args.mm_processor_kwargs is not None and not isinstance(args.mm_processor_kwargs, dict):
        parser.error(f"--mm-processor-kwargs must be a JSON object, got {args.mm_processor_kwargs!r}")
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
                validation_temperature=args.val_temperature if label in args.validate else None,
                images=label in args.images,
                mm_processor_kwargs=args.mm_processor_kwargs if label in args.images else None,
            )
        except ValueError as error:
            parser.error(str(error))
        for check in check_run(folder, expected):
            print(check.line(label), flush=True)
            failed += not check.passed
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
