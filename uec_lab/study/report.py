"""The reproduction study's report: tables (uec_recipe.eval.tables), curves (uec_recipe.eval.curves), costs and the
intervals that decide each of the paper's claims, from the runs ``uec_lab.study`` finished.

Every number carries its settings: seeds, n samples per problem, temperature, top_p and grader in the table notes;
batch, steps and the method knobs in the settings section; the demo's measured ladder beside them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from uec_lab.demo.ladder import BANDS, HARD, MEDIUM, Ladder, band_table
from uec_lab.study.plan import CORE, METHODS, QUOTED, machine_description
from uec_lab.summary import read_metrics
from uec_recipe.eval import curves as curves_module
from uec_recipe.eval import tables as tables_module
from uec_recipe.eval.stats import Estimate, difference, mean_ci, paired_difference

BASE_LABEL = "Base (warm start)"
REFERENCE = "GRPO"
CURVE_METRICS = ("entropy/regular_rollout", "critic/score/mean", "uec/difficult_prompts", "uec/exploration_kept")


def finished_runs(out: Path) -> dict[str, list[Path]]:
    """method -> run folders with done.json, in seed order."""
    runs: dict[str, list[Path]] = {}
    for done in sorted((out / "runs").glob("*/seed*/done.json"), key=lambda p: (p.parent.parent.name, p.parent.name)):
        method = done.parent.parent.name
        if method in METHODS:
            runs.setdefault(method, []).append(done.parent)
    for method in runs:
        runs[method].sort(key=lambda p: int(p.name.removeprefix("seed")))
    return {method: runs[method] for method in METHODS if method in runs}  # the methods' table order


def level_benchmarks(out: Path) -> list[str]:
    """The held-out levels: the split evaluation set of a study folder, or the levels its compact records hold."""
    split = sorted(p.stem for p in (out / "eval_data").glob("L*.parquet"))
    return split or sorted({p.name for p in (out / "runs").glob("*/seed*/eval/L*") if p.is_dir()})


def band_of(benchmark: str) -> str:
    return benchmark.split("-", 1)[1]


def base_eval_dirs(out: Path) -> list[Path]:
    """The base model's evaluations, one per sampling seed (a study from before base seeds: its single one)."""
    seeds = sorted(
        (d.parent for d in (out / "runs" / "base").glob("seed*/done.json")),
        key=lambda d: int(d.name.removeprefix("seed")),
    )
    if seeds:
        return [d / "eval" for d in seeds]
    legacy = out / "runs" / "base" / "eval"
    if legacy.is_dir():
        return [legacy]
    raise SystemExit(f"error: {out / 'runs' / 'base'} holds no finished base-model evaluation: run the study first")


def runs_spec(out: Path, runs: Mapping[str, Sequence[Path]], methods: Sequence[str]) -> dict[str, Any]:
    return {
        "base": {"label": BASE_LABEL, "summaries": {"seeds": [str(d) for d in base_eval_dirs(out)]}},
        "reference": REFERENCE,
        "methods": {METHODS[m].label: {"seeds": [str(d / "eval") for d in runs[m]]} for m in methods if m in runs},
    }


def band_columns(benchmarks: Sequence[str]) -> dict[str, list[str]]:
    columns = {}
    for band in (*BANDS, "between"):
        members = [b for b in benchmarks if band_of(b) == band]
        if members:
            columns[band] = members
    return columns


def per_seed_band_values(eval_dirs: Sequence[Path], members: Sequence[str], key="avg@n", k=None) -> list[float]:
    """Per seed, the mean over the band's levels of avg@n (or pass@k)."""
    values = []
    for directory in eval_dirs:
        level_values = []
        for bench in members:
            summary = json.loads((directory / bench / "summary.json").read_text())
            level_values.append(float(summary[key][k]) if k else float(summary[key]))
        values.append(sum(level_values) / len(level_values))
    return values


def cost_of(run_dirs: Sequence[Path]) -> dict[str, Estimate]:
    """Per seed: mean step time (steps 2 onward: step 1 holds worker warm-up) and time per trained token."""
    step_times, per_token, gen_share = [], [], []
    for directory in run_dirs:
        rows = [r for r in read_metrics(directory / "metrics.jsonl") if r["step"] >= 2 and "timing_s/step" in r]
        seconds = sum(r["timing_s/step"] for r in rows)
        tokens = sum(r.get("tokens/trained", 0) for r in rows)
        generation = sum(r.get("timing_s/gen", 0) + r.get("timing_s/gen_explore", 0) for r in rows)
        step_times.append(seconds / len(rows))
        per_token.append(1000 * seconds / tokens if tokens else float("nan"))
        gen_share.append(generation / seconds)
    return {
        "step_s": mean_ci(step_times),
        "ms_per_trained_token": mean_ci([v for v in per_token if v == v]) if any(v == v for v in per_token) else None,
        "generation_share": mean_ci(gen_share),
    }


def _fmt(estimate: Estimate | None, scale=100.0, digits=1, signed=False) -> str:
    return "-" if estimate is None else estimate.format(scale, digits, signed)


def _with_verdict(estimate: Estimate) -> str:
    """A signed difference in points with its interval and whether that interval excludes 0 (seeds without spread
    have no interval to exclude anything: "no spread (k seeds)" says so)."""
    if estimate.no_spread:
        return _fmt(estimate, signed=True)
    verdict = "excludes 0" if estimate.excludes_zero() else "does not exclude 0"
    return f"{_fmt(estimate, signed=True)} ({verdict})"


def margin_kind(base_dirs: Sequence[Path]) -> str:
    if len(base_dirs) > 1:
        return f"mean ± Welch 95% interval, the base model sampled with {len(base_dirs)} seeds"
    return "mean ± 95% interval over GRPO's seeds, the base model sampled once"


def gain_over_base(method: Sequence[float], base: Sequence[float]) -> Estimate:
    """A method's gain over the base model: Welch over both sets of sampling seeds, or over the method's seeds
    against a single base evaluation."""
    return difference(method, base) if len(base) > 1 else paired_difference(method, base[0])


def claim_lines(out: Path, runs: Mapping[str, Sequence[Path]], benchmarks: Sequence[str]) -> list[str]:
    """The figures that decide the paper's claims on this task, each with its 95 % interval."""
    columns = band_columns(benchmarks)
    base_dirs = base_eval_dirs(out)
    lines = []

    def values(method, members, key="avg@n", k=None):
        return per_seed_band_values([d / "eval" for d in runs[method]], members, key, k)

    graded = [band for band in (MEDIUM, HARD) if band in columns]
    if "grpo" in runs and graded:
        lines += [
            "",
            "**GRPO's learning margin** (GRPO − base model, percentage points, " + margin_kind(base_dirs) + "):",
            "",
        ]
        both = [b for band in graded for b in columns[band]]
        groups = [(f"{band} levels ({', '.join(columns[band])})", columns[band]) for band in graded]
        for name, members in [*groups, ("medium and hard together", both)]:
            margin = gain_over_base(values("grpo", members), per_seed_band_values(base_dirs, members))
            lines.append(f"- {name}: {_with_verdict(margin)}")
    if "grpo" in runs and "uec" in runs:
        lines += ["", "**UEC-RL − GRPO** (percentage points, Welch 95% interval over seeds):", ""]
        for band, members in columns.items():
            gap = difference(values("uec", members), values("grpo", members))
            lines.append(f"- {band}: accuracy {_with_verdict(gap)}")
        if HARD in columns:
            ks = sorted(
                json.loads((runs["uec"][0] / "eval" / columns[HARD][0] / "summary.json").read_text())["pass@k"], key=int
            )
            for k in dict.fromkeys((ks[0], ks[-1])):  # the smallest and largest k, once each
                gap = difference(values("uec", columns[HARD], "pass@k", k), values("grpo", columns[HARD], "pass@k", k))
                lines.append(f"- hard levels, pass@{k}: {_with_verdict(gap)}")
    baselines = [m for m in METHODS if METHODS[m].group == "main" and m not in CORE and m in runs]
    if "uec" in runs and baselines and graded:
        lines += ["", "**Baselines − UEC-RL** (percentage points, Welch 95% interval over seeds):", ""]
        for method in baselines:
            parts = [
                f"{band} {_with_verdict(difference(values(method, columns[band]), values('uec', columns[band])))}"
                for band in graded
            ]
            seeds = f"{len(runs[method])} seed{'s' if len(runs[method]) > 1 else ''}"
            lines.append(f"- {METHODS[method].label} ({seeds}): {', '.join(parts)}")
    ablations = [m for m in METHODS if METHODS[m].group == "ablation" and m in runs]
    if "uec" in runs and ablations:
        lines += ["", "**Ablations** (variant − UEC-RL, medium and hard levels together, Welch 95% interval):", ""]
        both = [b for band in graded for b in columns[band]]
        for method in ablations:
            gap = difference(values(method, both), values("uec", both))
            lines.append(f"- {METHODS[method].label}: {_with_verdict(gap)}")
    return lines


def relative_improvement_note(out: Path, runs: Mapping[str, Sequence[Path]], benchmarks: Sequence[str]) -> str:
    """Why the tables leave out the paper's relative improvement over GRPO, or "" when they show it.

    (method − base) / (GRPO − base) − 1 divides by GRPO's gain over the base model; when the interval of that gain
    includes 0 the ratio can take any size or sign, so it is left out rather than printed as if it meant something.
    """
    if "grpo" not in runs:
        return ""
    grpo = per_seed_band_values([d / "eval" for d in runs["grpo"]], benchmarks)
    gain = gain_over_base(grpo, per_seed_band_values(base_eval_dirs(out), benchmarks))
    if gain.excludes_zero():
        return ""
    if gain.half_width is None:
        why = "has no interval"
    elif gain.no_spread:
        why = "has no spread over seeds to build an interval from"
    else:
        why = "has an interval that includes 0"
    return (
        "The paper's relative improvement over GRPO, (method − base) / (GRPO − base) − 1, is left out of these "
        f"tables: GRPO's gain over the base model on the Average, {_fmt(gain, signed=True)} points, {why}, so the "
        "ratio could take any size or sign. Read the differences and their intervals in "
        '"What the intervals allow one to say" instead.'
    )


def entropy_lines(runs: Mapping[str, Sequence[Path]]) -> list[str]:
    """Entropy of the regular rollout: first 10 vs last 10 steps, and the spread over the run, per method."""
    lines = [
        "| method | entropy, steps 1-10 | entropy, last 10 steps | change | change (%) | lowest 10-step mean |",
        "|---|---|---|---|---|---|",
    ]
    for method, dirs in runs.items():
        first, last, change, relative, lowest = [], [], [], [], []
        for directory in dirs:
            series = [r["entropy/regular_rollout"] for r in read_metrics(directory / "metrics.jsonl")
                      if r["step"] >= 1 and "entropy/regular_rollout" in r]  # fmt: skip
            windows = [sum(w) / len(w) for w in (series[i : i + 10] for i in range(0, max(1, len(series) - 9)))]
            first.append(sum(series[:10]) / len(series[:10]))
            last.append(sum(series[-10:]) / len(series[-10:]))
            change.append(last[-1] - first[-1])
            relative.append(change[-1] / first[-1])
            lowest.append(min(windows))
        cells = [c.format(1, 3) for c in (mean_ci(first), mean_ci(last), mean_ci(change))]
        cells += [mean_ci(relative).format(100, 1, signed=True), mean_ci(lowest).format(1, 3)]
        lines.append(f"| {METHODS[method].label} | " + " | ".join(cells) + " |")
    return lines


def cost_lines(runs: Mapping[str, Sequence[Path]]) -> list[str]:
    lines = [
        "| method | seconds per step | ms per trained token | generation share of a step | ratio to GRPO (step) |",
        "|---|---|---|---|---|",
    ]
    costs = {method: cost_of(dirs) for method, dirs in runs.items()}
    reference = costs.get("grpo", {}).get("step_s")
    for method, cost in costs.items():
        ratio = f"{cost['step_s'].mean / reference.mean:.2f}×" if reference else "-"
        lines.append(
            f"| {METHODS[method].label} | {cost['step_s'].format(1, 2)} | "
            f"{'-' if cost['ms_per_trained_token'] is None else cost['ms_per_trained_token'].format(1, 2)} | "
            f"{cost['generation_share'].format(100, 0)}% | {ratio} |"
        )
    return lines


def write_report(out: Path, command_line: str = "") -> Path:
    study = json.loads((out / "study.json").read_text())
    evaluation = study["eval"]
    per_level = evaluation.get("problems_per_level")
    scope = f"the first {per_level} problems of each level" if per_level else "every problem"
    runs = finished_runs(out)
    if not runs:
        raise SystemExit(f"error: no finished run under {out}/runs; run the study first")
    benchmarks = level_benchmarks(out)
    columns = band_columns(benchmarks)
    figures = out / "figures"
    figures.mkdir(exist_ok=True)

    main = [m for m in METHODS if METHODS[m].group == "main" and m in runs]
    ablation = (["uec"] if "uec" in runs else []) + [m for m in METHODS if METHODS[m].group == "ablation" and m in runs]
    plus = (["uec"] if "uec" in runs else []) + [m for m in METHODS if METHODS[m].group == "plus" and m in runs]
    everything = [m for m in METHODS if m in runs]
    hard = columns.get(HARD, [])

    ratio_note = relative_improvement_note(out, runs, benchmarks)

    def tables_for(methods, title, cols=None, kind="accuracy", members=None):
        spec = runs_spec(out, runs, methods)
        if ratio_note:
            spec["reference"] = None  # no relative-improvement column (ratio_note says why)
        table = {"title": title, "benchmarks": list(members or benchmarks), "kind": kind}
        if cols:
            table["columns"] = cols
        spec["tables"] = [table]
        return tables_module.build_tables(spec)[0]

    sections = [
        ("Main table: accuracy per level", tables_for(main, "Accuracy per level (%)")),
        ("Main table by band", tables_for(main, "Accuracy per band (%)", columns)),
    ]
    if any(METHODS[m].group == "ablation" for m in ablation):
        sections.append(("Ablations", tables_for(ablation, "UEC-RL ablations, accuracy per band (%)", columns)))
    if any(METHODS[m].group == "plus" for m in plus):
        sections.append(("Beyond the paper", tables_for(plus, "UEC-RL options, accuracy per band (%)", columns)))
    if hard:
        title = f"pass@k on the hard levels ({', '.join(hard)}) (%)"
        sections.append(("pass@k on the hard levels", tables_for(everything, title, kind="passk", members=hard)))
    (out / "runs.json").write_text(json.dumps(runs_spec(out, runs, everything), indent=2))

    curve_runs = {
        METHODS[m].label: [curves_module.read_metrics(d / "metrics.jsonl") for d in runs[m]] for m in everything
    }
    metrics, _ = curves_module.select_metrics(curve_runs, CURVE_METRICS)
    curves_module.plot_curves(curve_runs, metrics, figures / "curves.png", columns=2, smooth=5)
    main_curves = {METHODS[m].label: curve_runs[METHODS[m].label] for m in main}
    main_metrics = ["entropy/regular_rollout", "critic/score/mean"]
    curves_module.plot_curves(main_curves, main_metrics, figures / "main_curves.png", columns=2, smooth=5)

    ladder = Ladder.from_json(json.loads(Path(study["demo"]["report"]).read_text())["ladder"])
    effective = dict(o.split("=", 1) for o in study.get("settings", study["overrides"]) if "=" in o)  # last value wins
    quoted = [
        f"{key}={value}"
        for key, value in effective.items()
        if key in QUOTED or (key.startswith("uec.") and key != "uec.sample_poll_interval_s")
    ]
    seeds = {METHODS[m].label: len(dirs) for m, dirs in runs.items()}
    wall = sum(json.loads((d / "done.json").read_text()).get("train_seconds", 0) + json.loads(
        (d / "done.json").read_text()).get("eval_seconds", 0) for dirs in runs.values() for d in dirs)  # fmt: skip
    lines = [
        "# CPU reproduction study",
        "",
        f"Command: `{command_line or 'bash run_scripts/reproduce_cpu.sh'}`",
        f"Machine: {machine_description()}. Report written {time.strftime('%Y-%m-%d %H:%M')}; the runs took "
        f"{wall / 3600:.2f} h of wall time (training and evaluation).",
        f"Runs finished: {', '.join(f'{k} {v} seed(s)' for k, v in seeds.items())}; "
        f"{study['runs'][0]['steps']} training steps each.",
        "",
        "## Settings",
        "",
        "Every run is the real verl trainer with the config groups "
        f"`{' '.join(o for o in study['overrides'] if o.split('=')[0] in ('platform', 'task', 'setting'))}` "
        "(`uec_recipe/config/`); the method presets are `uec_recipe/config/algo/*.yaml`. The effective "
        "values of the settings that matter here (batch, lengths and learning rate are demo-sized; the paper's, "
        "arXiv 2604.14646 §3, are in `uec_recipe/config/uec_trainer.yaml`):",
        "",
        *[f"- `{o}`" for o in quoted],
        "",
        f"Held-out evaluation: {scope} of the demo's evaluation set ({len(benchmarks)} levels), sampled "
        f"n = {evaluation['n']} times at temperature {evaluation['temperature']}, top_p {evaluation['top_p']}, "
        ####`; grader paper and robust agree on this task). "
        "Accuracy is "
        "avg@n; pass@k is the unbiased estimator. The base model (the warm-started policy before RL) is sampled "
        f"with the runs' sampling seeds, {len(base_eval_dirs(out))} time(s); its row is the mean over them.",
        "",
        f"Difficulty ladder of the demo policy, measured when it was built ({ladder.samples_per_level} samples per "
        "level at T = 1); the study's levels are the task levels:",
        "",
        *band_table(ladder),
        "",
        "## What the intervals allow one to say",
        *claim_lines(out, runs, benchmarks),
        "",
    ]
    for title, table in sections:
        lines += [f"## {title}", "", tables_module.to_markdown(table)]
    lines += [
        ratio_note
        or "The relative improvement divides by GRPO's gain over the base model; when that gain is small it swings "
        "widely and says little (read the differences with their intervals above instead).",
        "",
        "## Entropy of the regular rollout",
        "",
        "`entropy/regular_rollout`: mean −log q of the sampled tokens of each step's regular rollout at the base "
        'temperature (docs/algorithm.md, "Entropy"); per seed, then mean ± 95% interval over seeds.',
        "",
        *entropy_lines(runs),
        "",
        "![entropy and training accuracy, main methods](figures/main_curves.png)",
        "",
        "![every method](figures/curves.png)",
        "",
        "Curves: mean over seeds with the range between the lowest and highest seed shaded, trailing average over "
        "5 steps. Training accuracy (`critic/score/mean`) is over each step's regular rollout at T = 1.",
        "",
        "## Cost, measured in the same study",
        "",
        "Step time over steps 2 onward (step 1 includes worker warm-up); a trained token is a prompt or response "
        "token of a row in an actor update (UEC-RL: main and replay updates). Mean ± 95% interval over seeds. "
        "Other processes running beside the study slow every method and add noise to these figures (not to the "
        "accuracies).",
        "",
        *cost_lines(runs),
    ]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    print(path.read_text())
    return path
