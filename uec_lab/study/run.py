"""The CPU reproduction study: every method, several seeds, the same trainer and data; evaluated and reported.

    python -m uec_lab.study run    --out DIR [--quick] [--seeds N] [--other-seeds N] [--steps N] [--methods a,b]
    python -m uec_lab.study report --out DIR [--plan docs/study-plan.md] [--csv DIR]
    python -m uec_lab.study record --out DIR --to RECORDS

``run_scripts/reproduce_cpu.sh`` sets up the environment and calls both. Each training run is the real verl
trainer (``python -m uec_recipe.main_uec``) with the config groups of the CPU backend, the demo task and the study
(``STUDY_GROUPS``) plus its method preset; it saves the final policy, which ``uec_recipe.eval.sample`` then samples
n times per held-out problem, one benchmark per difficulty level of the demo's ladder. A run whose ``done.json``
exists is skipped, so an interrupted study resumes where it stopped. ``report`` builds the tables with
``uec_recipe.eval.tables``, the curves with ``uec_recipe.eval.curves`` and writes ``DIR/report.md``
(docs/results.md reads one such report) for the first task (digits); a study of task v2 (chains) is reported
against its pre-registered plan by ``uec_lab.study.report_v2``, which also reads the compact records ``record``
copies out of a study folder.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

from uec_lab.study.plan import (
    CORE,
    DEFAULT_METHODS,
    DEFAULT_STEPS,
    EVAL,
    EVAL_MAX_NEW_TOKENS,
    METHODS,
    QUICK_METHODS,
    QUICK_STEPS,
    SEED_BASE,
    RunSpec,
    machine_description,
    plan,
    planned_runs,
    read_plan,
)

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "run_scripts"


# ---- the study's configuration -----------------------------------------------------------------------------

# Every run composes these config groups (uec_recipe/config/): the CPU backend, the task and the study's sizes
# (setting/study_v2.yaml on task v2, setting/study.yaml on the first task), then its method preset and the run's own
# settings (train_command).
TASK_GROUPS = {"chains": "chain_sum", "digits": "digit_sum"}  # --task: task v2 (the default) or the first task
SETTING_GROUPS = {"chains": "study_v2", "digits": "study"}
DEFAULT_TASK = "chains"


def study_groups(task: str = DEFAULT_TASK) -> tuple[str, ...]:
    if task not in TASK_GROUPS:
        raise ValueError(f"unknown task {task!r}; known: {', '.join(TASK_GROUPS)}")
    return ("platform=cpu", f"task={TASK_GROUPS[task]}", f"setting={SETTING_GROUPS[task]}")


STUDY_GROUPS = study_groups()


def effective_settings(overrides: Sequence[str]) -> list[str]:
    """``key=value`` for every setting the study's configuration (algo=uec plus ``overrides``) changes from the
    recipe's defaults (the paper's): what report.md quotes, and what finished runs must share to be reused (an
    edit of a group file changes it even when the group selections stay the same)."""
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    with initialize_config_module(config_module="uec_recipe.config", version_base=None):
        plain = OmegaConf.to_container(compose(config_name="uec_trainer"), resolve=True)
        study = OmegaConf.to_container(compose(config_name="uec_trainer", overrides=list(overrides)), resolve=True)

    def leaves(tree, prefix=""):
        if isinstance(tree, dict):
            for key, value in tree.items():
                yield from leaves(value, f"{prefix}{key}.")
        else:
            yield prefix[:-1], tree

    defaults = dict(leaves(plain))
    return [f"{key}={value}" for key, value in leaves(study) if defaults.get(key, object()) != value]


@dataclass
class Demo:
    model: Path
    train: Path
    test: Path
    eval: Path
    report: Path

    @classmethod
    def from_env(cls) -> "Demo":
        paths = {key: os.environ.get(f"DEMO_{key.upper()}") for key in ("model", "train", "test", "report")}
        missing = [f"DEMO_{k.upper()}" for k, v in paths.items() if not v]
        if missing:
            raise SystemExit(
                f"error: {', '.join(missing)} not set: run the study through run_scripts/reproduce_cpu.sh, which "
                "builds the demo and exports them"
            )
        paths = {k: Path(v) for k, v in paths.items()}
        return cls(eval=paths["train"].parent / "eval.parquet", **paths)


def split_eval_by_level(demo: Demo, out: Path) -> list[Path]:
    """The held-out set as one parquet per level, named L05-easy etc.: one benchmark per rung of the ladder."""
    import pandas as pd

    from uec_lab.demo.ladder import Ladder

    ladder = Ladder.from_json(json.loads(demo.report.read_text())["ladder"])
    frame = pd.read_parquet(demo.eval)
    levels = [extra["level"] for extra in frame["extra_info"]]
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for level in sorted(set(levels)):
        path = out / f"L{level:02d}-{ladder.band_of(level)}.parquet"
        if not path.exists():
            rows = frame[[lv == level for lv in levels]].reset_index(drop=True)
            tmp = path.with_suffix(".tmp")
            rows.to_parquet(tmp, index=False)
            os.replace(tmp, path)
        files.append(path)
    return files


# ---- one run ---------------------------------------------------------------------------------------------------


def seed_overrides(seed: int) -> list[str]:
    value = SEED_BASE + seed
    return [
        f"data.seed={value}",
        f"actor_rollout_ref.rollout.seed={value}",
        f"actor_rollout_ref.actor.data_loader_seed={value}",
        f"uec.seed={value}",
    ]


def train_command(
    spec: RunSpec, demo: Demo, run_dir: Path, base_overrides: Sequence[str], extra_overrides: Sequence[str] = ()
) -> list[str]:
    """The training run: the study's config groups and the method's preset (``base_overrides``, normally
    ``STUDY_GROUPS``), the run's own settings, the method's overrides, then those given to the whole study (which
    win)."""
    method = METHODS[spec.method]
    return [
        sys.executable,
        "-m",
        "uec_recipe.main_uec",
        f"algo={method.preset}",
        *base_overrides,
        f"actor_rollout_ref.model.path={demo.model}",
        f"data.train_files={demo.train}",
        f"data.val_files={demo.test}",
        f"trainer.total_training_steps={spec.steps}",
        "trainer.test_freq=-1",
        "trainer.val_before_train=False",
        # the final policy, with a plain HF copy for the evaluation
        f"trainer.save_freq={spec.steps}",
        "actor_rollout_ref.actor.checkpoint.save_contents=[model,hf_model]",
        f"trainer.experiment_name=study-{spec.method}-seed{spec.seed}",
        f"trainer.default_local_dir={run_dir / 'checkpoints'}",
        f"hydra.run.dir={run_dir / 'hydra'}",  # hydra's log folder, not ./outputs/<date> where the study runs
        *seed_overrides(spec.seed),
        *method.overrides,
        *extra_overrides,
    ]


# the digit-sum grader, registered on the recipe's reward entry point (training uses the same, task/digit_sum.yaml)
DEMO_REWARD = "pkg://uec_lab.demo.reward"


def eval_command(
    model: Path, files: Sequence[Path], out: Path, seed: int, settings: dict = EVAL, greedy_out: Path | None = None
) -> list[str]:
    """The held-out evaluation: ``settings``' sampling into ``out`` and, with ``greedy_out``, greedy decoding."""
    limit = ["--max-problems", str(settings["problems_per_level"])] if settings.get("problems_per_level") else []
    limit += ["--greedy-out", str(greedy_out)] if greedy_out is not None else []
    return [
        sys.executable,
        "-m",
        "uec_recipe.eval.sample",
        "--model",
        str(model),
        "--data",
        *map(str, files),
        "--out",
        str(out),
        "--n",
        str(settings["n"]),
        "--temperature",
        str(settings["temperature"]),
        "--top-p",
        str(settings["top_p"]),
        "--max-new-tokens",
        str(settings["max_new_tokens"]),
        *limit,
        "--backend",
        "hf",
        "--reward-path",
        DEMO_REWARD,
        "--batch-size",
        "64",
        "--seed",
        str(SEED_BASE + seed),
    ]


def _run_logged(command: Sequence[str], log: Path, env: dict) -> None:
    with open(log, "w") as stream:
        result = subprocess.run(command, stdout=stream, stderr=subprocess.STDOUT, env=env)
    if result.returncode != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-30:])
        raise RuntimeError(f"{command[2]} failed (exit {result.returncode}); the end of {log}:\n{tail}")


def run_one(
    spec: RunSpec,
    demo: Demo,
    out: Path,
    eval_files: Sequence[Path],
    base_overrides: Sequence[str],
    eval_settings: dict,
    extra_overrides: Sequence[str] = (),
    jobs: int = 1,
) -> dict:
    run_dir = out / "runs" / spec.method / f"seed{spec.seed}"
    if run_dir.exists():
        shutil.rmtree(run_dir)  # an unfinished run starts over: verl's file logger would append to it
    run_dir.mkdir(parents=True)
    env = {**os.environ, "VERL_FILE_LOGGER_PATH": str(run_dir / "metrics.jsonl")}
    started = time.time()
    command = train_command(spec, demo, run_dir, base_overrides, extra_overrides)
    (run_dir / "command.txt").write_text(" ".join(command) + "\n")
    _run_logged(command, run_dir / "train.log", env)
    trained = time.time()
    checkpoint = run_dir / "checkpoints"
    command = eval_command(checkpoint, eval_files, run_dir / "eval", spec.seed, eval_settings, run_dir / "eval_greedy")
    _run_logged(command, run_dir / "eval.log", env)
    record = {
        **asdict(spec),
        "label": METHODS[spec.method].label,
        "preset": METHODS[spec.method].preset,
        "overrides": list(METHODS[spec.method].overrides),
        "code": code_version(),
        "machine": machine_description(),
        "train_seconds": round(trained - started, 1),
        "eval_seconds": round(time.time() - trained, 1),
        "concurrent_runs": jobs,  # above 1 other runs shared the machine: the report shows no cost for it
    }
    (run_dir / "done.json").write_text(json.dumps(record, indent=2))
    return record


def check_finished_run(run_dir: Path, spec: RunSpec) -> None:
    """A finished run is reused only if the method it ran is the method asked for now (preset and overrides)."""
    record = json.loads((run_dir / "done.json").read_text())
    method = METHODS[spec.method]
    if record.get("preset") != method.preset or list(record.get("overrides", [])) != list(method.overrides):
        raise SystemExit(
            f"error: {run_dir} ran {record.get('preset')} with {record.get('overrides')}, but {spec.method} is now "
            f"{method.preset} with {list(method.overrides)}: delete that folder to run it again, or use another --out"
        )


def evaluate_base(
    demo: Demo, out: Path, eval_files: Sequence[Path], eval_settings: dict, seeds: Sequence[int] = (1,)
) -> None:
    """The warm-started policy before any RL (the tables' base row), sampled with each seed's sampling seed.

    Evaluating the base model once per seed puts its sampling noise into the interval of every gain over it.
    A study written before base seeds existed kept one evaluation in runs/base/eval: it becomes seed 1's.
    """
    base = out / "runs" / "base"
    if (base / "done.json").exists() and (base / "eval").is_dir():
        (base / "seed1").mkdir(parents=True, exist_ok=True)
        (base / "eval").rename(base / "seed1" / "eval")
        (base / "done.json").rename(base / "seed1" / "done.json")
        for log in ("eval.log",):
            if (base / log).exists():
                (base / log).rename(base / "seed1" / log)
    for seed in seeds:
        folder = base / f"seed{seed}"
        if (folder / "done.json").exists():
            continue
        folder.mkdir(parents=True, exist_ok=True)
        print(f"[study] base model, sampling seed {seed}: evaluating", flush=True)
        started = time.time()
        _run_logged(
            eval_command(demo.model, eval_files, folder / "eval", seed, eval_settings, folder / "eval_greedy"),
            folder / "eval.log",
            dict(os.environ),
        )
        record = {"eval_seconds": round(time.time() - started, 1), "machine": machine_description()}
        (folder / "done.json").write_text(json.dumps(record))


def code_version() -> dict:
    """Which code trained a run: the checkout's commit and whether it had uncommitted changes."""

    def git(*args):
        result = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True)
        return result.stdout.strip() if result.returncode == 0 else None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {"path": str(REPO), "commit": git("rev-parse", "HEAD"), "uncommitted_changes": bool(status)}


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


@dataclass
class Progress:
    """Run i of n, elapsed time, and the time left estimated from the runs finished so far (per method family)."""

    total: int
    started: float = field(default_factory=time.time)
    durations: dict[str, list[float]] = field(default_factory=dict)

    @staticmethod
    def family(method: str) -> str:
        return "uec" if METHODS[method].preset.startswith("uec") else "baseline"

    def record(self, method: str, seconds: float) -> None:
        self.durations.setdefault(self.family(method), []).append(seconds)

    def estimate_left(self, remaining: Sequence[RunSpec]) -> float | None:
        everything = [d for ds in self.durations.values() for d in ds]
        if not everything:
            return None
        overall = sum(everything) / len(everything)

        def mean(method):
            ds = self.durations.get(self.family(method))
            return sum(ds) / len(ds) if ds else overall

        return sum(mean(spec.method) for spec in remaining)

    def line(self, index: int, spec: RunSpec, remaining: Sequence[RunSpec]) -> str:
        left = self.estimate_left(remaining)
        eta = "estimating the time left after the first run" if left is None else f"about {_clock(left)} left"
        return (
            f"[study] run {index}/{self.total}: {METHODS[spec.method].label} seed {spec.seed} ({spec.steps} steps) | "
            f"elapsed {_clock(time.time() - self.started)} | {eta}"
        )


def run_study(
    out: Path,
    specs: Sequence[RunSpec],
    demo: Demo,
    eval_settings: dict = EVAL,
    extra_overrides: Sequence[str] = (),
    task: str = DEFAULT_TASK,
    plan_path: Path | None = None,
    jobs: int = 1,
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    base_overrides = list(study_groups(task))
    everything = base_overrides + list(extra_overrides)  # what finished runs must share to be reused
    settings = effective_settings(everything)
    previous = out / "study.json"
    if previous.exists():
        earlier = json.loads(previous.read_text())
        same = (
            earlier["overrides"] == everything
            and earlier.get("settings") == settings
            and {"problems_per_level": None, **earlier["eval"]} == eval_settings
            and {r["steps"] for r in earlier["runs"]} == {specs[0].steps}
        )
        if not same and any((out / "runs").glob("*/seed*/done.json")):
            raise SystemExit(
                f"error: {out} holds runs made with other settings (steps, overrides or evaluation); "
                "finished runs are reused only with identical settings: use another --out"
            )
    (out / "study.json").write_text(
        json.dumps(
            {
                "runs": [asdict(s) for s in specs],
                "overrides": everything,
                "settings": settings,
                "eval": eval_settings,
                "task": task,
                "plan": None if plan_path is None else str(Path(plan_path).resolve()),
                "demo": {k: str(v) for k, v in asdict(demo).items()},
            },
            indent=2,
        )
    )
    eval_files = split_eval_by_level(demo, out / "eval_data")
    print(f"[study] held-out evaluation: {', '.join(f.stem for f in eval_files)}; {eval_settings}", flush=True)
    evaluate_base(demo, out, eval_files, eval_settings, sorted({s.seed for s in specs}))
    todo = [s for s in specs if not (out / "runs" / s.method / f"seed{s.seed}" / "done.json").exists()]
    for spec in specs:
        if spec not in todo:
            check_finished_run(out / "runs" / spec.method / f"seed{spec.seed}", spec)
    done = len(specs) - len(todo)
    if done:
        print(f"[study] {done} of {len(specs)} runs already finished in {out}: skipped", flush=True)
    progress = Progress(total=len(specs))

    def train(index: int, spec: RunSpec) -> None:
        with lock:
            if failed.is_set():
                return  # a run failed: no further run starts; the runs under way end
            print(progress.line(done + index + 1, spec, todo[index:]), flush=True)
        try:
            record = run_one(spec, demo, out, eval_files, base_overrides, eval_settings, extra_overrides, jobs)
        except BaseException:
            failed.set()
            raise
        seconds = record["train_seconds"] + record["eval_seconds"]
        with lock:
            progress.record(spec.method, seconds / jobs)  # the study's pace: jobs runs share each stretch of time
            print(
                f"[study]   {METHODS[spec.method].label} seed {spec.seed} finished in {_clock(seconds)} "
                f"(training {record['train_seconds']:.0f}s, evaluation {record['eval_seconds']:.0f}s)",
                flush=True,
            )

    lock, failed = threading.Lock(), threading.Event()
    if jobs == 1:
        for index, spec in enumerate(todo):
            train(index, spec)
    else:
        print(f"[study] {jobs} runs at a time: they share the machine, so the report shows no cost for them",
              flush=True)  # fmt: skip
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            for future in as_completed([pool.submit(train, i, spec) for i, spec in enumerate(todo)]):
                future.result()  # the first failure, once the runs under way have ended
    print(f"[study] all {len(specs)} runs finished in {out} ({_clock(time.time() - progress.started)})", flush=True)


# ---- command line ------------------------------------------------------------------------------------------------


def report_command(out: Path, args: argparse.Namespace) -> int:
    """Task v2's report against its pre-registered plan (report_v2.py) when study.json's task is chains and a plan
    is named (--plan, or the plan the study ran with, recorded in study.json); otherwise the first study's report
    (report.py), which pilots and quick studies without a plan use."""
    if not (out / "study.json").is_file():
        raise SystemExit(f"error: {out} has no study.json: run the study (or record it) first")
    recorded = json.loads((out / "study.json").read_text())
    chains = recorded.get("task", "digits") == "chains"
    if not chains or (args.plan is None and not recorded.get("plan")):
        from uec_lab.study.report import write_report

        if chains:
            print("[study] no study plan named (--plan): the first study's report layout", file=sys.stderr)
        write_report(out, args.command_line)
        return 0
    from uec_lab.study.plan import PlanError, read_plan
    from uec_lab.study.report_v2 import write_report as write_report_v2

    plan_path = Path(args.plan or recorded["plan"]).resolve()
    try:
        plan = read_plan(plan_path)
    except PlanError as error:
        raise SystemExit(f"error: {error}") from None
    csv_dir = Path(args.csv).resolve() if args.csv else None
    path = write_report_v2(out, plan, plan_path, csv_dir, args.command_line)
    print(path.read_text())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m uec_lab.study", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="train and evaluate every run not finished yet")
    run.add_argument("--out", required=True)
    run.add_argument(
        "--plan", help="a pre-registered plan (docs/study-plan.md): its methods, seeds per method, steps and task"
    )
    run.add_argument("--quick", action="store_true", help=f"one seed, {' vs '.join(QUICK_METHODS)}, fewer steps")
    run.add_argument("--seeds", type=int, help="seeds of GRPO and UEC-RL (default 3; --quick 1)")
    run.add_argument("--other-seeds", type=int, help="seeds of every other method (default 2; --quick 1)")
    run.add_argument(
        "--steps", type=int, help=f"training steps per run (default {DEFAULT_STEPS}; --quick {QUICK_STEPS})"
    )
    run.add_argument(
        "--methods",
        help=f"comma-separated methods (default: {', '.join(DEFAULT_METHODS)}; also known: "
        f"{', '.join(m for m in METHODS if m not in DEFAULT_METHODS)})",
    )
    run.add_argument(
        "--task", choices=sorted(TASK_GROUPS), default=DEFAULT_TASK, help="chains: task v2, the shipped base policy "
        "(default); digits: the first task, built on this machine (the launcher must load the matching demo)"
    )  # fmt: skip
    run.add_argument("--eval-n", type=int, default=EVAL["n"], help="samples per held-out problem")
    run.add_argument("--eval-problems", type=int, help="evaluate only the first K problems of each level")
    run.add_argument(
        "--jobs", type=int, default=1, help="runs trained at once (default 1; above 1 they share the machine and "
        "the report shows no cost for them)"
    )  # fmt: skip
    run.add_argument("overrides", nargs="*", help="after --: hydra overrides added to every training run")
    report = sub.add_parser("report", help="tables, figures and report.md from the finished runs")
    report.add_argument("--out", required=True, help="a study folder, or the compact records `record` wrote")
    report.add_argument("--command-line", default="", help="the study command, quoted in the report")
    report.add_argument("--plan", help="task v2: the pre-registered plan (default: the one the study ran with)")
    report.add_argument("--csv", help="task v2: folder of the per-seed CSV files (default OUT/per-seed)")
    match = sub.add_parser("match", help="matched-generation GRPO: UEC-RL's samples per step -> the task's n")
    match.add_argument("--out", required=True, help="a study folder, or the compact records `record` wrote")
    match.add_argument("--method", default="uec", help="the UEC-RL method measured (default uec)")
    where = match.add_mutually_exclusive_group()
    where.add_argument(
        "--write", action="store_true", help="write uec_recipe/config/task_algo/<task>_grpo_matched.yaml"
    )
    where.add_argument("--to", help="write task_algo/<task>_grpo_matched.yaml under this config folder instead")
    record = sub.add_parser("record", help="copy each finished run's compact record (no checkpoints, no samples)")
    record.add_argument("--out", required=True, help="the study folder")
    record.add_argument("--to", required=True, help="the records folder (e.g. under docs/)")
    args = parser.parse_args(argv)

    out = Path(args.out).resolve()
    if args.command == "match":
        from uec_lab.study import match as matching

        to = matching.CONFIG_DIR if args.write else Path(args.to).resolve() if args.to else None
        return matching.main(out, args.method, to)
    if args.command == "record":
        from uec_lab.study.report_v2 import record_runs

        for line in record_runs(out, Path(args.to).resolve()):
            print(f"[study] {line}")
        return 0
    if args.command == "report":
        return report_command(out, args)
    quick = args.quick
    if args.plan:
        chosen = [f"--{name}" for name in ("quick", "seeds", "other_seeds", "steps", "methods") if getattr(args, name)]
        if chosen:
            parser.error(f"--plan fixes the runs; drop {', '.join(o.replace('_', '-') for o in chosen)}")
        study_plan = read_plan(args.plan)
        if args.task != study_plan.task:
            parser.error(f"the plan is for --task {study_plan.task}, not {args.task}")
        specs = planned_runs(study_plan.seeds, study_plan.steps)
        counts = ", ".join(f"{m} {n}" for m, n in study_plan.seeds.items())
        print(f"[study] {len(specs)} runs as planned in {args.plan} (seeds: {counts}; {study_plan.steps} steps each) "
              f"on {machine_description()}", flush=True)  # fmt: skip
    else:
        methods = args.methods.split(",") if args.methods else list(QUICK_METHODS if quick else DEFAULT_METHODS)
        seeds = args.seeds or (1 if quick else 3)
        other = args.other_seeds or (1 if quick else 2)
        steps = args.steps or (QUICK_STEPS if quick else DEFAULT_STEPS)
        try:
            specs = plan(methods, seeds, other, steps)
        except ValueError as error:
            parser.error(str(error))
        print(f"[study] {len(specs)} runs ({', '.join(methods)}; {seeds} seed(s) for {', '.join(CORE)}, {other} for "
              f"the others; {steps} steps each) on {machine_description()}", flush=True)  # fmt: skip
    if args.eval_n < 1 or (args.eval_problems is not None and args.eval_problems < 1):
        parser.error("--eval-n and --eval-problems must be >= 1")
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}")
    eval_settings = {
        **EVAL,
        "n": args.eval_n,
        "max_new_tokens": EVAL_MAX_NEW_TOKENS[args.task],
        "problems_per_level": args.eval_problems,
    }
    run_study(out, specs, Demo.from_env(), eval_settings, args.overrides, args.task, args.plan, args.jobs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
