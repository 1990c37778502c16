"""A short human-readable summary of one run, from verl's file-logger JSONL.

``python -m uec_recipe.summary --metrics DIR/metrics.jsonl --algo uec --out DIR/summary.md``
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

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


def first_last(rows: list[dict], key: str):
    values = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
    if not values:
        return None
    return values[0], values[-1]


def _fmt(value) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def build_summary(rows: list[dict], algo: str) -> str:
    training = [r for r in rows if r["step"] >= 1 and "training/global_step" in r]
    if not training:
        raise ValueError("no training step found in the metrics (did the run fail before its first step?)")
    lines = [f"# Run summary ({algo})", "", f"Steps trained: {len(training)}", ""]
    lines += ["| metric | start (step) | end (step) |", "|---|---|---|"]
    val_keys = sorted({k for r in rows for k in r if k.startswith("val-core/") and "/acc/" in k})
    tracked = [
        ("training accuracy (regular rollout)", "critic/score/mean"),
        *[(f"validation {k.split('/')[1]} {k.split('/')[-1]}", k) for k in val_keys],
        ("entropy (actor/entropy)", "actor/entropy"),
        ("response length (mean tokens)", "response_length/mean"),
    ]
    for label, key in tracked:
        pair = first_last(rows if key.startswith("val-") else training, key)
        if pair:
            (s0, v0), (s1, v1) = pair
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
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Write a short markdown summary of a run")
    parser.add_argument("--metrics", required=True, help="verl file-logger JSONL (metrics.jsonl)")
    parser.add_argument("--algo", default="uec")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if not Path(args.metrics).exists():
        print(f"error: {args.metrics} does not exist", file=sys.stderr)
        return 2
    text = build_summary(read_metrics(args.metrics), args.algo)
    Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
