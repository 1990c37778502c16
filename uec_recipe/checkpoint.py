"""UEC state beside verl's checkpoint: both buffers, the pending exploration, counters and random states.

verl's V1 trainer in synchronous mode does not persist TransferQueue, so without this a resumed run would start
with empty buffers: it would silently train a different algorithm for several steps (the authors' released code
has the same gap). ``global_step_N/uec_state.pt`` is the index: counters, the buffers' records (keys, frozen
advantages, origin, step) and the names of the shards that hold every stored field of their rows (token ids,
advantages, old and reference log-probs), at most ``ROWS_PER_SHARD`` rows each, so the driver never holds more
than one shard of a VLM run's image tensors at a time.

Everything is plain data (``uec_recipe/plain.py``) and is read with ``torch.load(weights_only=True)``: a state file
copied from elsewhere cannot run code. Writes are atomic: each file goes to a temporary name in the same folder,
is flushed to disk and renamed; the index is written last. The trainer writes the state *before* verl saves the
model and moves ``latest_checkpointed_iteration.txt``, so a save interrupted at any point leaves the previous
checkpoint, with its own UEC state, as the one to resume.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from uec_recipe.algo.buffers import BufferedRow
from uec_recipe.plain import from_plain, tensordict_from_plain, tensordict_to_plain, to_plain

STATE_FILE = "uec_state.pt"
STATE_VERSION = 2
ROWS_PER_SHARD = 512


def write_atomically(path: str | os.PathLike, payload: Any) -> None:
    """``torch.save`` to a temporary file beside ``path``, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            torch.save(payload, stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def rows_to_records(rows: Sequence[BufferedRow]) -> list[dict]:
    return [to_plain(dataclasses.asdict(row)) for row in rows]


def records_to_rows(records: Sequence[dict]) -> list[BufferedRow]:
    return [BufferedRow(**from_plain(record)) for record in records]


def write_buffer_shards(
    folder: Path, name: str, rows: Sequence[BufferedRow], fetch: Callable[[list[str]], Any]
) -> list[str]:
    """Write the stored fields of ``rows`` in shards of ROWS_PER_SHARD rows; ``fetch(keys)`` reads them from TQ."""
    shards = []
    for start in range(0, len(rows), ROWS_PER_SHARD):
        chunk = rows[start : start + ROWS_PER_SHARD]
        shard = f"{Path(STATE_FILE).stem}.{name}.{start // ROWS_PER_SHARD:04d}.pt"
        write_atomically(folder / shard, tensordict_to_plain(fetch([row.key for row in chunk])))
        shards.append(shard)
    return shards


def write_state(
    folder: str | os.PathLike,
    meta: dict,
    buffers: dict[str, Sequence[BufferedRow]],
    fetch: Callable[[list[str]], Any],
    pending=None,
    images: dict | None = None,
) -> Path:
    """The shards of every buffer, then the index (``uec_state.pt``) naming them; returns the index's path.

    ``meta`` holds plain counters and states; ``pending`` is a TensorDict of prompts waiting for exploration (the
    pipelined schedule) or None; ``images`` the buffered rows' image inputs held once per picture
    (uec_recipe/images.py), written to a file of their own.
    """
    folder = Path(folder)
    index = {"version": STATE_VERSION, **to_plain(meta), "buffers": {}, "images": None}
    if images is not None and images["inputs"]:
        index["images"] = f"{Path(STATE_FILE).stem}.images.pt"
        write_atomically(folder / index["images"], to_plain(images))
    for name, rows in buffers.items():
        index["buffers"][name] = {
            "records": rows_to_records(rows),
            "shards": write_buffer_shards(folder, name, rows, fetch),
        }
    index["pending_exploration"] = None if pending is None else tensordict_to_plain(pending)
    path = folder / STATE_FILE
    write_atomically(path, index)
    return path


def remove_orphaned_states(root: str | os.PathLike) -> list[Path]:
    """Delete the UEC state of checkpoints whose model verl has rotated away; returns the files removed.

    verl's ``trainer.max_actor_ckpt_to_keep`` removes ``global_step_N/actor`` of old checkpoints and nothing else,
    so the buffers' shards (gigabytes at the paper's scale) would stay behind. A checkpoint that still has its
    ``actor`` folder is left alone.
    """
    removed = []
    for folder in sorted(Path(root).glob("global_step_*")):
        if folder.is_dir() and not (folder / "actor").exists():
            for path in folder.glob(f"{Path(STATE_FILE).stem}*"):
                path.unlink()
                removed.append(path)
    return removed


def read_state(path: str | os.PathLike) -> dict | None:
    """The saved index, or None when the checkpoint has none (e.g. a GRPO run's)."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        state = torch.load(path, weights_only=True)
    except Exception as error:  # an unpickler refusal or a file of an older format
        raise ValueError(
            f"{path}: not a UEC state this version can read safely ({type(error).__name__}: {error}); states "
            f"are loaded with torch.load(weights_only=True) and have format version {STATE_VERSION}"
        ) from None
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        version = state.get("version") if isinstance(state, dict) else None
        raise ValueError(f"{path}: UEC state version {version} is not {STATE_VERSION}; cannot resume it")
    return state


def buffer_rows(state: dict, name: str) -> list[BufferedRow]:
    return records_to_rows(state["buffers"][name]["records"])


def iter_buffer_shards(folder: str | os.PathLike, state: dict, name: str) -> Iterator[tuple[list[str], Any]]:
    """(keys, TensorDict of their stored fields) per shard of a buffer, one shard in memory at a time."""
    rows = buffer_rows(state, name)
    for number, shard in enumerate(state["buffers"][name]["shards"]):
        chunk = rows[number * ROWS_PER_SHARD : (number + 1) * ROWS_PER_SHARD]
        fields = tensordict_from_plain(torch.load(Path(folder) / shard, weights_only=True))
        if int(fields.batch_size[0]) != len(chunk):
            raise ValueError(f"{shard}: {fields.batch_size[0]} rows for {len(chunk)} buffered records")
        yield [row.key for row in chunk], fields


def buffered_images(folder: str | os.PathLike, state: dict) -> dict | None:
    name = state.get("images")
    return None if name is None else from_plain(torch.load(Path(folder) / name, weights_only=True))


def pending_exploration(state: dict):
    plain = state.get("pending_exploration")
    return None if plain is None else tensordict_from_plain(plain)
