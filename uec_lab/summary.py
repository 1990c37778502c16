"""A short human-readable summary of one run, from verl's file-logger JSONL.

``python -m uec_lab.summary --metrics DIR/metrics.jsonl --algo uec --out DIR/summary.md``
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

# Stages timed by verl (timing_s/*) and by the UEC step; "uec_bookkeeping" is everything the recipe adds that is
# not model compute (difficulty, retention, buffers, replay selection).
STAGES = [
    "gen",
    "gen_explore",
    "adv",
    "old_log_prob",
    "ref",
    "update_actor",
    "uec_replay/log_prob",
    "uec_replay/update_actor",
    "uec_bookkeeping",
    "update_weights",
    "step",
]

UEC_TOTALS = [
    ("uec/difficult_prompts", "difficult prompts found"),
    ("uec/exploration_samples", "exploration samples generated at T'"),
    ("uec/exploration_kept", "exploration samples kept"),
    ("uec/difficult_solved_by_exploration", "difficult prompts solved by exploration"),
    ("uec/regular_kept", "regular samples kept"),
    ("uec/update_ran", "policy updates run"),
    ("uec/replay_rows", "rows replayed"),
]


def read_metrics(path) -> list[dict]:
    """Per-step metric dicts (``{"step": N, ...}``), merging lines that share a step (verl logs validation apart)."""
    by_step: dict[int, dict] = {}
    with open(path) as handle:
        for line_number, line in enumerate(handle, 1):
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{line_number}: not JSON ({error})") from None
            step = int(record["step"])
            data = record.get("data", {k: v for k, v in record.items() if k != "step"})
            by_step.setdefault(step, {"step": step}).update(data)
    return [by_step[s] for s in sorted(by_step)]


def first_last(rows: list[dict], key: str, window: int = 3):
    """Mean of the first and of the last ``window`` logged values (single steps of a small batch are noisy)."""
    values = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
    if not values:
        return None
    window = max(1, min(window, len(values) // 2))

    def describe(part):
        steps = f"{part[0][0]}" if len(part) == 1 else f"{part[0][0]}-{part[-1][0]}"
        return sum(v for _, v in part) / len(part), steps

    return describe(values[:window]), describe(values[-window:])


def _fmt(value) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


# The demo's validation rows name their band of the difficulty ladder in the data source: show them in ladder order.
BAND_ORDER = {"easy": 0, "between": 1, "medium": 2, "hard": 3}


def ladder_order(data_source: str) -> tuple:
    return (data_source.rsplit("/", 1)[0], BAND_ORDER.get(data_source.rsplit("/", 1)[-1], 9), data_source)


def data_source_of(key: str, suffix_parts: int) -> str:
    """The data source inside a validation metric name (data sources may contain '/')."""
    return key.split("/", 1)[1].rsplit("/", suffix_parts)[0]


def passk_table(rows: list[dict], grader: str = "paper") -> list[str]:
    """Unbiased pass@k of each validation (logged by the trainer as val-passk/...), with n, T, top_p and grader."""
    lines = []
    for row in rows:
        sources = sorted({data_source_of(k, 1) for k in row if k.startswith("val-passk/")}, key=ladder_order)
        for source in sources:
            prefix = f"val-passk/{source}/"
            ks = sorted(int(k[len(prefix) + 5 :]) for k in row if k.startswith(prefix + "pass@"))
            if not lines:
                lines += ["", f"Validation pass@k (unbiased estimator, Chen et al. 2021; grader: {grader}):", ""]
                lines += ["| step | benchmark | n | T | top_p | " + " | ".join(f"pass@{k}" for k in ks) + " |"]
                lines += ["|---" * (5 + len(ks)) + "|"]
            cells = [
                str(row["step"]),
                source,
                str(int(row[prefix + "n"])),
                _fmt(row.get(prefix + "temperature")),
                _fmt(row.get(prefix + "top_p")),
            ]
            lines.append("| " + " | ".join(cells + [f"{row[prefix + f'pass@{k}']:.3f}" for k in ks]) + " |")
    return lines


def stage_means(rows: list[dict]) -> dict[str, float]:
    """Mean seconds per stage over the training steps after the first (which includes worker warm-up)."""
    training = [r for r in rows if r["step"] >= 1 and "timing_s/step" in r]
    later = training[1:] or training
    return {stage: sum(r.get(f"timing_s/{stage}", 0.0) for r in later) / max(1, len(later)) for stage in STAGES}


def timing_table(rows: list[dict]) -> list[str]:
    means = stage_means(rows)
    if not means["step"]:
        return []
    lines = [
        "",
        "Where a step's time goes (mean over steps 2 onward):",
        "",
        "| stage | seconds | share |",
        "|---|---|---|",
    ]
    for stage in STAGES[:-1]:
        if means[stage]:
            lines.append(f"| {stage} | {means[stage]:.3f} | {100 * means[stage] / means['step']:.1f}% |")
    lines.append(f"| whole step | {means['step']:.3f} | 100% |")
    return lines


def ladder_section(report_path) -> list[str]:
    """The difficulty ladder the demo build measured (uec_lab/demo/ladder.py), if its report has one."""
    if not report_path or not Path(report_path).exists():
        return []
    from uec_lab.demo.ladder import Ladder, band_table

    report = json.loads(Path(report_path).read_text())
    if "ladder" not in report:
        return []
    ladder = Ladder.from_json(report["ladder"])
    unit = report["ladder"].get("unit", "level")
    return [
        "",
        f"Difficulty ladder of the demo policy, measured when it was built ({ladder.samples_per_level} samples per "
        f"{unit} at T = 1; validation accuracy above is reported per band):",
        "",
        *band_table(ladder, unit),
    ]


def exploration_success_rows(training: list[dict]) -> list[str]:
    """Exploration groups over the run by how many correct samples they found (``uec/exploration_group_successes``)."""
    prefix = "uec/exploration_group_successes/"
    ks = sorted({int(k[len(prefix) :]) for r in training for k in r if k.startswith(prefix)})
    return [
        f"| exploration groups with {k} correct sample{'' if k == 1 else 's'} | "
        f"{int(sum(r.get(prefix + str(k), 0) for r in training))} |"
        for k in ks
    ]


def entropy_rows(rows: list[dict]) -> list[tuple[str, str]]:
    """The entropy figures a run logged (docs/algorithm.md, "Entropy: which figure is which"), labelled for the
    start/end table: the rollout's, per band, the paper's update-row figure and Cov(log π_old, Â) per update."""
    prefix = "entropy/regular_rollout/"
    bands = sorted(
        {k[len(prefix) :] for r in rows for k in r if k.startswith(prefix)}, key=lambda b: (BAND_ORDER.get(b, 9), b)
    )
    return [
        ("rollout entropy (entropy/regular_rollout)", "entropy/regular_rollout"),
        *[(f"rollout entropy, {band} prompts", prefix + band) for band in bands],
        ("update-row entropy, the paper's figure (entropy/update_rows/main)", "entropy/update_rows/main"),
        ("update-row entropy, regular rows", "entropy/update_rows/main/regular"),
        ("update-row entropy, exploration rows", "entropy/update_rows/main/exploration"),
        ("update-row entropy, replay updates", "entropy/update_rows/replay"),
        ("Cov(log π_old, Â), main update", "entropy/cov_logp_adv/main"),
        ("Cov(log π_old, Â), replay updates", "entropy/cov_logp_adv/replay"),
    ]


def build_summary(
    rows: list[dict],
    algo: str,
    curves: str | None = None,
    grader: str = "paper",
    demo_report: str | None = None,
    train_log: str | None = None,
) -> str:
    training = [r for r in rows if r["step"] >= 1 and "training/global_step" in r]
    if not training:
        raise ValueError("no training step found in the metrics (did the run fail before its first step?)")
    lines = [f"# Run summary ({algo})", "", f"Steps trained: {len(training)}", ""]
    lines += ["| metric | start (steps) | end (steps) |", "|---|---|---|"]
    val_keys = sorted(
        {k for r in rows for k in r if k.startswith("val-core/") and "/acc/mean@" in k},
        key=lambda k: (ladder_order(data_source_of(k, 2)), k),
    )
    tracked = [
        ("training accuracy (regular rollout)", "critic/score/mean"),
        *[(f"validation {data_source_of(k, 2)} {k.split('/')[-1]}", k) for k in val_keys],
        *entropy_rows(training),
        ("response length (mean tokens)", "response_length/mean"),
    ]
    for label, key in tracked:
        pair = first_last(rows, key, window=1) if key.startswith("val-") else first_last(training, key)
        if pair:
            (v0, s0), (v1, s1) = pair
            lines.append(f"| {label} | {_fmt(v0)} ({s0}) | {_fmt(v1)} ({s1}) |")
    if any(k.startswith("uec/") for r in training for k in r):
        lines += ["", "UEC-RL stages over the run:", "", "| stage | total |", "|---|---|"]
        for key, label in UEC_TOTALS:
            total = sum(r.get(key, 0) for r in training)
            lines.append(f"| {label} | {int(total)} |")
        skipped = sum(1 for r in training if r.get("uec/update_ran") == 0)
        replay_updates = max((r.get("uec/replay_updates_total", 0) for r in training), default=0)
        lines.append(f"| steps that skipped the update (buffer below N0) | {skipped} |")
        lines.append(f"| replay (stabilizer) updates | {int(replay_updates)} |")
        lines += exploration_success_rows(training)
        negative = [r["uec/replay_negative_share"] for r in training if "uec/replay_negative_share" in r]
        if negative:
            mean = sum(negative) / len(negative)
            lines.append(f"| share of negative rows in a replay update (mean of {len(negative)}) | {mean:.3f} |")
    lines += passk_table(rows, grader)
    lines += ladder_section(demo_report)
    lines += timing_table(rows)
    if curves:
        lines += ["", f"![training curves]({curves})"]
    if train_log:
        lines += ["", f"verl's full log of the run: `{train_log}`"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Write a short markdown summary of a run")
    parser.add_argument("--metrics", required=True, help="verl file-logger JSONL (metrics.jsonl)")
    parser.add_argument("--algo", default="uec")
    parser.add_argument("--grader", default="paper", help="the grader the run's rewards used (named in the summary)")
    parser.add_argument("--demo-report", help="the demo build's warm_start.json (its difficulty ladder is shown)")
    parser.add_argument("--train-log", help="where the run's full log is (named in the summary)")
    parser.add_argument("--out", help="markdown file to write (required unless --timings-only)")
    parser.add_argument("--curves", help="PNG to link from the summary (path relative to it)")
    parser.add_argument("--timings-only", action="store_true", help="print only the per-stage timing table")
    args = parser.parse_args(argv)
    if not Path(args.metrics).exists():
        print(f"error: {args.metrics} does not exist", file=sys.stderr)
        return 2
    if not args.timings_only and not args.out:
        parser.error("--out is required")
    if args.timings_only:
        print("\n".join(timing_table(read_metrics(args.metrics))))
        return 0
    text = build_summary(
        read_metrics(args.metrics), args.algo, args.curves, args.grader, args.demo_report, args.train_log
    )
    Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
