"""Training curves of several runs on one picture: one subplot per metric, one line per run.

    python -m uec_recipe.eval.curves --run GRPO=grpo.jsonl --run UEC-RL=uec.jsonl --out curves.png \
        [--metrics entropy/regular_rollout 'uec/*' ...] [--smooth K]

A name given several times (``--run UEC-RL=s1.jsonl --run UEC-RL=s2.jsonl``) is one method over several seeds:
its line is the mean over the seeds at each step they all logged, with the range between the lowest and the highest
seed shaded. ``--smooth K`` draws a trailing moving average over K logged steps (per seed, before the mean).

Reads the JSONL that verl's `file` logger writes (trainer.logger includes "file"; verl/utils/tracking.py
FileLogger: one line per `log` call, `{"step": <int>, "data": {<metric>: <value>, ...}}`, at
$VERL_FILE_LOGGER_PATH or $VERL_FILE_LOGGER_ROOT/<project>/<experiment>.jsonl). Also reads a flat JSONL with one
object per step: `{"step": <int>, <metric>: <value>, ...}`. Lines for the same step are merged (verl logs the
pre-training validation at step 0 on its own line).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

# Entropy, length, reward and validation accuracy tell whether a run explores, collapses or explodes; uec/* are
# the recipe's own counters (difficult prompts, kept exploration samples, buffer sizes).
DEFAULT_METRICS = (
    "entropy/regular_rollout",
    "response_length/mean",
    "critic/score/mean",
    "val-core/*/mean@*",
    "val-passk/*/pass@1",
    "uec/*",
)

Series = dict[str, list[tuple[int, float]]]  # metric -> [(step, value)] sorted by step
Runs = Mapping[str, "Series | Sequence[Series]"]  # a name -> one run, or the runs of one method's seeds


def read_metrics(path: str | Path) -> Series:
    """metric -> [(step, value)] from a verl file-logger JSONL or a flat per-step JSONL; non-numbers are skipped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"metrics file not found: {path}")
    by_step: dict[int, dict[str, float]] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} line {number} is not JSON: {error}") from None
        if not isinstance(record, dict) or "step" not in record:
            raise ValueError(f"{path} line {number} has no 'step' key")
        if isinstance(record.get("data"), dict):  # verl FileLogger
            metrics = record["data"]
        else:  # flat: the step's metrics beside its step
            metrics = {k: v for k, v in record.items() if k != "step"}
        merged = by_step.setdefault(int(record["step"]), {})
        for key, value in metrics.items():
            # orjson writes NaN/inf as null; strings and lists are tables or notes, not curves.
            if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
                merged[key] = float(value)
    series: Series = {}
    for step in sorted(by_step):
        for key, value in by_step[step].items():
            series.setdefault(key, []).append((step, value))
    return series


def seeds_of(run: "Series | Sequence[Series]") -> list[Series]:
    return [run] if isinstance(run, Mapping) else list(run)


def select_metrics(runs: Runs, patterns: Sequence[str]) -> tuple[list[str], list[str]]:
    """The metrics to draw, in pattern order, and notes on what was asked for but is missing.

    A pattern is a metric name or a glob (`uec/*`). Raises ValueError if nothing at all matches.
    """
    available = sorted({key for run in runs.values() for series in seeds_of(run) for key in series})
    chosen: list[str] = []
    notes: list[str] = []
    for pattern in patterns:
        matches = (
            fnmatch.filter(available, pattern)
            if any(c in pattern for c in "*?[")
            else ([pattern] if pattern in available else [])
        )
        if not matches:
            notes.append(f"skipped {pattern}: in no run")
        chosen += [m for m in matches if m not in chosen]
    if not chosen:
        raise ValueError(f"none of the metrics {list(patterns)} is in any run ({', '.join(runs)})")
    for metric in chosen:
        lacking = [name for name, run in runs.items() if all(metric not in series for series in seeds_of(run))]
        if lacking:
            notes.append(f"{metric}: no data in run(s) {', '.join(lacking)}")
    return chosen, notes


def smoothed(points: list[tuple[int, float]], window: int) -> list[tuple[int, float]]:
    """Trailing moving average over ``window`` logged points (the first points average what exists so far)."""
    if window <= 1:
        return list(points)
    values = [v for _, v in points]
    return [(step, sum(values[max(0, i - window + 1) : i + 1]) / (i - max(0, i - window + 1) + 1))
            for i, (step, _) in enumerate(points)]  # fmt: skip


def aggregate(seeds: Sequence[list[tuple[int, float]]]) -> tuple[list[int], list[float], list[float], list[float]]:
    """Steps every seed logged, and the mean, lowest and highest value over the seeds at each of them."""
    by_seed = [dict(points) for points in seeds]
    steps = sorted(set.intersection(*(set(d) for d in by_seed)))
    columns = [[d[step] for d in by_seed] for step in steps]
    return steps, [sum(c) / len(c) for c in columns], [min(c) for c in columns], [max(c) for c in columns]


def plot_curves(
    runs: Runs,
    metrics: Sequence[str],
    out: str | Path | None = None,
    *,
    columns: int = 3,
    subplot_inches: tuple[float, float] = (4.8, 3.2),
    dpi: int = 100,
    smooth: int = 1,
):
    """A matplotlib Figure (Agg canvas, no global pyplot state) with one subplot per metric; saved as PNG if out.

    The picture is columns' x rows' subplots of subplot_inches each, at dpi: with 3 metrics and the defaults,
    1440 x 320 pixels.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    columns = max(1, min(columns, len(metrics)))
    rows = math.ceil(len(metrics) / columns)
    figure = Figure(figsize=(subplot_inches[0] * columns, subplot_inches[1] * rows), dpi=dpi, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for ax, metric in zip(axes, metrics, strict=False):
        for index, (name, run) in enumerate(runs.items()):
            seeds = [smoothed(series[metric], smooth) for series in seeds_of(run) if series.get(metric)]
            if not seeds:
                continue
            # A fixed colour per run, so a run keeps its colour in subplots where another run has no data.
            color = f"C{index % 10}"
            steps, mean, low, high = aggregate(seeds)
            marker = "." if len(steps) < 30 else None
            if len(seeds) == 1:
                ax.plot(steps, mean, label=name, color=color, marker=marker)
            else:
                ax.plot(steps, mean, label=f"{name} ({len(seeds)} seeds)", color=color, marker=marker)
                ax.fill_between(steps, low, high, color=color, alpha=0.15, linewidth=0)
        ax.set_title(metric, fontsize=9)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    for ax in axes[len(metrics) :]:
        ax.set_visible(False)
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(out, format="png", dpi=dpi)
    return figure


def parse_run(text: str) -> tuple[str, Path]:
    """NAME=PATH, or just PATH (named after the file)."""
    name, sep, path = text.partition("=")
    return (name, Path(path)) if sep else (Path(text).stem, Path(text))


def main(argv: Sequence[str] | None = None):
    parser = argparse.ArgumentParser(prog="python -m uec_recipe.eval.curves", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--run", action="append", required=True, help="NAME=metrics.jsonl (repeat; a repeated NAME adds a seed)"
    )
    parser.add_argument("--out", required=True, help="PNG to write")
    parser.add_argument("--metrics", nargs="+", default=list(DEFAULT_METRICS), help="names or globs")
    parser.add_argument("--columns", type=int, default=3, help="subplots per row")
    parser.add_argument("--dpi", type=int, default=100)
    parser.add_argument("--smooth", type=int, default=1, help="trailing moving average over K logged steps")
    args = parser.parse_args(argv)
    if args.smooth < 1:
        parser.error(f"--smooth must be >= 1, got {args.smooth}")

    runs: dict[str, list[Series]] = {}
    for text in args.run:
        name, path = parse_run(text)
        runs.setdefault(name, []).append(read_metrics(path))
    metrics, notes = select_metrics(runs, args.metrics)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    figure = plot_curves(runs, metrics, args.out, columns=args.columns, dpi=args.dpi, smooth=args.smooth)
    print(f"wrote {args.out}: {len(metrics)} metric(s) x {len(runs)} run(s)", file=sys.stderr)
    return figure


if __name__ == "__main__":
    try:
        main()
    except (ValueError, FileNotFoundError) as error:
        raise SystemExit(f"error: {error}") from None
