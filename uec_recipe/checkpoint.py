"""UEC state beside verl's checkpoint: the batch buffer, the replay buffer, counters and the replay RNG.

verl's V1 trainer in synchronous mode does not persist TransferQueue, so without this a resumed run would
start with empty buffers: it would silently train a different algorithm for several steps (the authors'
released code has the same gap). ``global_step_N/uec_state.pt`` holds every buffered row with all of its
stored fields (token ids, frozen advantages, old and reference log-probs), so a resumed run continues exactly.

Writes are atomic: the state goes to a temporary file in the same folder, is flushed to disk and renamed.
The trainer writes it *before* verl saves the model and moves ``latest_checkpointed_iteration.txt``, so a
save interrupted at any point leaves the previous checkpoint, with its own UEC state, as the one to resume.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from uec_recipe.algo.buffers import BufferedRow

STATE_FILE = "uec_state.pt"
STATE_VERSION = 1


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


def rows_to_records(rows: list[BufferedRow]) -> list[dict]:
    return [dataclasses.asdict(row) for row in rows]


def records_to_rows(records: list[dict]) -> list[BufferedRow]:
    return [BufferedRow(**record) for record in records]


def build_state(global_steps, batch_rows, batch_fields, replay_rows, replay_fields, replay_updates, rng_state) -> dict:
    return {
        "version": STATE_VERSION,
        "global_steps": int(global_steps),
        "batch_buffer": rows_to_records(batch_rows),
        "batch_buffer_fields": batch_fields,
        "replay_buffer": rows_to_records(replay_rows),
        "replay_buffer_fields": replay_fields,
        "replay_updates": int(replay_updates),
        "replay_rng_state": rng_state,
    }


def read_state(path: str | os.PathLike) -> dict | None:
    """The saved UEC state, or None when the checkpoint has none (e.g. a GRPO run's)."""
    path = Path(path)
    if not path.exists():
        return None
    state = torch.load(path, weights_only=False)
    if state.get("version") != STATE_VERSION:
        raise ValueError(f"{path}: UEC state version {state.get('version')} is not {STATE_VERSION}; cannot resume it")
    return state
