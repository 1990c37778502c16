"""The paper's tables from evaluation summaries, as markdown and LaTeX.

    python -m uec_recipe.eval.tables --runs runs.yaml --out DIR

runs.yaml (or .json) names where each method's summaries are (a summary.json, or a directory that
`python -m uec_recipe.eval.sample --out` wrote, or a list of either):

    base: {label: Qwen2.5-Math-7B, summaries: evals/base}   # the untrained model's row (optional)
    reference: GRPO                                         # what "relative improvement" is measured against
    methods:
      GRPO: evals/grpo
      DAPO: evals/dapo
      UEC-RL: {seeds: [evals/uec-s1, evals/uec-s2, evals/uec-s3]}   # several seeds: mean ± 95% interval
    tables:                                                 # optional; default below
      - {title: Geometry3K, benchmarks: [geometry3k]}
      - {title: Text math, benchmarks: [aime24, math500, gsm8k]}
      - {title: By band, benchmarks: [l1, l2, l3], columns: {easy: [l1], hard: [l2, l3]}}   # grouped columns
      - {title: pass@k on the hard levels, kind: passk, benchmarks: [l2, l3]}

A row with ``seeds`` shows the mean over its seeds with the 95 % t-interval (uec_recipe/eval/stats.py); grouped
columns and the Average are computed per seed first (the mean over the group's benchmarks), then over seeds.

Default tables: a Geometry3K table (benchmarks named geo3k* or geometry3k*), one over the other vision benchmarks
(MathVista, MathVerse, MATH-Vision, We-Math by data_prep's names) and one over the text benchmarks, each with the
average when it has several columns, and a pass@k table per benchmark. Writes DIR/tables.md and DIR/tables.tex.
Numbers are percentages. Accuracy is avg@n (= pass@1 from n samples), and every table states n, temperature,
top_p and the grader that scored the answers ("paper" or "robust", uec_recipe/reward/).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from uec_recipe.eval.stats import Estimate, mean_ci

# Benchmark names as data_prep writes them (geo3k_test.parquet -> "geo3k_test"), for the default table layout.
GEOMETRY_PREFIXES = ("geo3k", "geometry3k")
VISION_PREFIXES = ("mathvista", "mathverse", "math_vision", "mathvision", "wemath", "we_math")
GRADER_NOTES = {
    "paper": (
        "grader=paper: the authors' scoring, mathruler grade_answer on the last \\boxed{} (EFRame "
        "examples/score_function/math.py); comparable with the paper's tables."
    ),
    "robust": (
        "grader=robust: equivalent answers accepted (units, percent, degrees, scientific notation, 'x =' removed; "
        "math-verify), near misses rejected (uec_recipe/reward/); not the paper's scoring, so not comparable "
        "with its tables."
    ),
}
REQUIRED_SUMMARY_KEYS = ("benchmark", "n", "temperature", "top_p", "grader", "avg@n", "pass@k")
RELATIVE_IMPROVEMENT_DEFINITION = (
    "Relative improvement over {ref} = (method - base) / ({ref} - base) - 1, computed on {col}: "
    "how much larger a method's gain over the base model is than {ref}'s gain (UEC-RL paper, arXiv 2604.14646)."
)


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------------------------
# Reading runs.yaml and the summaries it points to.


def load_runs(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"runs file not found: {path}")
    text = path.read_text()
    if path.suffix == ".json":
        runs = json.loads(text)
    else:
        import yaml

        runs = yaml.safe_load(text)
    if not isinstance(runs, dict) or not isinstance(runs.get("methods"), dict) or not runs["methods"]:
        raise ValueError(f"{path} must be a mapping with a non-empty 'methods' mapping (method -> summary paths)")
    return runs


def read_summaries(spec: str | Sequence[str], relative_to: Path) -> dict[str, dict[str, Any]]:
    """benchmark name -> summary, from summary.json files and/or directories that hold <benchmark>/summary.json."""
    paths = [spec] if isinstance(spec, str) else list(spec)
    by_benchmark: dict[str, dict[str, Any]] = {}
    for raw in paths:
        path = Path(raw) if Path(raw).is_absolute() else relative_to / raw
        if path.is_dir():
            files = sorted(path.glob("*/summary.json")) or sorted(path.glob("summary.json"))
            if not files:
                raise FileNotFoundError(f"no summary.json under {path}")
        elif path.is_file():
            files = [path]
        else:
            raise FileNotFoundError(f"summary path not found: {path}")
        for file in files:
            summary = json.loads(file.read_text())
            for key in REQUIRED_SUMMARY_KEYS:
                if key not in summary:
                    fix = (
                        "it was scored before graders were named; score again into a new --out with "
                        "`python -m uec_recipe.eval.sample --grader paper|robust`"
                        if key == "grader"
                        else "is it a summary.json from uec_recipe.eval.sample?"
                    )
                    raise ValueError(f"{file} lacks {key!r}; {fix}")
            name = summary["benchmark"]
            if name in by_benchmark:
                raise ValueError(f"benchmark {name!r} appears twice for one method (second: {file})")
            by_benchmark[name] = summary
    return by_benchmark


def read_seeds(spec: Any, relative_to: Path) -> dict[str, dict[str, Any]]:
    """A method's summaries: plain (one run) or ``{seeds: [run, run, ...]}``, merged per benchmark.

    Each benchmark's summary gets ``per_seed``: the summary of every seed, in order. Seeds must agree on how they
    were evaluated (n, temperature, top_p, grader, image settings) and cover the same benchmarks.
    """
    if isinstance(spec, dict):
        if "seeds" not in spec or not spec["seeds"]:
            raise ValueError(f"a method given as a mapping needs a non-empty 'seeds' list, got {spec!r}")
        seeds = [read_summaries(one, relative_to) for one in spec["seeds"]]
    else:
        seeds = [read_summaries(spec, relative_to)]
    benchmarks = set(seeds[0])
    for i, by in enumerate(seeds[1:], 2):
        if set(by) != benchmarks:
            raise ValueError(f"seed {i} covers benchmarks {sorted(by)}, seed 1 covers {sorted(benchmarks)}")
    merged = {}
    for bench in sorted(benchmarks):
        per_seed = [by[bench] for by in seeds]
        if len({_settings_of(s) for s in per_seed}) > 1:
            raise ValueError(f"{bench}: the seeds of one method were evaluated with different settings")
        merged[bench] = {**per_seed[0], "per_seed": per_seed}
    return merged


def collect(runs: Mapping[str, Any], relative_to: Path) -> tuple[str | None, dict[str, dict[str, dict[str, Any]]]]:
    """(base row label or None, {row label: {benchmark: summary}}) with the base row first."""
    results: dict[str, dict[str, dict[str, Any]]] = {}
    base_label = None
    base = runs.get("base")
    if base is not None:
        spec = base.get("summaries") if isinstance(base, dict) else base
        if spec is None:
            raise ValueError("base needs 'summaries' (a path or list of paths)")
        base_label = base.get("label", "Base model") if isinstance(base, dict) else "Base model"
        results[base_label] = read_seeds(spec, relative_to)
    for method, spec in runs["methods"].items():
        if method in results:
            raise ValueError(f"method name {method!r} collides with the base row's label")
        results[method] = read_seeds(spec, relative_to)
    return base_label, results


def seed_values(summary: dict[str, Any], key: str = "avg@n", k: str | None = None) -> list[float]:
    """A summary's value per seed: ``avg@n``, or ``pass@k`` at ``k``."""
    seeds = summary.get("per_seed", [summary])
    return [float(s[key][k]) if k is not None else float(s[key]) for s in seeds]


def column_estimate(by: Mapping[str, dict[str, Any]], benchmarks: Sequence[str], key="avg@n", k=None) -> Estimate:
    """Mean over ``benchmarks`` per seed, then mean and interval over seeds."""
    per_bench = [seed_values(by[b], key, k) for b in benchmarks]
    per_seed = [sum(values) / len(values) for values in zip(*per_bench, strict=True)]
    return mean_ci(per_seed)


# ---------------------------------------------------------------------------------------------------------------
# Building tables.


def relative_improvement(method: float, base: float, reference: float) -> float:
    """(method - base) / (reference - base) - 1; the paper's "relative improvement over GRPO" (as a fraction)."""
    if reference == base:
        raise ValueError("relative improvement is undefined when the reference equals the base model")
    return (method - base) / (reference - base) - 1.0


def _settings_of(summary: dict[str, Any]) -> tuple:
    mm = summary.get("mm_processor_kwargs")
    return (
        summary["n"],
        summary["temperature"],
        summary["top_p"],
        summary["grader"],
        None if mm is None else json.dumps(mm, sort_keys=True),
    )


def _settings_text(n, temperature, top_p, grader, mm, *, short: bool = False) -> str:
    text = f"n={n}, T={temperature}" if short else f"avg@{n} (n={n} samples per problem), temperature={temperature}"
    text += f", top_p={top_p}, grader={grader}"
    return text + (f", mm_processor_kwargs={mm}" if mm is not None else "")


def _settings_notes(results: Mapping[str, Mapping[str, dict[str, Any]]], benchmarks: Sequence[str]) -> list[str]:
    """Which n / temperature / top_p / grader (and image processor settings) each benchmark was evaluated with,
    flagging rows evaluated differently, then what each grader in the table means."""
    uniform: dict[tuple, list[str]] = {}
    flagged = []
    graders = set()
    for bench in benchmarks:
        settings = {row: _settings_of(s) for row, by in results.items() if (s := by.get(bench))}
        graders |= {values[3] for values in settings.values()}
        distinct = set(settings.values())
        if len(distinct) == 1:
            uniform.setdefault(distinct.pop(), []).append(bench)
        else:
            per_row = "; ".join(f"{row}: {_settings_text(*values, short=True)}" for row, values in settings.items())
            flagged.append(f"{bench}: NOT comparable across rows, evaluated differently ({per_row})")
    same = [f"{', '.join(benches)}: {_settings_text(*values)}" for values, benches in uniform.items()]
    described = [GRADER_NOTES.get(grader, f"grader={grader}: not a grader uec_recipe knows") for grader in graders]
    return same + flagged + sorted(described)


def _bold_best(cells: list[list[float | None]]) -> list[set[int]]:
    """Per column, the row indices holding the best value (ties all bold)."""
    best = []
    for column in zip(*cells, strict=True):
        values = [v for v in column if v is not None]
        top = max(values) if values else None
        # ties at the precision shown: cells print percentages with two decimals
        best.append({i for i, v in enumerate(column) if v is not None and round(100 * v, 2) == round(100 * top, 2)})
    return best


def _seed_note(results: Mapping[str, Mapping[str, dict[str, Any]]]) -> list[str]:
    seeds = {label: len(next(iter(by.values())).get("per_seed", [None])) for label, by in results.items() if by}
    if all(count == 1 for count in seeds.values()):
        return []
    counts = ", ".join(f"{label} {count}" for label, count in seeds.items())
    return [
        f"Seeds per row: {counts}. A cell with several seeds is their mean ± the half-width of its 95% t-interval "
        "(Student's t with seeds - 1 degrees of freedom; wide with 2-3 seeds); a single-seed cell has no interval, "
        'and "no spread" marks a cell whose seeds all gave the same value (no interval to build).'
    ]


def _cell(estimate: Estimate | None, bold: bool = False) -> str:
    if estimate is None:
        return "-"
    text = f"{100.0 * estimate.mean:.2f}"
    if estimate.no_spread:
        text += f", no spread ({estimate.seeds} seeds)"
    elif estimate.half_width is not None:
        text += f" ± {100.0 * estimate.half_width:.2f}"
    return f"**{text}**" if bold else text


def accuracy_table(
    title: str,
    results: Mapping[str, Mapping[str, dict[str, Any]]],
    benchmarks: Sequence[str],
    base_label: str | None,
    reference: str | None,
    columns: Mapping[str, Sequence[str]] | None = None,
) -> Table:
    """Rows = base model then methods; columns = benchmarks, or named groups of benchmarks (``columns``), then the
    Average if there are several, then the relative improvement over the reference.

    Rows without any of these benchmarks are left out (e.g. a VLM base model in the text table).
    """
    results = {label: by for label, by in results.items() if any(b in by for b in benchmarks)}
    labels = list(results)
    groups = dict(columns) if columns else {b: [b] for b in benchmarks}
    if len(groups) > 1:
        groups["Average"] = list(benchmarks)

    def estimate(by, members):
        return column_estimate(by, members) if all(m in by for m in members) else None

    estimates = [[estimate(results[label], members) for members in groups.values()] for label in labels]
    header = ["Method", *groups]
    notes = _settings_notes(results, benchmarks) + _seed_note(results)
    if columns:
        notes += [f"{name}: mean over {', '.join(members)}." for name, members in columns.items()]
    if len(groups) > 1:
        notes.append("Average: unweighted mean over the benchmark columns, per seed.")
    means = [[None if e is None else e.mean for e in row] for row in estimates]
    best = _bold_best(means)
    rows = [
        [label, *(_cell(e, bold=i in best[j]) for j, e in enumerate(row))]
        for i, (label, row) in enumerate(zip(labels, estimates, strict=True))
    ]

    if base_label in results:
        compared = header[-1]  # the single benchmark, or the Average
        base_value = means[labels.index(base_label)][-1]
        header.append("Gain over base (points)")
        for label, row, mean_row in zip(labels, rows, means, strict=True):
            value = mean_row[-1]
            row.append(
                "-" if label == base_label or None in (value, base_value) else f"{100 * (value - base_value):+.2f}"
            )
        notes.append(f"Gain over base: the row's {compared} minus the base model's, in percentage points.")
    if base_label in results and reference in results:
        compared = header[-2]  # the single benchmark, or the Average
        base_value = means[labels.index(base_label)][-1]
        reference_value = means[labels.index(reference)][-1]
        header.append(f"Rel. impr. over {reference}")
        for label, row, mean_row in zip(labels, rows, means, strict=True):
            value = mean_row[-1]
            if label == base_label or None in (value, base_value, reference_value) or reference_value == base_value:
                row.append("-")
            else:
                row.append(f"{100.0 * relative_improvement(value, base_value, reference_value):+.1f}%")
        notes.append(RELATIVE_IMPROVEMENT_DEFINITION.format(ref=reference, col=compared) + " On means over seeds.")
    return Table(title=title, header=header, rows=rows, notes=notes)


def passk_table(
    benchmark: str | Sequence[str], results: Mapping[str, Mapping[str, dict[str, Any]]], title: str | None = None
) -> Table:
    """Rows = methods with these benchmarks; columns = pass@k for the k every row has (powers of two <= min n).

    Several benchmarks: pass@k averaged over them per seed (equal weight per benchmark).
    """
    benchmarks = [benchmark] if isinstance(benchmark, str) else list(benchmark)
    labels = [label for label, by in results.items() if all(b in by for b in benchmarks)]
    common = set.intersection(*(set(results[label][b]["pass@k"]) for label in labels for b in benchmarks))
    ks = sorted(common, key=int)
    estimates = [[column_estimate(results[label], benchmarks, "pass@k", k) for k in ks] for label in labels]
    best = _bold_best([[e.mean for e in row] for row in estimates])
    rows = [
        [label, *(_cell(e, bold=i in best[j]) for j, e in enumerate(row))]
        for i, (label, row) in enumerate(zip(labels, estimates, strict=True))
    ]
    chosen = {label: results[label] for label in labels}
    notes = _settings_notes(chosen, benchmarks) + _seed_note(chosen)
    if len(benchmarks) > 1:
        notes.append(f"Averaged over {', '.join(benchmarks)} (equal weight), per seed.")
    notes.append(
        "pass@k: unbiased estimator 1 - C(n-c,k)/C(n,k) of Chen et al. 2021 (arXiv 2107.03374), averaged over "
        "problems; not verl's best@k bootstrap."
    )
    title = title or f"pass@k on {', '.join(benchmarks)}"
    return Table(title=title, header=["Method", *(f"pass@{k}" for k in ks)], rows=rows, notes=notes)


def default_table_specs(benchmarks: Sequence[str]) -> list[dict[str, Any]]:
    """The paper's layout: Geometry3K alone, the other vision benchmarks together, the text benchmarks together."""
    geometry = [b for b in benchmarks if b.lower().startswith(GEOMETRY_PREFIXES)]
    vision = [b for b in benchmarks if b.lower().startswith(VISION_PREFIXES)]
    text = [b for b in benchmarks if b not in geometry and b not in vision]
    specs = [
        {"title": "Geometry3K", "benchmarks": geometry},
        {"title": "Vision-language benchmarks", "benchmarks": vision},
        {"title": "Text benchmarks", "benchmarks": text},
    ]
    return [spec for spec in specs if spec["benchmarks"]]


def build_tables(runs: Mapping[str, Any], relative_to: Path = Path(".")) -> list[Table]:
    base_label, results = collect(runs, relative_to)
    reference = runs.get("reference", "GRPO")
    if reference not in runs["methods"]:
        reference = None  # no reference row, so no relative-improvement column
    all_benchmarks = sorted({b for by in results.values() for b in by})
    explicit = runs.get("tables")
    specs = explicit or default_table_specs(all_benchmarks)
    tables = []
    for spec in specs:
        unknown = [b for b in spec["benchmarks"] if b not in all_benchmarks]
        if unknown:
            raise ValueError(f"table {spec['title']!r} names benchmark(s) {unknown} that no summary has")
        if spec.get("kind", "accuracy") == "passk":
            tables.append(passk_table(spec["benchmarks"], results, spec["title"]))
            continue
        columns = spec.get("columns")
        if columns:
            outside = sorted({b for members in columns.values() for b in members} - set(spec["benchmarks"]))
            if outside:
                raise ValueError(f"table {spec['title']!r}: columns use benchmark(s) {outside} not in its benchmarks")
        tables.append(accuracy_table(spec["title"], results, spec["benchmarks"], base_label, reference, columns))
    if not explicit:
        tables.extend(passk_table(b, results) for b in all_benchmarks)
    return tables


# ---------------------------------------------------------------------------------------------------------------
# Rendering.


def to_markdown(table: Table) -> str:
    lines = [f"### {table.title}", "", "| " + " | ".join(table.header) + " |"]
    lines.append("|" + "|".join([":---"] + ["---:"] * (len(table.header) - 1)) + "|")
    lines += ["| " + " | ".join(row) + " |" for row in table.rows]
    lines.append("")
    lines += [f"- {note}" for note in table.notes]
    return "\n".join(lines) + "\n"


def _latex_escape(text: str) -> str:
    for char, escaped in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#")):
        text = text.replace(char, escaped)
    return text.replace("^", r"\^{}")


def _latex_cell(cell: str) -> str:
    if cell.startswith("**") and cell.endswith("**"):
        return r"\textbf{" + _latex_escape(cell[2:-2]) + "}"
    return _latex_escape(cell)


def to_latex(table: Table) -> str:
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        r"\caption{" + _latex_escape(table.title) + ". " + "; ".join(_latex_escape(n) for n in table.notes) + "}",
        r"\begin{tabular}{l" + "c" * (len(table.header) - 1) + "}",
        r"\toprule",
        " & ".join(_latex_escape(h) for h in table.header) + r" \\",
        r"\midrule",
    ]
    lines += [" & ".join(_latex_cell(c) for c in row) + r" \\" for row in table.rows]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> list[Table]:
    parser = argparse.ArgumentParser(prog="python -m uec_recipe.eval.tables", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", required=True, help="YAML/JSON: base, reference, methods -> summary paths")
    parser.add_argument("--out", required=True, help="directory for tables.md and tables.tex")
    args = parser.parse_args(argv)
    runs_path = Path(args.runs)
    tables = build_tables(load_runs(runs_path), relative_to=runs_path.parent)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "tables.md").write_text("\n".join(to_markdown(t) for t in tables))
    (out / "tables.tex").write_text("% needs \\usepackage{booktabs}\n" + "\n".join(to_latex(t) for t in tables))
    print((out / "tables.md").read_text())
    return tables


if __name__ == "__main__":
    try:
        main()
    except (ValueError, FileNotFoundError) as error:
        raise SystemExit(f"error: {error}") from None
