"""Convert one of the paper's datasets to verl's RL parquet.

    python -m data_prep.prepare NAME --out DIR [--local-dir PATH] [--split S] [--overwrite]

By default the source is read from the hub with ``datasets.load_dataset(<source id>)``; ``--local-dir`` reads the
same files from disk instead (a parquet or jsonl file, a folder of them as the hub repository lays them out, or a
folder written by ``Dataset.save_to_disk``) for clusters without internet. The output is ``DIR/NAME.parquet``
(``DIR/NAME.SPLIT.parquet`` when ``--split`` picks a non-default split), written to a temporary file beside it,
validated with ``uec_recipe.data_schema.validate_rl_parquet`` and only then renamed into place, so an interrupted or
failed run never leaves a half-written parquet. Exit codes: 0 written, 1 the data could not be converted faithfully,
2 bad command line (unknown NAME, missing --local-dir, output exists without --overwrite).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
from typing import Iterator

from data_prep.sources import DATASETS, ConversionError, DatasetSpec, Drop, Problem, SourceContext, build_prompt
from uec_recipe.data_schema import SchemaError, validate_rl_parquet

ABILITY = "math"
REWARD_STYLE = "rule"
READ_BATCH_ROWS = 2048
LOCAL_FILE_SUFFIXES = (".parquet", ".jsonl", ".json")


# --- reading a source ------------------------------------------------------------------------------------------------


def _hub_records(spec: DatasetSpec, split: str) -> tuple[int, Iterator[dict]]:
    import datasets

    try:
        dataset = datasets.load_dataset(spec.source_id, spec.config, split=split)
    except Exception as error:  # network, auth, unknown split: all end the same way for the user
        config = f" (config {spec.config})" if spec.config else ""
        raise ConversionError(
            f"could not load {spec.source_id}{config} split {split!r} from the hub: {type(error).__name__}: {error}. "
            "Offline? Fetch the files elsewhere and pass --local-dir."
        ) from error
    return len(dataset), _arrow_records(dataset)


def _arrow_records(dataset) -> Iterator[dict]:
    # Arrow format hands images over as their stored {"bytes", "path"} structs instead of decoding every one to PIL
    # and back; class labels (MMLU's answer) stay integers.
    for table in dataset.with_format("arrow").iter(batch_size=READ_BATCH_ROWS):
        yield from table.to_pylist()


def _local_records(spec: DatasetSpec, split: str, local_dir: str) -> tuple[int, Iterator[dict], str]:
    """Rows of ``split`` from a local copy; returns (rows, records, folder that relative image paths resolve from)."""
    if os.path.isfile(local_dir):
        return (*_file_records([local_dir]), os.path.dirname(os.path.abspath(local_dir)))
    if any(os.path.exists(os.path.join(local_dir, marker)) for marker in ("dataset_dict.json", "state.json")):
        import datasets

        saved = datasets.load_from_disk(local_dir)
        if isinstance(saved, datasets.DatasetDict):
            if split not in saved:
                raise ConversionError(f"{local_dir}: saved dataset has splits {list(saved)}, not {split!r}")
            saved = saved[split]
        return len(saved), _arrow_records(saved), local_dir
    return (*_file_records(_split_files(spec, split, local_dir)), local_dir)


# JSON files a hub or save_to_disk folder holds beside its data; they describe the data and are not rows.
METADATA_FILES = frozenset({"dataset_infos.json", "dataset_info.json", "dataset_dict.json", "state.json"})


def _split_files(spec: DatasetSpec, split: str, local_dir: str) -> list[str]:
    """The data files of ``split`` in a hub-layout folder.

    In order: files named for the split (``<split>.parquet``, ``<split>-00000-of-....parquet``) or inside a folder
    named for it (the hub's auto-converted ``<config>/<split>/0000.parquet``); failing those, for the default split,
    the only data file there is (DAPO-Math-17k publishes ``data/dapo-math-17k.parquet``, OlympiadBench
    ``OlympiadBench/<config>/<config>.parquet``; the datasets library also reads a lone unnamed file as ``train``).
    With a config, only files under a folder of that name count when there are any.
    """
    found = []
    for root, folders, names in os.walk(local_dir):
        folders[:] = sorted(folder for folder in folders if not folder.startswith("."))  # .git, .cache, ...
        found += [
            os.path.join(root, name)
            for name in sorted(names)
            if name.endswith(LOCAL_FILE_SUFFIXES) and name not in METADATA_FILES
        ]
    if spec.config:
        in_config = [path for path in found if spec.config in os.path.relpath(path, local_dir).split(os.sep)[:-1]]
        found = in_config or found

    def is_split_file(path: str) -> bool:
        *folders, name = os.path.relpath(path, local_dir).split(os.sep)
        stem = name.split(".")[0]
        return stem == split or stem.startswith(split + "-") or split in folders

    chosen = [path for path in found if is_split_file(path)]
    if len({path.endswith(".parquet") for path in found}) > 1:
        found = [path for path in found if path.endswith(".parquet")]
    if not chosen and split == spec.split and len(found) == 1:
        chosen = found
    if not chosen:
        listing = [os.path.relpath(path, local_dir) for path in found] or "no parquet/jsonl files"
        raise ConversionError(
            f"{local_dir}: no data file for split {split!r} (expected {split}.parquet, {split}-*.parquet, "
            f"{split}/*.parquet, or a single data file for the default split); found {listing}. "
            "Pass the data file itself as --local-dir."
        )
    if len({path.endswith(".parquet") for path in chosen}) > 1:
        chosen = [path for path in chosen if path.endswith(".parquet")]
    return chosen


def _file_records(paths: list[str]) -> tuple[int, Iterator[dict]]:
    import pyarrow.parquet as pq

    if all(path.endswith(".parquet") for path in paths):
        total = sum(pq.ParquetFile(path).metadata.num_rows for path in paths)

        def parquet_rows() -> Iterator[dict]:
            for path in paths:
                for batch in pq.ParquetFile(path).iter_batches(batch_size=READ_BATCH_ROWS):
                    yield from batch.to_pylist()

        return total, parquet_rows()
    rows = []
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            if path.endswith(".jsonl"):
                rows += [json.loads(line) for line in handle if line.strip()]
            else:
                loaded = json.load(handle)
                rows += loaded if isinstance(loaded, list) else [loaded]
    return len(rows), iter(rows)


# --- converting -------------------------------------------------------------------------------------------------------


def rl_row(spec: DatasetSpec, problem: Problem, split: str, index: int) -> dict:
    """One verl RL row (verl 0.9.1 RLHFDataset layout; see uec_recipe/data_schema.py)."""
    row = {
        "data_source": spec.source_id,
        "prompt": build_prompt(problem),
        "ability": ABILITY,
        "reward_model": {"style": REWARD_STYLE, "ground_truth": problem.ground_truth},
        "extra_info": {
            "split": split,
            "index": index,
            "answer_type": problem.answer_type,
            "question": problem.question,
            "answer": problem.ground_truth,
            **problem.extra,
        },
    }
    if spec.has_images:
        row["images"] = [{"bytes": data, "path": None} for data in problem.images]
    return row


def convert(spec: DatasetSpec, records: Iterator[dict], total: int, split: str, context: SourceContext, progress=True):
    """Converted rows and a Counter of drop reasons. Dedupe (DAPO) keeps the first copy of each problem."""
    from tqdm import tqdm

    rows, dropped, seen = [], collections.Counter(), {}
    for index, record in enumerate(
        tqdm(records, total=total, desc=spec.name, unit=" rows", disable=not progress, mininterval=2.0, file=sys.stderr)
    ):
        try:
            problem = spec.convert(record, context)
        except Drop as reason:
            dropped[str(reason)] += 1
            continue
        except ConversionError as error:
            raise ConversionError(f"{spec.name}: {spec.source_id} {split} row {index}: {error}") from error
        if spec.deduplicate:
            key = " ".join(problem.question.split())
            if key in seen:
                same_answer = seen[key] == problem.ground_truth
                dropped[
                    "duplicate problem" if same_answer else "duplicate problem with a different answer (first kept)"
                ] += 1
                continue
            seen[key] = problem.ground_truth
        rows.append(rl_row(spec, problem, split, index))
    return rows, dropped


# --- writing ----------------------------------------------------------------------------------------------------------


def write_rows(rows: list[dict], out_path: str, has_images: bool) -> None:
    """Write to a temporary file in the output folder, validate it, then rename: all or nothing."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    message = pa.struct([("content", pa.string()), ("role", pa.string())])
    columns = {
        "data_source": pa.array([row["data_source"] for row in rows], pa.string()),
        "prompt": pa.array([row["prompt"] for row in rows], pa.list_(message)),
        "ability": pa.array([row["ability"] for row in rows], pa.string()),
        "reward_model": pa.array(
            [row["reward_model"] for row in rows], pa.struct([("style", pa.string()), ("ground_truth", pa.string())])
        ),
        "extra_info": pa.array([row["extra_info"] for row in rows]),
    }
    if has_images:
        image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
        columns["images"] = pa.array([row["images"] for row in rows], pa.list_(image))
    table = pa.table(columns)
    if has_images:
        table = table.replace_schema_metadata(_hf_image_metadata(table.schema))

    folder = os.path.dirname(os.path.abspath(out_path))
    temporary = os.path.join(folder, f".{os.path.basename(out_path)}.{os.getpid()}.tmp")
    try:
        # Small row groups for image files keep a reader's memory bounded (the datasets library does the same).
        pq.write_table(table, temporary, row_group_size=100 if has_images else 10_000)
        validate_rl_parquet(temporary, require_images=has_images, check_images=True)
        os.replace(temporary, out_path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def _hf_image_metadata(schema) -> dict:
    # Declare the images column as a list of datasets.Image, as verl's geo3k.py output does (it is written by the
    # datasets library): RLHFDataset then receives PIL images, its first-choice image type.
    import datasets

    features = datasets.Features.from_arrow_schema(schema)
    features["images"] = datasets.List(datasets.Image())
    return {"huggingface": json.dumps({"info": {"features": features.to_dict()}})}


# --- command line -----------------------------------------------------------------------------------------------------


def output_path(spec: DatasetSpec, out_dir: str, split: str) -> str:
    stem = spec.name if split == spec.split else f"{spec.name}.{split}"
    return os.path.join(out_dir, stem + ".parquet")


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m data_prep.prepare",
        description="Convert one of the paper's datasets to verl's RL parquet (see data_prep/README.md).",
    )
    parser.add_argument("name", metavar="NAME", choices=sorted(DATASETS), help="one of: " + ", ".join(DATASETS))
    parser.add_argument("--out", required=True, help="output folder; the file is OUT/NAME.parquet")
    parser.add_argument("--local-dir", help="read the source from this file or folder instead of the hub")
    parser.add_argument("--split", help="source split to convert (default: the one the paper uses)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.local_dir is not None and not os.path.exists(args.local_dir):
        parser.error(f"--local-dir {args.local_dir}: no such file or folder")
    spec = DATASETS[args.name]
    args.split = args.split or spec.split
    args.out_path = output_path(spec, args.out, args.split)
    if os.path.exists(args.out_path) and not args.overwrite:
        parser.error(f"{args.out_path} exists; pass --overwrite to replace it")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    spec = DATASETS[args.name]
    try:
        if args.local_dir:
            total, records, base_dir = _local_records(spec, args.split, args.local_dir)
            where = args.local_dir
        else:
            total, records = _hub_records(spec, args.split)
            base_dir, where = None, spec.source_id
        rows, dropped = convert(spec, records, total, args.split, SourceContext(base_dir), progress=not args.quiet)
        if not rows:
            raise ConversionError(f"{spec.name}: no row survived conversion (dropped: {dict(dropped)})")
        os.makedirs(args.out, exist_ok=True)
        write_rows(rows, args.out_path, spec.has_images)
    except (ConversionError, SchemaError) as error:
        print(f"data_prep: {spec.name}: FAILED, nothing written: {error}", file=sys.stderr)
        return 1
    reasons = ", ".join(f"{count} {reason}" for reason, count in dropped.most_common()) or "none"
    print(
        f"{spec.name}: wrote {len(rows)} rows to {args.out_path} from {where} [{args.split}] "
        f"({total} read; dropped {sum(dropped.values())}: {reasons})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
