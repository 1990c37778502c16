"""Write a small dataset of one's own as JSONL, then convert it to the project's RL parquet layout.

    python examples/own_dataset/prepare.py --out DIR

Writes DIR/worksheets.jsonl (the "raw" data: each record has ``sheet``, ``task`` and ``result`` fields, not the
project's names), then DIR/train.parquet and DIR/test.parquet in the layout verl's RLHFDataset reads
(uec_recipe/data_schema.py). Each parquet is written to a temporary file, checked with
``uec_recipe.data_schema.validate_rl_parquet`` and only then renamed into place (``data_prep.prepare.write_rows``), so a
broken conversion never leaves a file a training run could pick up.

The questions are digit sums phrased like the CPU demo's (``What is 3 + 8 + 1?``), 5 to 11 operands long, so that
the demo policy the quickstart builds solves some and misses others, and a few steps on CPU have something to learn.
For a real model, put the paper's instruction after each question (``data_prep.sources.THINK_BOXED_SUFFIX``) and
raise the prompt length.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys

from arithmetic_reward import DATA_SOURCE

from data_prep.prepare import write_rows

# Field names of the raw records (what a dataset of one's own might call them) -> what they hold.
QUESTION_FIELD, ANSWER_FIELD, GROUP_FIELD = "task", "result", "sheet"
SPLITS = {"train": 24, "test": 8}  # problems per split: tiny, this is an example


def write_worksheets(path: str, seed: int = 0) -> None:
    """The user's data, as it might arrive: one JSON object per line, with its own field names."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as handle:
        for split, count in SPLITS.items():
            for number in range(count):
                operands = [rng.randint(0, 9) for _ in range(rng.randint(5, 11))]
                record = {
                    GROUP_FIELD: f"{split}-sheet-{number // 4}",
                    QUESTION_FIELD: "What is " + " + ".join(map(str, operands)) + "?",
                    ANSWER_FIELD: sum(operands),
                    "split": split,
                }
                handle.write(json.dumps(record) + "\n")


def read_worksheets(path: str) -> list[dict]:
    """The JSONL records; a missing or empty field is an error that names the line and the field."""
    records = []
    with open(path, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            record = json.loads(line)
            for field in (QUESTION_FIELD, ANSWER_FIELD, "split"):
                if record.get(field) in (None, ""):
                    raise ValueError(f"{path} line {line_number}: field {field!r} is missing or empty")
            records.append(record)
    return records


def rl_row(record: dict, index: int) -> dict:
    """One row of the project's RL layout: data_source picks the grader, reward_model.ground_truth is the gold."""
    return {
        "data_source": DATA_SOURCE,
        "prompt": [{"role": "user", "content": record[QUESTION_FIELD]}],
        "ability": "math",
        "reward_model": {"style": "rule", "ground_truth": str(record[ANSWER_FIELD])},
        "extra_info": {"split": record["split"], "index": index, "sheet": str(record.get(GROUP_FIELD, ""))},
    }


def convert(jsonl_path: str, out_dir: str) -> dict[str, str]:
    """Every split of the JSONL to OUT/<split>.parquet, each validated before it is renamed into place."""
    records = read_worksheets(jsonl_path)
    written = {}
    for split in SPLITS:
        in_split = [record for record in records if record["split"] == split]
        if not in_split:
            raise ValueError(f"{jsonl_path}: no record has split {split!r}")
        rows = [rl_row(record, index) for index, record in enumerate(in_split)]
        written[split] = os.path.join(out_dir, f"{split}.parquet")
        write_rows(rows, written[split], has_images=False)
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for worksheets.jsonl, train.parquet and test.parquet")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    jsonl_path = os.path.join(args.out, "worksheets.jsonl")
    write_worksheets(jsonl_path)
    written = convert(jsonl_path, args.out)
    for split, path in written.items():
        print(f"{split}: {SPLITS[split]} rows in {path} (data_source {DATA_SOURCE})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
