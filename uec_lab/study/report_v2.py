"""The report of the second CPU study (task v2, carry-less chain sums), held to its pre-registered plan.

    python -m uec_lab.study report --out DIR [--plan docs/study-plan.md] [--csv DIR/per-seed]
    python -m uec_lab.study record --out OUT --to DIR

``report`` reads the plan (``plan.read_plan``: endpoints, seeds, analysis, alpha), checks the finished runs against
it, writes the per-seed values every figure comes from as CSV (``--csv``) and DIR/report.md: the plan and its
commit, what ran where, the deviations from the plan, the claims table, accuracy, greedy accuracy and pass@k per
level (pass@k beside a question-blind guesser), the entropy measurements, the cost, and what the plan did not name
under "Exploratory". DIR is a study folder (``run`` wrote it) or its compact records (``record`` wrote them): the
report reads study.json, the answers of each level (answers.json in records, the parquets in a study folder) and,
per run, done.json, metrics.jsonl and the summary.json of every level under eval/ and eval_greedy/. Nothing else,
so records without checkpoints or samples regenerate the same page.

Statistics (docs/study-plan.md, "Analysis"; ``uec_recipe.eval.stats``): an endpoint's difference method − reference
is paired by seed index (seed k of both ran with the same seed settings) or Welch's, as the plan says. Each primary
endpoint is its own claim at confidence 1 − alpha; the secondary endpoints form one family whose intervals are
Holm's (``holm_intervals``: an interval excludes 0 exactly when Holm rejects at family-wise alpha). The verdict is
``verdict``'s word, or "inconclusive" when a method has fewer seeds than the plan fixed; an inconclusive secondary
endpoint still counts in the family (and one without any run counts in m), so the others' correction stays the
plan's. An entropy_change endpoint
is, per seed, the metric's mean over the run's last W steps minus its mean over its first W steps,
W = max(1, planned steps // 10); a seed that logged the metric in neither window has no value.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from uec_lab.demo.chain import guessing_baseline
from uec_lab.study.plan import (
    METHODS,
    PLAN_BANDS,
    QUOTED,
    Endpoint,
    StudyPlan,
    is_recorded,
    plan_deviations,
)
from uec_lab.summary import read_metrics
from uec_recipe.eval.stats import (
    Estimate,
    holm_adjusted_p,
    holm_intervals,
    iqm_bootstrap,
    mean_ci,
    paired_difference,
    ratio_bootstrap,
    welch_difference,
)

BASE = "base"  # runs/base/seed<k>: the base policy's evaluations, one per sampling seed
RESAMPLES = 10_000  # bootstrap resamples of every IQM and cost-ratio interval
# Entropy metrics whose start -> end every method's row shows (the plan's entropy endpoints are added to them)
ENTROPY_SUMMARY = ("entropy/regular_rollout", "entropy/update_rows/main")
UPDATE_KINDS = ("no update", "main only", "main + replay", "replay only")
COVARIANCES = ("main", "main/regular", "main/exploration", "replay", "replay/regular", "replay/exploration")
_LEVEL_NAME = re.compile(r"^L(\d+)-(.+)$")


# ---- a study folder or its compact records ------------------------------------------------------------------------


def level_of(benchmark: str) -> tuple[int, str]:
    """``L04-hard`` -> (4, "hard"): the names ``run.split_eval_by_level`` gives the held-out levels."""
    match = _LEVEL_NAME.match(benchmark)
    if not match:
        raise ValueError(f"benchmark {benchmark!r} is not named L<level>-<band>")
    return int(match.group(1)), match.group(2)


def benchmark_name(level: int, band: str) -> str:
    return f"L{level:02d}-{band}"


def finished_runs(folder: Path) -> dict[str, dict[int, Path]]:
    """method -> {seed: run folder} for every run with a done.json, the base policy's evaluations under "base"."""
    runs: dict[str, dict[int, Path]] = {}
    for done in (folder / "runs").glob("*/seed*/done.json"):
        seed = done.parent.name.removeprefix("seed")
        if seed.isdigit():
            runs.setdefault(done.parent.parent.name, {})[int(seed)] = done.parent
    return {method: dict(sorted(runs[method].items())) for method in sorted(runs)}


def method_order(plan: StudyPlan, methods: Iterable[str]) -> list[str]:
    """The plan's methods in its order, then any other in METHODS' order, then unknown names; never the base."""
    methods = set(methods) - {BASE}
    rank = {m: i for i, m in enumerate([*plan.seeds, *(m for m in METHODS if m not in plan.seeds)])}
    return sorted(methods, key=lambda m: (rank.get(m, len(rank)), m))


def label(method: str) -> str:
    if method == BASE:
        return "Base policy"
    return METHODS[method].label if method in METHODS else method


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def metric_rows(run: Path) -> list[dict]:
    """The run's per-step metrics (numbers only); none for a base evaluation."""
    path = run / "metrics.jsonl"
    if not path.is_file():
        return []
    return [
        {k: v for k, v in row.items() if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)}
        for row in read_metrics(path)
    ]


def run_steps(run: Path, rows: Sequence[dict]) -> int | None:
    steps = _json(run / "done.json").get("steps")
    if steps is None and rows:
        steps = max(int(r["step"]) for r in rows)
    return steps


# ---- per-seed values: what every number of the report is computed from --------------------------------------------


@dataclass
class LevelScore:
    """One run's evaluation of one level: sampled accuracy (avg@n), pass@k and greedy accuracy, as fractions."""

    method: str
    seed: int
    level: int
    band: str
    accuracy: float
    passes: dict[int, float]
    greedy: float | None


@dataclass
class EntropyChange:
    """A metric's mean over a run's first and last ``window`` steps (None: not logged there) and the change."""

    method: str
    seed: int
    metric: str
    steps: int
    window: int
    start: float | None
    end: float | None

    @property
    def change(self) -> float | None:
        return None if self.start is None or self.end is None else self.end - self.start


@dataclass
class RunCost:
    """Step time over steps 2 onward (step 1 holds worker warm-up) and the tokens trained in them."""

    method: str
    seed: int
    machine: str
    steps: int
    seconds: float
    trained_tokens: float
    concurrent_runs: int = 1  # runs the study trained at once (run --jobs): above 1 the machine was shared

    @property
    def seconds_per_step(self) -> float:
        return self.seconds / self.steps

    @property
    def seconds_per_1k_tokens(self) -> float | None:
        return 1000 * self.seconds / self.trained_tokens if self.trained_tokens else None


@dataclass
class PerSeed:
    levels: list[LevelScore] = field(default_factory=list)
    entropy: list[EntropyChange] = field(default_factory=list)
    cost: list[RunCost] = field(default_factory=list)

    def seeds(self, method: str) -> list[int]:
        return sorted({row.seed for row in self.levels if row.method == method})

    def methods(self) -> set[str]:
        return {row.method for row in (*self.levels, *self.entropy, *self.cost)}

    def band_levels(self) -> dict[str, list[int]]:
        """band -> its levels, over every run (bands in the ladder's order)."""
        found: dict[str, set[int]] = {}
        for row in self.levels:
            found.setdefault(row.band, set()).add(row.level)
        order = [b for b in PLAN_BANDS if b in found] + sorted(set(found) - set(PLAN_BANDS))
        return {band: sorted(found[band]) for band in order}

    def level_bands(self) -> dict[int, str]:
        """level -> its band, in level order (the order of every per-level column)."""
        return dict(sorted((level, band) for band, levels in self.band_levels().items() for level in levels))

    def ks(self) -> list[int]:
        return sorted({k for row in self.levels for k in row.passes})

    def level_value(self, method: str, seed: int, level: int, column: str, k: int | None = None) -> float | None:
        """One run's value at one level: column accuracy, greedy or pass_at_k (with k)."""
        if column not in ("accuracy", "greedy", "pass_at_k"):
            raise ValueError(f"no per-level column {column!r}")
        for row in self.levels:
            if (row.method, row.seed, row.level) == (method, seed, level):
                if column == "pass_at_k":
                    return row.passes.get(k)
                return row.accuracy if column == "accuracy" else row.greedy
        return None

    def band_value(self, method: str, seed: int, levels: Sequence[int], column: str, k: int | None = None):
        """The mean over ``levels`` of one seed's column (accuracy, greedy, pass_at_k); None if a level lacks it."""
        values = [self.level_value(method, seed, level, column, k) for level in levels]
        return None if not values or any(v is None for v in values) else sum(values) / len(values)

    def entropy_change(self, method: str, seed: int, metric: str) -> EntropyChange | None:
        return next((e for e in self.entropy if (e.method, e.seed, e.metric) == (method, seed, metric)), None)

    def endpoint_values(self, endpoint: Endpoint, method: str) -> dict[int, float]:
        """seed -> the endpoint's per-seed value of ``method``, for the seeds that have one."""
        values = {}
        if endpoint.kind == "entropy_change":
            for row in self.entropy:
                if (row.method, row.metric) == (method, endpoint.metric) and row.change is not None:
                    values[row.seed] = row.change
            return dict(sorted(values.items()))
        levels = self.band_levels().get(endpoint.band, [])
        for seed in self.seeds(method) if levels else []:
            value = self.band_value(method, seed, levels, endpoint.kind, endpoint.k)
            if value is not None:
                values[seed] = value
        return values

    def why_no_values(self, endpoint: Endpoint, method: str) -> str:
        """Why ``method`` has no per-seed value of ``endpoint``."""
        if not self.seeds(method):
            return f"{method} has no finished run"
        if endpoint.kind == "entropy_change":
            return f"{method} logged no {endpoint.metric} in its first and last steps"
        if endpoint.band not in self.band_levels():
            return f"no level of the study is in band {endpoint.band} (bands: {', '.join(self.band_levels())})"
        if endpoint.kind == "pass_at_k" and endpoint.k not in self.ks():
            return f"the evaluation has no pass@{endpoint.k}"
        return f"{method}'s runs lack a {endpoint.kind} evaluation of a level"

    # -- the CSV files (committed under docs/ with the report) --

    def to_csv(self, directory: Path) -> list[Path]:
        directory.mkdir(parents=True, exist_ok=True)
        ks = self.ks()
        paths = [directory / "accuracy.csv", directory / "entropy.csv", directory / "cost.csv"]

        def cell(value):
            return "" if value is None else repr(value) if isinstance(value, float) else str(value)

        with open(paths[0], "w", newline="") as stream:
            out = csv.writer(stream)
            out.writerow(["method", "seed", "level", "band", "accuracy", *(f"pass@{k}" for k in ks), "greedy"])
            for r in self.levels:
                passes = [cell(r.passes.get(k)) for k in ks]
                out.writerow([r.method, r.seed, r.level, r.band, cell(r.accuracy), *passes, cell(r.greedy)])
        with open(paths[1], "w", newline="") as stream:
            out = csv.writer(stream)
            out.writerow(["method", "seed", "metric", "steps", "window", "start", "end", "change"])
            for e in self.entropy:
                values = [cell(e.start), cell(e.end), cell(e.change)]
                out.writerow([e.method, e.seed, e.metric, e.steps, e.window, *values])
        with open(paths[2], "w", newline="") as stream:
            out = csv.writer(stream)
            out.writerow(["method", "seed", "machine", "steps_timed", "seconds", "trained_tokens", "concurrent_runs"])
            for c in self.cost:
                timing = [cell(c.seconds), cell(c.trained_tokens), c.concurrent_runs]
                out.writerow([c.method, c.seed, c.machine, c.steps, *timing])
        return paths

    @classmethod
    def from_csv(cls, directory: Path) -> PerSeed:
        def number(text: str) -> float | None:
            return None if text == "" else float(text)

        result = cls()
        with open(directory / "accuracy.csv", newline="") as stream:
            for row in csv.DictReader(stream):
                passes = {int(key[5:]): float(v) for key, v in row.items() if key.startswith("pass@") and v != ""}
                result.levels.append(
                    LevelScore(row["method"], int(row["seed"]), int(row["level"]), row["band"],
                               float(row["accuracy"]), passes, number(row["greedy"]))
                )  # fmt: skip
        with open(directory / "entropy.csv", newline="") as stream:
            for row in csv.DictReader(stream):
                result.entropy.append(
                    EntropyChange(row["method"], int(row["seed"]), row["metric"], int(row["steps"]),
                                  int(row["window"]), number(row["start"]), number(row["end"]))
                )  # fmt: skip
        with open(directory / "cost.csv", newline="") as stream:
            for row in csv.DictReader(stream):
                result.cost.append(
                    RunCost(row["method"], int(row["seed"]), row["machine"], int(row["steps_timed"]),
                            float(row["seconds"]), float(row["trained_tokens"]), int(row.get("concurrent_runs") or 1))
                )  # fmt: skip
        return result


def _summary(path: Path) -> dict:
    if not path.is_file():
        raise SystemExit(f"error: {path} is missing: the run's evaluation did not finish")
    return _json(path)


def report_ks(plan: StudyPlan, summary: Mapping) -> list[int]:
    """The pass@k the report shows: the plan's, and the largest the evaluation has (k = n)."""
    return sorted({e.k for e in plan.endpoints if e.kind == "pass_at_k"} | {max(map(int, summary["pass@k"]))})


def window_means(rows: Sequence[dict], metric: str, steps: int, window: int) -> tuple[float | None, float | None]:
    """The metric's mean over steps 1..window and over steps steps-window+1..steps (None where it was not logged)."""

    def mean(low, high):
        values = [r[metric] for r in rows if low <= r["step"] <= high and metric in r]
        return sum(values) / len(values) if values else None

    return mean(1, window), mean(steps - window + 1, steps)


def run_cost(method: str, seed: int, run: Path, rows: Sequence[dict]) -> RunCost | None:
    timed = [r for r in rows if r["step"] >= 2 and "timing_s/step" in r]
    if not timed:
        return None
    done = _json(run / "done.json")
    return RunCost(
        method, seed, done.get("machine", "not recorded"), len(timed),
        sum(r["timing_s/step"] for r in timed), sum(r.get("tokens/trained", 0) for r in timed),
        int(done.get("concurrent_runs", 1)),
    )  # fmt: skip


def collect(folder: Path, plan: StudyPlan, runs: Mapping[str, Mapping[int, Path]] | None = None) -> PerSeed:
    """The per-seed values of every finished run of ``folder`` (a study folder or its records)."""
    runs = finished_runs(folder) if runs is None else runs
    result = PerSeed()
    ks = None
    metrics = list(dict.fromkeys([*ENTROPY_SUMMARY, *(e.metric for e in plan.endpoints if e.metric)]))
    for method in [BASE, *method_order(plan, runs)]:
        for seed, run in runs.get(method, {}).items():
            summaries = sorted((run / "eval").glob("*/summary.json"))
            if not summaries:
                raise SystemExit(f"error: {run / 'eval'} holds no summary.json: the run's evaluation did not finish")
            for path in summaries:
                summary = _json(path)
                ks = ks or report_ks(plan, summary)
                greedy_path = run / "eval_greedy" / path.parent.name / "summary.json"
                greedy = _summary(greedy_path)["avg@n"] if (run / "eval_greedy").is_dir() else None
                level, band = level_of(path.parent.name)
                passes = {k: float(summary["pass@k"][str(k)]) for k in ks if str(k) in summary["pass@k"]}  # k <= n
                result.levels.append(LevelScore(method, seed, level, band, float(summary["avg@n"]), passes, greedy))
            if method == BASE:
                continue
            rows = metric_rows(run)
            steps = run_steps(run, rows)
            for metric in metrics:
                start, end = window_means(rows, metric, steps, plan.window) if steps else (None, None)
                result.entropy.append(EntropyChange(method, seed, metric, steps or 0, plan.window, start, end))
            cost = run_cost(method, seed, run, rows)
            if cost:
                result.cost.append(cost)
    return result


# ---- the endpoints ------------------------------------------------------------------------------------------------


def scale_of(endpoint: Endpoint) -> tuple[float, int, str]:
    """How a difference of this endpoint prints: factor, digits, unit."""
    return (1.0, 3, "nats") if endpoint.kind == "entropy_change" else (100.0, 1, "points")


@dataclass
class EndpointResult:
    endpoint: Endpoint
    method_values: dict[int, float]
    reference_values: dict[int, float]
    estimate: Estimate | None  # at the level it is judged at (primary: 1 - alpha; secondary: Holm's)
    p: float | None  # primary: the test's p-value; secondary: Holm-adjusted
    verdict: str
    note: str = ""

    @property
    def level_text(self) -> str:
        if self.estimate is None:
            return "-"
        confidence = f"{100 * self.estimate.level:.4g}%"
        return f"primary, {confidence}" if self.endpoint.family == "primary" else f"Holm-adjusted, {confidence}"


def compare(a: Mapping[int, float], b: Mapping[int, float], analysis: str, level: float) -> Estimate | None:
    """a − b over seeds: paired on the seed indices both have, or Welch's; None without seeds to compare."""
    if analysis == "paired":
        common = sorted(set(a) & set(b))
        return paired_difference([a[s] for s in common], [b[s] for s in common], level) if common else None
    return welch_difference(list(a.values()), list(b.values()), level) if a and b else None


def analyse(plan: StudyPlan, per_seed: PerSeed) -> list[EndpointResult]:
    """Every endpoint of the plan, in its order: the difference, its interval and p-value, the verdict. Only the
    planned seeds 1..n of each method enter (a seed beyond the plan is a deviation, not more evidence)."""
    level = 1.0 - plan.alpha

    def planned(endpoint: Endpoint, method: str) -> dict[int, float]:
        values = per_seed.endpoint_values(endpoint, method)
        return {seed: v for seed, v in values.items() if seed <= plan.seeds[method]}

    raw = []
    for endpoint in plan.endpoints:
        a, b = planned(endpoint, endpoint.method), planned(endpoint, endpoint.reference)
        raw.append((endpoint, a, b, compare(a, b, plan.analysis, level)))
    secondary = [i for i, (e, *_) in enumerate(raw) if e.family == "secondary"]
    missing = Estimate(float("nan"), None, 0, level=level)  # an endpoint without runs still counts in Holm's m
    family = [raw[i][3] or missing for i in secondary]
    holm = dict(zip(secondary, holm_intervals(family, plan.alpha)))
    adjusted = dict(zip(secondary, holm_adjusted_p([e.p_value for e in family])))
    results = []
    for i, (endpoint, a, b, estimate) in enumerate(raw):
        shown = None if estimate is None else holm.get(i, estimate)
        p = adjusted.get(i) if i in holm else (estimate.p_value if estimate else None)
        short = [
            f"{m}: {len(values)} of {plan.seeds[m]} planned seeds"
            + ("" if values else f", {per_seed.why_no_values(endpoint, m)}")
            for m, values in ((endpoint.method, a), (endpoint.reference, b))
            if len(values) < plan.seeds[m]
        ]
        if shown is None:
            verdict, note = "inconclusive", "; ".join(short) or "no seeds to compare"
        elif short:
            verdict, note = "inconclusive", "; ".join(short)
        else:
            verdict, note = shown.verdict(endpoint.direction), ""
        results.append(EndpointResult(endpoint, a, b, shown, p, verdict, note))
    return results


def interval_text(estimate: Estimate | None, scale: float, digits: int) -> str:
    """An interval as "+1.2 [+0.3, +2.1] (5 seeds)"; "no spread (k seeds)" and "(1 seed)" as ``Estimate.format``."""
    if estimate is None:
        return "no runs"
    if estimate.half_width is None or estimate.no_spread:
        return estimate.format(scale, digits, signed=True)
    return (
        f"{estimate.mean * scale:+.{digits}f} [{estimate.low * scale:+.{digits}f}, "
        f"{estimate.high * scale:+.{digits}f}] ({estimate.seeds} seeds)"
    )


def endpoint_table(results: Sequence[EndpointResult]) -> list[str]:
    lines = [
        "| id | claim | difference [interval] | judged as | p | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        scale, digits, unit = scale_of(r.endpoint)
        p = "-" if r.p is None else f"{r.p:.3g}" + (" (adjusted)" if r.endpoint.family == "secondary" else "")
        verdict = f"{r.verdict} ({r.note})" if r.note else r.verdict
        lines.append(
            f"| {r.endpoint.id} | {r.endpoint.claim()} | {interval_text(r.estimate, scale, digits)} {unit} | "
            f"{r.level_text} | {p} | {verdict} |"
        )
    return lines


# ---- accuracy, greedy accuracy and pass@k tables -------------------------------------------------------------------


def _pm(values: Sequence[float], scale: float = 100.0, digits: int = 1) -> str:
    return mean_ci(values).format(scale, digits) if values else "-"


def level_cells(per_seed: PerSeed, method: str, column: str, k: int | None = None) -> list[str]:
    cells = []
    for level in per_seed.level_bands():
        values = [per_seed.level_value(method, s, level, column, k) for s in per_seed.seeds(method)]
        cells.append(_pm([v for v in values if v is not None]))
    return cells


def band_cells(per_seed: PerSeed, method: str, column: str, iqm: bool, resamples: int) -> list[str]:
    cells = []
    for levels in per_seed.band_levels().values():
        seeds = per_seed.seeds(method)
        means = [per_seed.band_value(method, s, levels, column) for s in seeds]
        cells.append(_pm([v for v in means if v is not None]))
        if iqm:
            strata = {
                level: [v for s in seeds if (v := per_seed.level_value(method, s, level, column)) is not None]
                for level in levels
            }
            strata = {level: values for level, values in strata.items() if values}
            cells.append(iqm_bootstrap(strata, resamples=resamples).format(100, 1) if strata else "-")
    return cells


def accuracy_tables(per_seed: PerSeed, methods: Sequence[str], resamples: int) -> list[str]:
    levels = per_seed.level_bands()
    rows = [m for m in (BASE, *methods) if per_seed.seeds(m)]
    lines = [
        "Per level, mean ± 95% t-interval over seeds (%):",
        "",
        "| method | seeds | " + " | ".join(benchmark_name(lv, b) for lv, b in levels.items()) + " |",
        "|---|---|" + "---|" * len(levels),
    ]
    for m in rows:
        lines.append(f"| {label(m)} | {len(per_seed.seeds(m))} | " + " | ".join(level_cells(per_seed, m, "accuracy")))
        lines[-1] += " |"
    bands = per_seed.band_levels()
    lines += [
        "",
        "Per band: per seed the mean over the band's levels, then mean ± 95% t-interval over seeds; beside it the "
        "interquartile mean of the per-seed, per-level values with a stratified bootstrap 95% interval "
        f"(strata = the band's levels, {resamples} resamples) (%):",
        "",
        "| method | " + " | ".join(f"{b} mean ± t | {b} IQM [bootstrap]" for b in bands) + " |",
        "|---|" + "---|---|" * len(bands),
    ]
    for m in rows:
        lines.append(f"| {label(m)} | " + " | ".join(band_cells(per_seed, m, "accuracy", True, resamples)) + " |")
    return lines


def greedy_table(per_seed: PerSeed, methods: Sequence[str]) -> list[str]:
    levels = per_seed.level_bands()
    bands = per_seed.band_levels()
    rows = [m for m in (BASE, *methods) if any(per_seed.level_value(m, s, lv, "greedy") is not None
                                                  for s in per_seed.seeds(m) for lv in levels)]  # fmt: skip
    if not rows:
        return ["No run has a greedy evaluation (eval_greedy/)."]
    lines = [
        "| method | " + " | ".join(benchmark_name(lv, b) for lv, b in levels.items()) + " | "
        + " | ".join(f"{b} (mean of levels)" for b in bands) + " |",
        "|---|" + "---|" * (len(levels) + len(bands)),
    ]  # fmt: skip
    for m in rows:
        band_means = band_cells(per_seed, m, "greedy", False, 0)
        lines.append(f"| {label(m)} | " + " | ".join([*level_cells(per_seed, m, "greedy"), *band_means]) + " |")
    return lines


def guess_row(answers: Mapping[str, Mapping] | None, levels: Mapping[int, str], k: int) -> str:
    cells = []
    for level, band in levels.items():
        entry = (answers or {}).get(benchmark_name(level, band))
        if not entry or not entry["train"] or not entry["eval"]:  # no answers of that level to draw from
            cells.append("-")
            continue
        train = [answer for answer, count in entry["train"].items() for _ in range(count)]
        cells.append(f"{100 * guessing_baseline(train, entry['eval'], k):.1f}")
    return "| question-blind guesser | " + " | ".join(cells) + " |"


def passk_tables(per_seed: PerSeed, methods: Sequence[str], answers: Mapping | None, answers_note: str) -> list[str]:
    levels = per_seed.level_bands()
    lines = []
    for k in per_seed.ks():
        lines += [
            f"pass@{k} per level, mean ± 95% t-interval over seeds (%); the last row is a guesser that sees the level, "
            "not the question, and draws k answers from the level's training answers (mean over the evaluated "
            "problems of 1 − (1 − p)^k, p the training frequency of the problem's answer):",
            "",
            "| method | " + " | ".join(benchmark_name(lv, b) for lv, b in levels.items()) + " |",
            "|---|" + "---|" * len(levels),
        ]
        for m in (BASE, *methods):
            if per_seed.seeds(m):
                lines.append(f"| {label(m)} | " + " | ".join(level_cells(per_seed, m, "pass_at_k", k)) + " |")
        lines += [guess_row(answers, levels, k), ""]
    if answers_note:
        lines.append(answers_note)
    return lines


# ---- the answers behind the guessing baseline ------------------------------------------------------------------------


def answers_from_parquets(folder: Path, study: Mapping) -> dict[str, dict]:
    """Per level: the training answers' counts (train parquet, rows of that level) and the answers of the problems
    the evaluation scored (the first ``problems_per_level`` of the level's parquet, or all)."""
    import pandas as pd

    train = pd.read_parquet(study["demo"]["train"])
    by_level: dict[int, Counter] = {}
    for extra, reward in zip(train["extra_info"], train["reward_model"]):
        by_level.setdefault(int(extra["level"]), Counter())[str(reward["ground_truth"])] += 1
    limit = (study.get("eval") or {}).get("problems_per_level")
    answers = {}
    for path in sorted((folder / "eval_data").glob("L*.parquet")):
        level, _ = level_of(path.stem)
        evaluated = [str(r["ground_truth"]) for r in pd.read_parquet(path)["reward_model"]][:limit]
        counts = by_level.get(level, Counter())
        answers[path.stem] = {"train": dict(sorted(counts.items())), "eval": evaluated}
    return answers


def level_answers(folder: Path, study: Mapping) -> tuple[dict | None, str]:
    """The answers of every level and a note when they are not available."""
    if (folder / "answers.json").is_file():
        return _json(folder / "answers.json")["levels"], ""
    train = (study.get("demo") or {}).get("train")
    if train and Path(train).is_file() and any((folder / "eval_data").glob("L*.parquet")):
        return answers_from_parquets(folder, study), ""
    return None, (
        f"The guesser's row is empty: {folder} has no answers.json and the training data "
        f"({train or 'not named in study.json'}) or the evaluation parquets (eval_data/) are not there."
    )


# ---- entropy ---------------------------------------------------------------------------------------------------------


def update_kind(row: Mapping) -> str:
    """What updated the policy at this step. A method that logs no ``uec/update_ran`` updates every step."""
    main = bool(row.get("uec/update_ran", 1))
    replay = row.get("uec/replay_rows", 0) > 0
    if main:
        return "main + replay" if replay else "main only"
    return "replay only" if replay else "no update"


def step_changes(rows: Sequence[dict], key: str) -> dict[str, list[float]]:
    """Change of ``key`` from step t to step t + 1, grouped by what updated the policy at step t. The rollout of
    step t is generated before step t's updates, so those updates act between rollout t and rollout t + 1."""
    by_step = {r["step"]: r for r in rows if key in r}
    groups: dict[str, list[float]] = {}
    for step, row in sorted(by_step.items()):
        if step + 1 in by_step:
            groups.setdefault(update_kind(row), []).append(by_step[step + 1][key] - row[key])
    return groups


def entropy_order(methods: Sequence[str]) -> list[str]:
    """The methods with the release-rules UEC-RL right after the paper-rules one, so the two read side by side."""
    order = [m for m in methods if m != "uec_release"]
    if "uec_release" in methods:
        order.insert(order.index("uec") + 1 if "uec" in order else len(order), "uec_release")
    return order


def _mean_over_seeds(per_run: Sequence[float | None], digits: int, signed: bool = False) -> str:
    values = [v for v in per_run if v is not None]
    return mean_ci(values).format(1, digits, signed) if values else "-"


def entropy_lines(per_seed: PerSeed, metrics: Mapping[str, Mapping[int, list]], methods: Sequence[str]) -> list[str]:
    methods = entropy_order([m for m in methods if m in metrics])
    window = next((e.window for e in per_seed.entropy), 1)
    names = list(dict.fromkeys(e.metric for e in per_seed.entropy))
    lines = [
        f"Start and end: a metric's mean over a run's first and last {window} steps (W = max(1, planned steps // 10)),"
        " per seed, then mean ± 95% t-interval over seeds (nats). `entropy/regular_rollout` is the policy's entropy"
        " on each step's regular rollout; `entropy/update_rows/main` the paper's figure, over the rows the main"
        ' update trains on (docs/algorithm.md, "Entropy").',
        "",
        "| method | " + " | ".join(f"{n} start | end | change" for n in names) + " |",
        "|---|" + "---|---|---|" * len(names),
    ]
    for m in methods:
        cells = []
        for name in names:
            rows = [per_seed.entropy_change(m, s, name) for s in sorted(metrics[m])]
            rows = [r for r in rows if r]
            cells += [
                _mean_over_seeds([r.start for r in rows], 3),
                _mean_over_seeds([r.end for r in rows], 3),
                _mean_over_seeds([r.change for r in rows], 3, True),
            ]
        lines.append(f"| {label(m)} | " + " | ".join(cells) + " |")

    logged = {key for runs in metrics.values() for rows in runs.values() for r in rows for key in r}
    bands = [b for b in PLAN_BANDS if f"entropy/regular_rollout/{b}" in logged]
    keys = [("all rows", "entropy/regular_rollout"), *((b, f"entropy/regular_rollout/{b}") for b in bands)]
    lines += [
        "",
        "Change of `entropy/regular_rollout` from step t to step t + 1, grouped by what updated the policy at step t "
        "(`uec/update_ran`, `uec/replay_rows`; a method that logs neither updates every step): per seed the mean "
        "change over those steps, then mean ± 95% t-interval over seeds (nats per step), with the number of steps "
        "over all seeds. Per band: the same metric over the rollout rows of that band.",
        "",
        "| method | what ran | " + " | ".join(name for name, _ in keys) + " |",
        "|---|---|" + "---|" * len(keys),
    ]
    for m in methods:
        per_run = {key: [step_changes(rows, key) for rows in metrics[m].values()] for _, key in keys}
        for kind in UPDATE_KINDS:
            cells = []
            for _, key in keys:
                groups = [g.get(kind, []) for g in per_run[key]]
                count = sum(len(g) for g in groups)
                means = [sum(g) / len(g) for g in groups if g]
                cells.append(f"{mean_ci(means).format(1, 4, True)} ({count})" if means else "-")
            if any(c != "-" for c in cells):
                lines.append(f"| {label(m)} | {kind} | " + " | ".join(cells) + " |")

    present = [c for c in COVARIANCES if f"entropy/cov_logp_adv/{c}" in logged]
    if present:
        lines += [
            "",
            "Cov(log π_old(a), Â) over the tokens of each update (`entropy/cov_logp_adv/…`: main update, replay "
            "update, and each by the rows' origin): per seed the mean over the steps that logged it, then mean ± 95% "
            "t-interval over seeds. To first order an update changes entropy by −η·Cov: positive is an entropy sink.",
            "",
            "| method | " + " | ".join(present) + " |",
            "|---|" + "---|" * len(present),
        ]
        for m in methods:
            cells = []
            for c in present:
                key = f"entropy/cov_logp_adv/{c}"
                per_run = [[r[key] for r in rows if key in r] for rows in metrics[m].values()]
                cells.append(_mean_over_seeds([sum(v) / len(v) if v else None for v in per_run], 4, True))
            lines.append(f"| {label(m)} | " + " | ".join(cells) + " |")
    mechanism = uec_mechanism_lines(metrics, methods)
    return lines + mechanism


def uec_mechanism_lines(metrics: Mapping[str, Mapping[int, list]], methods: Sequence[str]) -> list[str]:
    """Replay's share of negative rows, and how many of each exploration group's samples were correct."""
    rows_out = []
    for m in methods:
        negative, no_success, successes = [], [], []
        for rows in metrics[m].values():
            shares = [r["uec/replay_negative_share"] for r in rows if r.get("uec/replay_rows", 0) > 0
                      and "uec/replay_negative_share" in r]  # fmt: skip
            negative.append(sum(shares) / len(shares) if shares else None)
            groups = Counter()
            for r in rows:
                for key, value in r.items():
                    if key.startswith("uec/exploration_group_successes/"):
                        groups[int(key.rsplit("/", 1)[1])] += value
            total = sum(groups.values())
            no_success.append(groups[0] / total if total else None)
            successes.append(sum(k * n for k, n in groups.items()) / total if total else None)
        if any(v is not None for v in (*negative, *no_success)):
            rows_out.append(
                f"| {label(m)} | {_mean_over_seeds([None if v is None else 100 * v for v in negative], 1)} | "
                f"{_mean_over_seeds([None if v is None else 100 * v for v in no_success], 1)} | "
                f"{_mean_over_seeds(successes, 2)} |"
            )
    if not rows_out:
        return []
    return [
        "",
        "UEC-RL's entropy levers, per seed then mean ± 95% t-interval over seeds: the share of replayed rows with "
        "Â < 0 (mean over replay steps; 0 under the paper's admission Â > A₀), the share of exploration groups with "
        "no correct sample, and the mean number of correct samples per exploration group (all steps pooled).",
        "",
        "| method | replay rows with Â < 0 (%) | exploration groups without success (%) | correct per group |",
        "|---|---|---|---|",
        *rows_out,
    ]


# ---- cost ------------------------------------------------------------------------------------------------------------


def cost_lines(per_seed: PerSeed, methods: Sequence[str], resamples: int) -> list[str]:
    shared = [c for c in per_seed.cost if c.method in methods and c.concurrent_runs > 1]
    note = (
        [f"Not shown for {len(shared)} run(s) trained while other runs shared the machine (`run --jobs`): "
         + ", ".join(f"{c.method} seed {c.seed}" for c in shared) + ".", ""]
        if shared else []
    )  # fmt: skip
    by_method = {m: [c for c in per_seed.cost if c.method == m and c.concurrent_runs == 1] for m in methods}
    by_method = {m: cs for m, cs in by_method.items() if cs}
    if not by_method:
        return [*note, "No run logged `timing_s/step` on a machine of its own."]
    machines = sorted({c.machine for cs in by_method.values() for c in cs})
    reference = by_method.get("grpo")

    def ratio(values, reference_values):
        if values is reference_values:
            return "1 (reference)"
        if not reference_values or not values:
            return "-"
        if len(values) == 1 and len(reference_values) == 1:
            return f"{values[0] / reference_values[0]:.2f} (1 seed each)"
        return ratio_bootstrap(values, reference_values, resamples=resamples).format(1, 2)

    lines = [
        "Seconds per step over steps 2 onward (step 1 holds worker warm-up) and seconds per 1,000 trained tokens "
        "(prompt and response tokens of every row an actor update trains on, replay included), per seed, then mean "
        "± 95% t-interval over seeds; the ratio to GRPO is of the means, with a bootstrap 95% interval (each "
        f"method's seeds resampled independently, {resamples} resamples). "
        + (f"All runs ran on one machine: {machines[0]}." if len(machines) == 1 else
           f"The runs ran on {len(machines)} machines (see \"What ran where\"): the ratios mix machines."),
        "",
        "| method | seconds per step | ratio to GRPO | seconds per 1k trained tokens | ratio to GRPO |",
        "|---|---|---|---|---|",
    ]  # fmt: skip
    lines = [*note, *lines]
    for m, costs in by_method.items():
        step = [c.seconds_per_step for c in costs]
        token = [v for c in costs if (v := c.seconds_per_1k_tokens) is not None]
        if m == "grpo":
            ref_step, ref_token = step, token
        else:
            ref_step = [c.seconds_per_step for c in reference] if reference else []
            ref_token = [v for c in reference or [] if (v := c.seconds_per_1k_tokens) is not None]
        lines.append(
            f"| {label(m)} | {_pm(step, 1, 2)} | {ratio(step, ref_step)} | {_pm(token, 1, 2)} | "
            f"{ratio(token, ref_token)} |"
        )
    return lines


# ---- the plan, the runs and where they ran -------------------------------------------------------------------------


def _git(directory: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(directory), *args], capture_output=True, text=True)


def plan_commit(path: Path) -> tuple[str | None, bool]:
    """The commit that last changed the plan file, and whether the file differs from it (uncommitted edits)."""
    result = _git(path.parent, "log", "-1", "--format=%H", "--", path.name)
    commit = (result.stdout.strip() or None) if result.returncode == 0 else None
    status = _git(path.parent, "status", "--porcelain", "--", path.name)
    edited = status.returncode == 0 and bool(status.stdout.strip())
    return commit, edited


def preregistration_lines(path: Path, commit: str | None, runs: Mapping[str, Mapping[int, Path]]) -> list[str]:
    """Whether each run trained from code that already held the plan's commit."""
    if commit is None:
        return ["The plan file is not committed: nothing shows it was written before the runs."]
    before, unknown, total = [], [], 0
    for method, seeds in runs.items():
        if method == BASE:
            continue
        for seed, run in seeds.items():
            total += 1
            code = (_json(run / "done.json").get("code") or {}).get("commit")
            check = _git(path.parent, "merge-base", "--is-ancestor", commit, code) if code else None
            if check is None or check.returncode not in (0, 1):
                unknown.append(f"{method} seed {seed}")
            elif check.returncode == 1:
                before.append(f"{method} seed {seed} ({code[:10]})")
    lines = [f"{total - len(before) - len(unknown)} of {total} runs trained from code that contains the plan's commit."]
    if before:
        lines.append(f"Trained from code without it (the plan may postdate them): {', '.join(before)}.")
    if unknown:
        lines.append(f"Unknown to this checkout's history: {', '.join(unknown)}.")
    return lines


def plan_lines(plan: StudyPlan, path: Path, runs: Mapping[str, Mapping[int, Path]]) -> list[str]:
    commit, edited = plan_commit(path)
    seeds = ", ".join(f"{m} {n}" for m, n in plan.seeds.items())
    lines = [
        f"Plan: `{path.name}`, last changed in commit `{commit or 'none (not committed)'}`"
        + (" — the file has uncommitted edits since: the report reads the edited file." if edited else "."),
        "",
        f"Task {plan.task}; {plan.steps} steps per run; analysis {plan.analysis} "
        f"({'seed k against seed k' if plan.analysis == 'paired' else 'Welch, seeds independent'}); "
        f"alpha {plan.alpha:g}: each primary endpoint at {100 * (1 - plan.alpha):g}%, the "
        f"{len(plan.secondary)} secondary endpoints Holm-corrected as one family. Seeds: {seeds}. Entropy "
        f"changes over the first and last W = {plan.window} steps.",
        "",
        *preregistration_lines(path, commit, runs),
    ]
    return lines


def where_lines(study: Mapping, runs: Mapping[str, Mapping[int, Path]], methods: Sequence[str]) -> list[str]:
    machines: dict[str, str] = {}

    def letter(machine: str) -> str:
        if machine not in machines:
            machines[machine] = chr(ord("A") + len(machines)) if len(machines) < 26 else f"M{len(machines) + 1}"
        return machines[machine]

    width = max((max(s) for s in runs.values() if s), default=0)
    rows = []
    for m in [BASE, *methods]:
        if m not in runs:
            continue
        cells = []
        for seed in range(1, width + 1):
            run = runs[m].get(seed)
            if run is None:
                cells.append("")
                continue
            done = _json(run / "done.json")
            hours = (done.get("train_seconds", 0) + done.get("eval_seconds", 0)) / 3600
            cells.append(f"{letter(done.get('machine', 'not recorded'))} ({hours:.2f} h)")
        rows.append(f"| {label(m)} | " + " | ".join(cells) + " |")
    effective = dict(o.split("=", 1) for o in study.get("settings", study.get("overrides", [])) if "=" in o)
    quoted = [f"`{k}={v}`" for k, v in effective.items() if k in QUOTED or k.startswith("uec.")]
    evaluation = study.get("eval", {})
    return [
        "Machine of each run (letter) and its wall time, training and evaluation:",
        "",
        *(f"- {code}: {machine}" for machine, code in machines.items()),
        "",
        "| method | " + " | ".join(f"seed {k}" for k in range(1, width + 1)) + " |",
        "|---|" + "---|" * width,
        *rows,
        "",
        f"Evaluation: n = {evaluation.get('n')} samples per problem at temperature {evaluation.get('temperature')}, "
        f"top_p {evaluation.get('top_p')} (eval/), and greedy, one sample at temperature 0 (eval_greedy/); "
        + (f"the first {evaluation['problems_per_level']} problems of each level."
           if evaluation.get("problems_per_level") else "every problem of each level."),
        "",
        "Settings the study changes from the paper's: " + (", ".join(quoted) or "none recorded") + ".",
    ]  # fmt: skip


# ---- exploratory -----------------------------------------------------------------------------------------------------


def exploratory_lines(plan: StudyPlan, per_seed: PerSeed, methods: Sequence[str]) -> list[str]:
    bands = per_seed.band_levels()
    pairs = [(m, "grpo") for m in methods if m != "grpo" and "grpo" in methods]
    if "uec" in methods and "uec_release" in methods:
        pairs.append(("uec_release", "uec"))
    if not pairs:
        return ["Nothing beyond the plan."]
    level = 1 - plan.alpha
    planned = {(e.method, e.reference, e.band): e.id for e in plan.endpoints if e.kind == "accuracy"}
    lines = [
        f"Not in the plan: every method against GRPO, and the release rules against the paper's, in sampled "
        f"accuracy per band ({plan.analysis}, nominal {100 * level:g}% intervals, no multiplicity correction, no "
        "verdicts). Read them as leads for a next plan, not as findings (percentage points). A comparison the plan "
        "names is not repeated here: its cell points to the claims table.",
        "",
        "| comparison | " + " | ".join(bands) + " |",
        "|---|" + "---|" * len(bands),
    ]
    for method, reference in pairs:
        cells = []
        for band, levels in bands.items():
            if (method, reference, band) in planned:
                cells.append(f"endpoint {planned[method, reference, band]} (Claims)")
                continue
            a = {s: v for s in per_seed.seeds(method) if (v := per_seed.band_value(method, s, levels, "accuracy"))
                 is not None}  # fmt: skip
            b = {s: v for s in per_seed.seeds(reference)
                 if (v := per_seed.band_value(reference, s, levels, "accuracy")) is not None}  # fmt: skip
            cells.append(interval_text(compare(a, b, plan.analysis, level), 100, 1))
        lines.append(f"| {label(method)} − {label(reference)} | " + " | ".join(cells) + " |")
    return lines


# ---- the page --------------------------------------------------------------------------------------------------------


def write_report(
    folder: Path, plan: StudyPlan, plan_path: Path, csv_dir: Path | None = None, command_line: str = "",
    resamples: int | None = None,
) -> Path:  # fmt: skip
    """report.md in ``folder`` and the per-seed CSVs in ``csv_dir`` (default ``folder``/per-seed); ``resamples``
    of every bootstrap, ``RESAMPLES`` by default."""
    resamples = resamples or RESAMPLES
    study = _json(folder / "study.json")
    runs = finished_runs(folder)
    trained = {m: s for m, s in runs.items() if m != BASE}
    if not trained:
        raise SystemExit(f"error: no finished run under {folder}/runs")
    methods = method_order(plan, trained)
    finished = {m: {seed: _json(run / "done.json").get("steps") for seed, run in s.items()} for m, s in trained.items()}
    deviations = plan_deviations(plan, finished, study.get("task", "digits"))
    per_seed = collect(folder, plan, runs)
    csv_paths = per_seed.to_csv(csv_dir or folder / "per-seed")
    results = analyse(plan, per_seed)
    metrics = {m: {seed: metric_rows(run) for seed, run in trained[m].items()} for m in methods}
    answers, answers_note = level_answers(folder, study)
    short = [r for r in results if r.verdict == "inconclusive"]
    lines = [
        "# CPU study, task v2 (carry-less chain sums)",
        "",
        f"Command: `{command_line or 'python -m uec_lab.study report --out ' + str(folder)}`. Every number on this "
        f"page comes from `uec_lab/study/report_v2.py`; the per-seed values are in "
        + ", ".join(f"`{p.name}`" for p in csv_paths) + f" (`{csv_paths[0].parent}`).",
        "",
        "## Plan and its commit",
        "",
        *plan_lines(plan, plan_path, runs),
        "",
        "## What ran where",
        "",
        *where_lines(study, runs, methods),
        "",
        "## Deviations from the plan",
        "",
        *([f"- {d}" for d in deviations] or ["None: every planned run finished with the planned steps, and no other."]),
        *(["", "Seeds beyond the plan's are left out of the claims; runs of other steps enter them as they are."]
          if deviations else []),
        "",
        "## Claims",
        "",
        "Difference method − reference per endpoint, " + (
            "paired by seed index (seed k of both methods)" if plan.analysis == "paired" else "Welch's interval"
        ) + f"; each primary endpoint at its nominal {100 * (1 - plan.alpha):g}% level, the secondary ones with Holm's "
        "intervals and adjusted p-values over their family. Verdicts: holds (the interval is on the claimed side of "
        "0), opposite (on the other side), not shown (it contains 0: absence of evidence, not evidence of absence), "
        "inconclusive (fewer seeds than planned).",
        "",
        *endpoint_table(results),
        "",
        *([f"Inconclusive: {', '.join(r.endpoint.id for r in short)} — fewer seeds than the plan fixed."]
          if short else []),
        "",
        "## Accuracy per level and band",
        "",
        *accuracy_tables(per_seed, methods, resamples),
        "",
        "## Greedy accuracy per level",
        "",
        "One greedy sample per problem (temperature 0), mean ± 95% t-interval over seeds (%):",
        "",
        *greedy_table(per_seed, methods),
        "",
        "## pass@k per level against a question-blind guesser",
        "",
        *passk_tables(per_seed, methods, answers, answers_note),
        "",
        "## Entropy",
        "",
        *entropy_lines(per_seed, metrics, methods),
        "",
        "## Cost per step and per trained token",
        "",
        *cost_lines(per_seed, methods, resamples),
        "",
        "## Exploratory",
        "",
        *exploratory_lines(plan, per_seed, methods),
    ]  # fmt: skip
    path = folder / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


# ---- compact records -------------------------------------------------------------------------------------------------


def reduced_metrics(path: Path) -> bytes:
    """metrics.jsonl with only the keys the report reads (``plan.RECORDED_METRICS``), one line per step."""
    kept = []
    for row in read_metrics(path):
        data = {k: row[k] for k in sorted(row) if k != "step" and is_recorded(k)}
        if data:
            kept.append(json.dumps({"step": row["step"], "data": data}) + "\n")
    return "".join(kept).encode()


def compact_record(run: Path) -> dict[str, bytes]:
    """Relative path -> content of a finished run's compact record."""
    files = {"done.json": (run / "done.json").read_bytes()}
    if (run / "metrics.jsonl").is_file():
        files["metrics.jsonl"] = reduced_metrics(run / "metrics.jsonl")
    for kind in ("eval", "eval_greedy"):
        for summary in sorted((run / kind).glob("*/summary.json")):
            files[f"{kind}/{summary.parent.name}/summary.json"] = summary.read_bytes()
    return files


def _differences(target: Path, files: Mapping[str, bytes]) -> list[str]:
    present = {str(p.relative_to(target)) for p in target.rglob("*") if p.is_file()}
    wrong = [name for name, content in files.items() if name not in present or (target / name).read_bytes() != content]
    return wrong + sorted(present - set(files))


def _study_without_runs(text: bytes) -> dict:
    return {k: v for k, v in json.loads(text).items() if k != "runs"}


def record_runs(out: Path, to: Path) -> list[str]:
    """Copy every finished run's compact record from the study folder ``out`` into ``to``/runs/<method>/seed<k>/,
    with study.json and the answers of each level (answers.json). A run already recorded identically is left
    alone; one whose record differs from its source stops the command, naming it, before anything is written."""
    if not (out / "study.json").is_file():
        raise SystemExit(f"error: {out} has no study.json: not a study folder")
    study_bytes = (out / "study.json").read_bytes()
    runs = finished_runs(out)
    plans, refused, kept = [], [], []
    for method, seeds in runs.items():
        for seed, run in seeds.items():
            target = to / "runs" / method / f"seed{seed}"
            files = compact_record(run)
            if (target / "done.json").is_file():
                wrong = _differences(target, files)
                if wrong:
                    refused.append(f"{target} differs from {run} in {', '.join(wrong)}")
                else:
                    kept.append(f"{method}/seed{seed}")
            else:
                plans.append((target, files))
    if (to / "study.json").is_file() and _study_without_runs((to / "study.json").read_bytes()) != _study_without_runs(
        study_bytes
    ):
        refused.append(f"{to / 'study.json'} records another study's settings than {out / 'study.json'}")
    answers, note = None, ""
    if (out / "answers.json").is_file():
        answers = (out / "answers.json").read_bytes()
    else:
        levels, note = level_answers(out, json.loads(study_bytes))
        if levels is not None:
            answers = (json.dumps({"levels": levels}, indent=1, sort_keys=True) + "\n").encode()
    if answers is not None and (to / "answers.json").is_file() and (to / "answers.json").read_bytes() != answers:
        refused.append(f"{to / 'answers.json'} differs from the answers of {out}")
    if refused:
        raise SystemExit("error: records differ from their source (delete them to record again):\n  "
                         + "\n  ".join(refused))  # fmt: skip
    to.mkdir(parents=True, exist_ok=True)
    (to / "study.json").write_bytes(study_bytes)
    messages = []
    if answers is not None:
        (to / "answers.json").write_bytes(answers)
    else:
        messages.append(f"answers.json not written: {note}")
    for target, files in plans:
        if target.exists():
            shutil.rmtree(target)  # an interrupted record (no done.json): written again
        partial = target.with_name(target.name + ".partial")
        if partial.exists():
            shutil.rmtree(partial)
        for name, content in files.items():
            (partial / name).parent.mkdir(parents=True, exist_ok=True)
            (partial / name).write_bytes(content)
        os.replace(partial, target)
    messages.append(f"recorded {len(plans)} run(s) into {to}; {len(kept)} already recorded and unchanged")
    return messages
