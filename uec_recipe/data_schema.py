"""The RL parquet schema every uec-rl data file follows, and its validator.

One row is one prompt, in the layout verl's ``RLHFDataset`` reads (verl 0.9.1 ``verl/utils/dataset/rl_dataset.py``)
and its reward loop scores (``reward_model.ground_truth`` and ``data_source`` reach ``compute_score``):

    data_source   string                              which grader scores the row (uec_recipe/reward/)
    prompt        list<struct<role, content>>         chat messages; one "<image>" placeholder per image
    images        list<struct<bytes, path>>           VLM rows only; embedded image bytes
    ability       string                              e.g. "math"
    reward_model  struct<style, ground_truth>         ground_truth: the gold answer as a string
    extra_info    struct<split, index, ...>           index: row number in the source split

The validator is used by every converter after writing and by the trainer at start-up, so it stays import-light
(pyarrow and PIL only) and checks whole record batches at once instead of looping over rows in Python. Every failure
names the file, the column and the first offending row indices: a wrong column found here costs seconds, found on a
GPU node it costs the run. Every row of the file is read, so a bad row that training would reach only in a later epoch
is refused before the first step (the reward, which sees one row at a time, can name only its data source and
``extra_info``; see docs/faults-data.md). From a shell:

    python -m uec_recipe.data_schema FILE [FILE ...] [--images required|forbidden] [--no-decode]
"""

from __future__ import annotations

import argparse
import io
import os
import sys

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

REQUIRED_COLUMNS = ("data_source", "prompt", "ability", "reward_model", "extra_info")
REQUIRED_EXTRA_INFO_FIELDS = ("split", "index")
IMAGE_COLUMN = "images"
# verl's RLHFDataset splits message text on this token and pairs each occurrence with the next image, asserting the
# counts match (rl_dataset.py::_build_messages); we check the same invariant before a GPU ever sees the file.
IMAGE_PLACEHOLDER = "<image>"
CHAT_ROLES = ("system", "user", "assistant")
BATCH_ROWS = 8192
MAX_ROWS_NAMED = 5


class SchemaError(ValueError):
    """A parquet file that verl or uec-rl would misread; the message names file, column and rows."""


def validate_rl_parquet(path, *, require_images: bool | None = None, check_images: bool = True) -> int:
    """Check ``path`` against the RL parquet schema and return its number of rows.

    require_images: True - every row must carry at least one image (a VLM dataset); False - no row may carry an
        image; None - images are optional, but where present they are checked.
    check_images: decode every embedded image with PIL (the slow part; the trainer may skip it at start-up once
        data_prep has validated the file).
    """
    path = os.fspath(path)
    try:
        parquet = pq.ParquetFile(path)
    except FileNotFoundError:
        raise SchemaError(f"{path}: file not found") from None
    except (pa.ArrowException, OSError) as error:
        raise SchemaError(f"{path}: not a readable parquet file ({error})") from error

    schema = parquet.schema_arrow
    _check_types(path, schema, require_images)
    has_images = IMAGE_COLUMN in schema.names
    columns = list(REQUIRED_COLUMNS) + ([IMAGE_COLUMN] if has_images else [])

    offset = 0
    for batch in parquet.iter_batches(batch_size=BATCH_ROWS, columns=columns):
        _check_batch(path, batch, offset, require_images, check_images and has_images)
        offset += batch.num_rows
    if offset == 0:
        raise SchemaError(f"{path}: the file has no rows")
    return offset


# --- column types ---------------------------------------------------------------------------------------------------


def _is_string(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t)


def _struct_field(t: pa.DataType, name: str) -> pa.DataType | None:
    index = t.get_field_index(name)
    return None if index < 0 else t.field(index).type


def _check_types(path: str, schema: pa.Schema, require_images: bool | None) -> None:
    missing = [name for name in REQUIRED_COLUMNS if name not in schema.names]
    if require_images and IMAGE_COLUMN not in schema.names:
        missing.append(IMAGE_COLUMN)
    if missing:
        raise SchemaError(f"{path}: missing column(s) {missing}; the file has {schema.names}")

    def mistyped(column: str, expected: str) -> SchemaError:
        return SchemaError(f"{path}: column '{column}' must be {expected}, found {schema.field(column).type}")

    for column in ("data_source", "ability"):
        if not _is_string(schema.field(column).type):
            raise mistyped(column, "string")

    prompt = schema.field("prompt").type
    message = prompt.value_type if _is_list(prompt) else None
    if not (
        message is not None
        and pa.types.is_struct(message)
        and all(
            _struct_field(message, key) is not None and _is_string(_struct_field(message, key))
            for key in ("role", "content")
        )
    ):
        raise mistyped("prompt", "a chat list: list<struct<role: string, content: string>>")

    reward_model = schema.field("reward_model").type
    if not (
        pa.types.is_struct(reward_model)
        and _struct_field(reward_model, "ground_truth") is not None
        and _is_string(_struct_field(reward_model, "ground_truth"))
    ):
        raise mistyped("reward_model", "struct<style: string, ground_truth: string>")

    extra_info = schema.field("extra_info").type
    if not pa.types.is_struct(extra_info):
        raise mistyped("extra_info", "a struct with fields " + ", ".join(REQUIRED_EXTRA_INFO_FIELDS))
    absent = [key for key in REQUIRED_EXTRA_INFO_FIELDS if _struct_field(extra_info, key) is None]
    if absent:
        raise SchemaError(f"{path}: column 'extra_info' lacks field(s) {absent}; found {extra_info}")
    if not pa.types.is_integer(_struct_field(extra_info, "index")):
        raise SchemaError(
            f"{path}: column 'extra_info.index' must be an integer, found {_struct_field(extra_info, 'index')}"
        )

    if IMAGE_COLUMN in schema.names:
        images = schema.field(IMAGE_COLUMN).type
        item = images.value_type if _is_list(images) else None
        item_bytes = _struct_field(item, "bytes") if item is not None and pa.types.is_struct(item) else None
        if item_bytes is None or not (pa.types.is_binary(item_bytes) or pa.types.is_large_binary(item_bytes)):
            raise mistyped(IMAGE_COLUMN, "list<struct<bytes: binary, path: string>> (embedded image bytes)")


# --- row checks -----------------------------------------------------------------------------------------------------


def _fail_rows(path: str, column: str, what: str, bad: np.ndarray, offset: int) -> None:
    rows = np.flatnonzero(bad)
    if rows.size:
        named = ", ".join(str(offset + int(r)) for r in rows[:MAX_ROWS_NAMED])
        more = f" (and {rows.size - MAX_ROWS_NAMED} more)" if rows.size > MAX_ROWS_NAMED else ""
        raise SchemaError(f"{path}: column '{column}': {what} at row(s) {named}{more}")


def _blank(strings: pa.Array) -> np.ndarray:
    """True where a string is null or only whitespace."""
    blank = pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(strings)), 0)
    return pc.fill_null(blank, True).to_numpy(zero_copy_only=False)


def _per_row_sum(values: np.ndarray, parents: np.ndarray, rows: int) -> np.ndarray:
    return np.bincount(parents, weights=values, minlength=rows).astype(np.int64)


def _check_batch(path: str, batch: pa.RecordBatch, offset: int, require_images, check_images: bool) -> None:
    rows = batch.num_rows
    column = {name: batch.column(batch.schema.get_field_index(name)) for name in batch.schema.names}

    _fail_rows(path, "data_source", "empty or missing", _blank(column["data_source"]), offset)
    _fail_rows(path, "ability", "empty or missing", _blank(column["ability"]), offset)

    prompt = column["prompt"]
    lengths = pc.fill_null(pc.list_value_length(prompt), 0).to_numpy(zero_copy_only=False)
    _fail_rows(path, "prompt", "empty prompt (no messages)", lengths == 0, offset)
    messages = pc.list_flatten(prompt)
    parents = pc.list_parent_indices(prompt).to_numpy(zero_copy_only=False)
    content = messages.field("content")
    role = messages.field("role")
    _fail_rows(path, "prompt", "a message with empty content", _per_row_sum(_blank(content), parents, rows) > 0, offset)
    bad_role = pc.fill_null(pc.invert(pc.is_in(role, value_set=pa.array(CHAT_ROLES))), True)
    _fail_rows(
        path,
        "prompt",
        f"a message role outside {CHAT_ROLES}",
        _per_row_sum(bad_role.to_numpy(zero_copy_only=False), parents, rows) > 0,
        offset,
    )
    is_user = pc.fill_null(pc.equal(role, "user"), False).to_numpy(zero_copy_only=False)
    _fail_rows(path, "prompt", "no user message", _per_row_sum(is_user, parents, rows) == 0, offset)

    reward_model = column["reward_model"]
    gold = pc.struct_field(reward_model, "ground_truth")
    missing_gold = _blank(gold) | reward_model.is_null().to_numpy(zero_copy_only=False)
    _fail_rows(path, "reward_model.ground_truth", "missing or empty ground truth", missing_gold, offset)

    extra_info = column["extra_info"]
    index = pc.struct_field(extra_info, "index")
    _fail_rows(path, "extra_info.index", "missing index", index.is_null().to_numpy(zero_copy_only=False), offset)
    _fail_rows(path, "extra_info.split", "missing split", _blank(pc.struct_field(extra_info, "split")), offset)

    placeholders = pc.fill_null(pc.count_substring(content, IMAGE_PLACEHOLDER), 0).to_numpy(zero_copy_only=False)
    placeholders_per_row = _per_row_sum(placeholders, parents, rows)
    images = column.get(IMAGE_COLUMN)
    if images is None:
        image_counts = np.zeros(rows, dtype=np.int64)
    else:
        image_counts = pc.fill_null(pc.list_value_length(images), 0).to_numpy(zero_copy_only=False)
    if require_images:
        _fail_rows(path, IMAGE_COLUMN, "no image in a dataset that requires images", image_counts == 0, offset)
    elif require_images is False:
        _fail_rows(path, IMAGE_COLUMN, "an image in a text-only dataset", image_counts > 0, offset)
    _fail_rows(
        path,
        "prompt",
        f"number of '{IMAGE_PLACEHOLDER}' placeholders differs from the number of images (verl pairs them one to one)",
        placeholders_per_row != image_counts,
        offset,
    )
    if images is not None and len(pc.list_flatten(images)) > 0:
        items = pc.list_flatten(images)
        image_parents = pc.list_parent_indices(images).to_numpy(zero_copy_only=False)
        no_bytes = pc.fill_null(pc.equal(pc.binary_length(items.field("bytes")), 0), True).to_numpy(
            zero_copy_only=False
        )
        _fail_rows(
            path,
            IMAGE_COLUMN,
            "an image without embedded bytes",
            _per_row_sum(no_bytes, image_parents, rows) > 0,
            offset,
        )
        if check_images:
            _check_images_decode(path, items.field("bytes"), image_parents, offset)


def _check_images_decode(path: str, image_bytes: pa.Array, parents: np.ndarray, offset: int) -> None:
    from PIL import Image

    for position, data in enumerate(image_bytes.to_pylist()):
        try:
            with Image.open(io.BytesIO(data)) as image:
                image.load()  # verify() alone does not decode JPEG data; load() does
        except Exception as error:  # PIL raises many types for corrupt data
            row = offset + int(parents[position])
            raise SchemaError(f"{path}: column '{IMAGE_COLUMN}': unreadable image at row {row} ({error})") from error


# --- command line ---------------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    """Validate each file; print its row count or its first fault. Exit status 1 when any file fails."""
    parser = argparse.ArgumentParser(
        prog="python -m uec_recipe.data_schema", description="Check RL parquet files against the uec-rl schema."
    )
    parser.add_argument("files", nargs="+", help="parquet files in the RL schema (train or validation)")
    parser.add_argument(
        "--images",
        choices=["required", "forbidden"],
        default=None,
        help="every row must carry an image (a VLM dataset) / no row may; default: optional, checked where present",
    )
    parser.add_argument("--no-decode", action="store_true", help="skip decoding every image with PIL (faster)")
    args = parser.parse_args(argv)
    require_images = {"required": True, "forbidden": False, None: None}[args.images]
    failed = 0
    for path in args.files:
        try:
            rows = validate_rl_parquet(path, require_images=require_images, check_images=not args.no_decode)
        except SchemaError as error:
            print(f"FAIL {error}", file=sys.stderr)
            failed += 1
        else:
            print(f"ok   {path}: {rows} rows")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
