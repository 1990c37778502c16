"""UEC-RL's cost against GRPO, side by side in one invocation, on the CPU default task.

    .venv/bin/python bench/step_cost.py [--steps 10] [--rounds 1] [--variants uec uec_pipelined grpo]
                                        [--out outputs/bench]

Each round runs the quickstart once per variant, alternating, with the same seed and step count. A variant is a
method preset plus overrides (VARIANTS below: the reference UEC-RL, its pipelined schedule, its adaptive budget,
both, and GRPO). Reported per variant (mean over rounds): the quickstart's wall time and peak memory (RSS summed
over the whole process tree: driver, Ray and its workers; shared pages are counted once per process, so this
overstates), the mean step time after the first step (which includes worker warm-up), time per trained response
token (``uec/trained_response_tokens`` under UEC-RL: main and replay updates), and the mean time of each stage
verl and the recipe time (``timing_s/*``). The ratios to GRPO are printed last.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from uec_lab.summary import STAGES, read_metrics, stage_means  # noqa: E402

VARIANTS = {
    "grpo": ("grpo", []),
    "uec": ("uec", []),
    "uec_pipelined": ("uec", ["uec.exploration.schedule=pipelined"]),
    "uec_adaptive": ("uec", ["uec.exploration.budget=adaptive"]),
    "uec_plus": ("uec_plus", []),
}


def tree_rss(root: psutil.Process) -> int:
    total = 0
    for process in [root, *root.children(recursive=True)]:
        try:
            total += process.memory_info().rss
        except psutil.Error:
            pass
    return total


def run_once(variant: str, steps: int, out: Path) -> dict:
    algo, overrides = VARIANTS[variant]
    script = str(REPO / "run_scripts/quickstart_cpu.sh")
    cmd = ["bash", script, "--algo", algo, "--steps", str(steps), "--out", str(out), "--", *overrides]
    started = time.time()
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = [0]
    root = psutil.Process(process.pid)

    def sample():
        while process.poll() is None:
            peak[0] = max(peak[0], tree_rss(root))
            time.sleep(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, stderr = process.communicate()
    sampler.join()
    if process.returncode != 0:
        raise SystemExit(f"{variant} run failed:\n{stderr[-3000:]}")
    rows = [r for r in read_metrics(out / "metrics.jsonl") if r["step"] >= 1]
    later = rows[1:] or rows
    means = stage_means(rows)
    if algo.startswith("uec"):
        tokens = [r["uec/trained_response_tokens"] for r in later]
    else:  # every generated row is trained: the step's response tokens
        share = [r["response_length/mean"] / (r["prompt_length/mean"] + r["response_length/mean"]) for r in later]
        tokens = [r["tokens/trained"] * part for r, part in zip(later, share)]
    return {
        "wall_s": time.time() - started,
        "peak_rss_gb": peak[0] / 2**30,
        "step_s": means["step"],
        "stages": means,
        "trained_tokens_per_step": statistics.mean(tokens),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--variants", nargs="+", default=["uec", "uec_pipelined", "grpo"], choices=list(VARIANTS))
    parser.add_argument("--out", default=str(REPO / "outputs" / "bench"))
    args = parser.parse_args(argv)

    results: dict[str, list[dict]] = {a: [] for a in args.variants}
    for round_index in range(args.rounds):
        for variant in args.variants:
            print(f"[bench] round {round_index + 1}/{args.rounds}: {variant}, {args.steps} steps", flush=True)
            results[variant].append(run_once(variant, args.steps, Path(args.out) / f"{variant}-{round_index}"))

    summary = {}
    for variant, runs in results.items():
        summary[variant] = {
            "wall_s": statistics.mean(r["wall_s"] for r in runs),
            "peak_rss_gb": max(r["peak_rss_gb"] for r in runs),
            "step_s": statistics.mean(r["step_s"] for r in runs),
            "trained_tokens_per_step": statistics.mean(r["trained_tokens_per_step"] for r in runs),
            "stages": {s: statistics.mean(r["stages"][s] for r in runs) for s in STAGES},
        }
    print(f"\n{'':28s}" + "".join(f"{a:>12s}" for a in args.variants))
    for label, key in [
        ("quickstart wall (s)", "wall_s"),
        ("peak RSS, process tree (GB)", "peak_rss_gb"),
        ("step time, steps 2.. (s)", "step_s"),
        ("trained tokens / step", "trained_tokens_per_step"),
    ]:
        print(f"{label:28s}" + "".join(f"{summary[a][key]:12.2f}" for a in args.variants))
    for stage in STAGES[:-1]:
        print(f"  stage {stage:21s}" + "".join(f"{summary[a]['stages'][stage]:12.3f}" for a in args.variants))
    for variant in args.variants:
        s = summary[variant]
        tokens = s["trained_tokens_per_step"]
        s["s_per_trained_token"] = s["step_s"] / tokens if tokens else float("nan")
        print(
            f"{variant}: {1000 * s['s_per_trained_token']:.2f} ms per trained token; "
            f"bookkeeping {100 * s['stages']['uec_bookkeeping'] / s['step_s']:.2f}% of the step"
        )
    if "grpo" in summary:
        grpo = summary["grpo"]
        print()
        for variant, s in summary.items():
            if variant != "grpo":
                print(
                    f"ratio {variant}/grpo: step time {s['step_s'] / grpo['step_s']:.2f}x, "
                    f"time per trained token {s['s_per_trained_token'] / grpo['s_per_trained_token']:.2f}x"
                )
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "step_cost.json").write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
