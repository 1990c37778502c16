"""One line per training step of a run's metrics.jsonl (verl's "file" logger), printed by grpo.sh and uec.sh.

    python examples/verl_grpo_to_uec/show_steps.py OUT/metrics.jsonl

Every run shows verl's score, response length, policy loss and gradient norm ("-" on a step without an update). A
UEC-RL run adds what its stages did (the ``uec/*`` metrics of docs/algorithm.md): difficult prompts, exploration
samples kept, the batch buffer, whether the buffer filled an update, and the replay stabilizer.
"""

from __future__ import annotations

import math
import sys

from uec_lab.summary import read_metrics


def number(row: dict, key: str, spec: str) -> str:
    value = row.get(key)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, spec)


def step_line(row: dict) -> str:
    parts = [
        f"step {row['step']}",
        f"score {number(row, 'critic/score/mean', '.3f')}",
        f"length {number(row, 'response_length/mean', '.1f')}",
        f"pg_loss {number(row, 'actor/pg_loss', '+.4f')}",
        f"grad_norm {number(row, 'actor/grad_norm', '.3f')}",
    ]
    if "uec/difficult_prompts" in row:
        update = f"update {row['uec/update_rows']} rows" if row.get("uec/update_ran") else "no update"
        parts += [
            f"difficult {row['uec/difficult_prompts']}",
            f"explored {row['uec/exploration_kept']}/{row['uec/exploration_samples']} kept",
            f"regular {row['uec/regular_kept']}/{row['uec/regular_samples']} kept",
            f"buffer {row['uec/batch_buffer_size']}",
            update,
            f"replay {row['uec/replay_rows']} rows (buffer {row['uec/replay_buffer_size']})",
        ]
    return " | ".join(parts)


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    rows = [row for row in read_metrics(args[0]) if row["step"] >= 1]
    if not rows:
        print(f"{args[0]}: no training step logged", file=sys.stderr)
        return 1
    for row in rows:
        print(step_line(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
