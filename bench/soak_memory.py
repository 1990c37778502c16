"""Memory of a long CPU run: does it stay flat once the batch and replay buffers are full?

    .venv/bin/python bench/soak_memory.py [--steps 30] [--out outputs/soak]

Runs the UEC quickstart and, at every progress line, records the resident memory summed over the whole
process tree (driver, Ray, its workers and TransferQueue storage; shared pages are counted per process, so the
absolute figure overstates) next to the step's buffer sizes. Prints one row per step and the growth between
the first step at which both buffers were full and the last step.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from step_cost import tree_rss  # noqa: E402

PROGRESS = re.compile(r"\[uec\] step (\d+)/\d+ .*buffer (\d+) .*\(buffer (\d+)\)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--out", default=str(REPO / "outputs" / "soak"))
    args = parser.parse_args(argv)
    cmd = ["bash", str(REPO / "run_scripts/quickstart_cpu.sh"), "--steps", str(args.steps), "--out", args.out]
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    root = psutil.Process(process.pid)
    samples = []
    for line in process.stdout:
        match = PROGRESS.search(line)
        if match:
            step, batch_buffer, replay_buffer = (int(g) for g in match.groups())
            samples.append((step, batch_buffer, replay_buffer, tree_rss(root) / 2**30))
            print(
                f"step {step:3d}  batch buffer {batch_buffer:4d}  replay buffer {replay_buffer:4d}  "
                f"RSS {samples[-1][3]:.2f} GB",
                flush=True,
            )
    if process.wait() != 0 or not samples:
        print("the run failed; see its output above", file=sys.stderr)
        return 1
    replay_capacity = max(s[2] for s in samples)
    full = [s for s in samples if s[2] == replay_capacity]
    first_full, last = full[0], samples[-1]
    print(
        f"\nreplay buffer full (capacity {replay_capacity} rows) from step {first_full[0]}: "
        f"RSS {first_full[3]:.2f} GB -> {last[3]:.2f} GB at step {last[0]} "
        f"({last[3] - first_full[3]:+.2f} GB over {last[0] - first_full[0]} steps); "
        f"peak {max(s[3] for s in samples):.2f} GB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
