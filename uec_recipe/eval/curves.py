"""Training curves of several runs on one picture: one subplot per metric, one line per run.

    python -m uec_recipe.eval.curves --run GRPO=grpo.jsonl --run UEC-RL=uec.jsonl --out curves.png \
        [--metrics entropy/regular_rollout 'uec/*' ...]

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


def select_metrics(runs: Mapping[str, Series], patterns: Sequence[str]) -> tuple[list[str], list[str]]:
    """The metrics to draw, in pattern order, and notes on what was asked for but is missing.

    A pattern is a metric name or a glob (`uec/*`). Raises ValueError if nothing at all matches.
    """
    available = sorted({key for series in runs.values() for key in series})
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
        lacking = [name for name, series in runs.items() if metric not in series]
        if lacking:
            notes.append(f"{metric}: no data in run(s) {', '.join(lacking)}")
    return chosen, notes


def plot_curves(
    runs: Mapping[str, Series],
    metrics: Sequence[str],
    out: str | Path | None = None,
    *,
    columns: int = 3,
    subplot_inches: tuple[float, float] = (4.8, 3.2),
    dpi: int = 100,
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
        for index, (name, series) in enumerate(runs.items()):
            points = series.get(metric)
            if points:
                steps, values = zip(*points, strict=True)
                # A fixed colour per run, so a run keeps its colour in subplots where another run has no data.
                ax.plot(steps, values, label=name, color=f"C{index % 10}", marker="." if len(points) < 30 else None)
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
    parser.add_argument("--run", action="append", required=True, help="NAME=metrics.jsonl (repeat for each run)")
    parser.add_argument("--out", required=True, help="PNG to write")
    parser.add_argument("--metrics", nargs="+", default=list(DEFAULT_METRICS), help="names or globs")
    parser.add_argument("--columns", type=int, default=3, help="subplots per row")
    parser.add_argument("--dpi", type=int, default=100)
    args = parser.parse_args(argv)

    runs: dict[str, Series] = {}
    for text in args.run:
        name, path = parse_run(text)
        if name in runs:
            raise ValueError(f"run name {name!r} given twice")
        runs[name] = read_metrics(path)
    metrics, notes = select_metrics(runs, args.metrics)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    figure = plot_curves(runs, metrics, args.out, columns=args.columns, dpi=args.dpi)
    print(f"wrote {args.out}: {len(metrics)} metric(s) x {len(runs)} run(s)", file=sys.stderr)
    return figure


if __name__ == "__main__":
    try:
        main()
    except (ValueError, FileNotFoundError) as error:
        raise SystemExit(f"error: {error}") from None
