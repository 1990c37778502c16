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
model and moves ``latest_checkpointed_iteration.txt``, so a save interrupted at any point (a killed process, a
full disk) leaves the previous checkpoint, with its own UEC state, as the one to resume.

Integrity: ``torch.load`` does not verify the zip records' checksums, so a flipped byte in a shard's tensor data
would load silently. The index records each shard's size and SHA-256 (``files``), and ``uec_state.pt.sha256``
(``sha256sum`` format, written after the index) holds the index's own. ``read_state`` checks all of them before
returning, so a resume refuses a truncated or corrupted file by name before any training, and says which
checkpoint to resume instead. States written before these records existed still load (their shards are checked
for presence only).
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from uec_recipe.algo.buffers import BufferedRow
from uec_recipe.plain import from_plain, tensordict_from_plain, tensordict_to_plain, to_plain

STATE_FILE = "uec_state.pt"
# The index's own checksum, in `sha256sum` format ("<hex>  uec_state.pt"): `sha256sum -c` checks it by hand.
CHECKSUM_FILE = STATE_FILE + ".sha256"
STATE_VERSION = 2
ROWS_PER_SHARD = 512
_HASH_CHUNK = 1 << 20


class CorruptStateError(ValueError):
    """A UEC state file is missing, truncated or corrupted; the message names it and the checkpoint to use instead."""


class _HashingWriter:
    """The stream ``torch.save`` writes to: hashes and counts the bytes, and keeps the operating system's error.

    torch's zip writer turns a failed write (e.g. ENOSPC) into "unexpected pos N vs M"; the original OSError is
    kept here and raised instead, so a full disk is reported as one.
    """

    def __init__(self, stream):
        self.stream = stream
        self.digest = hashlib.sha256()
        self.size = 0
        self.error: OSError | None = None

    def write(self, data) -> int:
        try:
            written = self.stream.write(data)
        except OSError as error:
            self.error = self.error or error
            raise
        self.digest.update(data)
        self.size += len(data)
        return written

    def flush(self) -> None:
        self.stream.flush()


def write_atomically(path: str | os.PathLike, payload: Any) -> dict:
    """``torch.save`` to a temporary file beside ``path``, fsync, then rename over ``path``.

    Returns ``{"bytes": size, "sha256": hex}`` of what was written. A failed write (a full disk, a quota) removes
    the temporary file and raises an OSError naming ``path``; whatever was at ``path`` before is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    writer = None
    try:
        with os.fdopen(handle, "wb") as stream:
            writer = _HashingWriter(stream)
            torch.save(payload, writer)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        if os.path.exists(tmp):
            os.unlink(tmp)
        cause = writer.error if writer is not None and writer.error is not None else error
        if isinstance(cause, OSError):
            code = cause.errno or errno.EIO
            raise OSError(
                code,
                f"uec-rl: could not write {path} ({os.strerror(code)}); nothing of it was kept and the previous "
                "checkpoint is untouched",
            ) from cause
        raise
    return {"bytes": writer.size, "sha256": writer.digest.hexdigest()}


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def rows_to_records(rows: Sequence[BufferedRow]) -> list[dict]:
    return [to_plain(dataclasses.asdict(row)) for row in rows]


def records_to_rows(records: Sequence[dict]) -> list[BufferedRow]:
    return [BufferedRow(**from_plain(record)) for record in records]


def write_buffer_shards(
    folder: Path, name: str, rows: Sequence[BufferedRow], fetch: Callable[[list[str]], Any], files: dict | None = None
) -> list[str]:
    """Write the stored fields of ``rows`` in shards of ROWS_PER_SHARD rows; ``fetch(keys)`` reads them from TQ.

    Each shard's size and checksum go to ``files`` (name -> record) when given."""
    shards = []
    for start in range(0, len(rows), ROWS_PER_SHARD):
        chunk = rows[start : start + ROWS_PER_SHARD]
        shard = f"{Path(STATE_FILE).stem}.{name}.{start // ROWS_PER_SHARD:04d}.pt"
        record = write_atomically(folder / shard, tensordict_to_plain(fetch([row.key for row in chunk])))
        if files is not None:
            files[shard] = record
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
    files: dict[str, dict] = {}
    index = {"version": STATE_VERSION, **to_plain(meta), "buffers": {}, "images": None, "files": files}
    if images is not None and images["inputs"]:
        index["images"] = f"{Path(STATE_FILE).stem}.images.pt"
        files[index["images"]] = write_atomically(folder / index["images"], to_plain(images))
    for name, rows in buffers.items():
        index["buffers"][name] = {
            "records": rows_to_records(rows),
            "shards": write_buffer_shards(folder, name, rows, fetch, files),
        }
    index["pending_exploration"] = None if pending is None else tensordict_to_plain(pending)
    path = folder / STATE_FILE
    # A checksum left by an earlier save of this step must not be taken for the new index's.
    (folder / CHECKSUM_FILE).unlink(missing_ok=True)
    record = write_atomically(path, index)
    _write_text_atomically(folder / CHECKSUM_FILE, f"{record['sha256']}  {STATE_FILE}\n")
    return path


def _write_text_atomically(path: Path, text: str) -> None:
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


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


_STEP_FOLDER = re.compile(r"global_step_(\d+)$")


def previous_checkpoint(folder: str | os.PathLike) -> Path | None:
    """The latest ``global_step_M`` beside ``folder`` (a ``global_step_N``) with M < N that still has its model and
    a UEC state index; None if there is none or ``folder`` is not a step folder."""
    folder = Path(folder)
    match = _STEP_FOLDER.search(folder.name)
    if match is None:
        return None
    candidates = []
    for other in folder.parent.glob("global_step_*"):
        other_match = _STEP_FOLDER.search(other.name)
        if other_match and int(other_match.group(1)) < int(match.group(1)):
            if (other / "actor").is_dir() and (other / STATE_FILE).is_file():
                candidates.append((int(other_match.group(1)), other))
    return max(candidates)[1] if candidates else None


def what_to_do(folder: str | os.PathLike) -> str:
    """The advice a refused resume ends with: the command-line settings that resume the previous checkpoint."""
    folder = Path(folder).resolve()
    previous = previous_checkpoint(folder)
    if previous is not None:
        target = str(previous)
    else:
        match = _STEP_FOLDER.search(folder.name)
        root = folder.parent if match else folder
        target = f"{root}/global_step_M (an earlier checkpoint; none with a UEC state was found beside this one)"
    settings = f"trainer.resume_mode=resume_path trainer.resume_from_path={target}"
    return f"To go on, resume from the previous checkpoint: {settings}"


def _corrupt(path: Path, problem: str, folder: Path) -> CorruptStateError:
    return CorruptStateError(
        f"uec-rl: cannot resume the UEC state of checkpoint {folder}: {path.name} {problem}. {what_to_do(folder)}"
    )


def _check_index_checksum(path: Path) -> None:
    checksum = path.parent / CHECKSUM_FILE
    if not checksum.exists():
        return  # a state from before checksums were recorded
    fields = checksum.read_text().split()
    if len(fields) != 2 or fields[1] != path.name or not re.fullmatch(r"[0-9a-f]{64}", fields[0]):
        raise _corrupt(checksum, "is not a checksum line for it (corrupted)", path.parent)
    if file_sha256(path) != fields[0]:
        raise _corrupt(
            path,
            f"does not match its checksum in {CHECKSUM_FILE} (truncated or corrupted after it was written)",
            path.parent,
        )


def check_files(folder: str | os.PathLike, state: dict) -> None:
    """Every file the index names exists and, where the index recorded it, has its size and checksum."""
    folder = Path(folder)
    recorded = state.get("files") or {}
    names = [shard for buffer in state["buffers"].values() for shard in buffer["shards"]]
    if state.get("images") is not None:
        names.append(state["images"])
    for name in names:
        path = folder / name
        if not path.is_file():
            raise _corrupt(path, f"is missing (the index {STATE_FILE} names it)", folder)
        record = recorded.get(name)
        if record is None:
            continue  # a state from before sizes and checksums were recorded
        size = path.stat().st_size
        if size != record["bytes"]:
            raise _corrupt(
                path, f"has {size} bytes where {record['bytes']} were written (truncated or damaged)", folder
            )
        if file_sha256(path) != record["sha256"]:
            raise _corrupt(path, "does not match the checksum recorded when it was written (corrupted)", folder)


def read_state(path: str | os.PathLike) -> dict | None:
    """The saved index, or None when the checkpoint has none (e.g. a GRPO run's).

    Checks the index and every file it names (``check_files``) first: a truncated, corrupted or missing file raises
    ``CorruptStateError`` naming it and the checkpoint to resume instead.
    """
    path = Path(path)
    if not path.exists():
        return None
    _check_index_checksum(path)
    state = _load_part(path.parent, path.name)
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        version = state.get("version") if isinstance(state, dict) else None
        raise ValueError(f"{path}: UEC state version {version} is not {STATE_VERSION}; cannot resume it")
    if isinstance(state.get("buffers"), dict):
        check_files(path.parent, state)
    return state


def buffer_rows(state: dict, name: str) -> list[BufferedRow]:
    return records_to_rows(state["buffers"][name]["records"])


def _load_part(folder: Path, name: str) -> Any:
    """``torch.load(weights_only=True)``; any failure (torch does not tell truncation from a refused object) is
    reported as the file being unreadable, with torch's own reason."""
    path = folder / name
    try:
        return torch.load(path, weights_only=True)
    except Exception as error:
        raise _corrupt(
            path,
            f"cannot be read: truncated, corrupted or not a UEC state ({type(error).__name__}: {error}; UEC states are "
            f"loaded with torch.load(weights_only=True) and have format version {STATE_VERSION})",
            folder,
        ) from None


def iter_buffer_shards(folder: str | os.PathLike, state: dict, name: str) -> Iterator[tuple[list[str], Any]]:
    """(keys, TensorDict of their stored fields) per shard of a buffer, one shard in memory at a time."""
    folder = Path(folder)
    rows = buffer_rows(state, name)
    for number, shard in enumerate(state["buffers"][name]["shards"]):
        chunk = rows[number * ROWS_PER_SHARD : (number + 1) * ROWS_PER_SHARD]
        fields = tensordict_from_plain(_load_part(folder, shard))
        if int(fields.batch_size[0]) != len(chunk):
            raise _corrupt(
                folder / shard, f"holds {fields.batch_size[0]} rows for {len(chunk)} buffered records", folder
            )
        yield [row.key for row in chunk], fields


def buffered_images(folder: str | os.PathLike, state: dict) -> dict | None:
    name = state.get("images")
    return None if name is None else from_plain(_load_part(Path(folder), name))


def pending_exploration(state: dict):
    plain = state.get("pending_exploration")
    return None if plain is None else tensordict_from_plain(plain)


def resume_folder(trainer_config) -> Path | None:
    """The ``global_step_N`` folder verl will resume from (its ``_load_checkpoint`` rules), or None for a fresh start.

    ``trainer_config`` is the ``trainer`` section: ``resume_mode`` disable / auto (the folder named by
    ``default_local_dir/latest_checkpointed_iteration.txt``) / resume_path (``resume_from_path``).
    """
    mode = trainer_config.get("resume_mode", "auto")
    if mode == "resume_path":
        path = trainer_config.get("resume_from_path")
        return Path(os.path.abspath(path)) if isinstance(path, str) and "global_step_" in path else None
    if mode != "auto" or not trainer_config.get("default_local_dir"):
        return None
    root = Path(os.path.abspath(trainer_config.default_local_dir))
    tracker = root / "latest_checkpointed_iteration.txt"
    try:
        folder = root / f"global_step_{int(tracker.read_text().strip())}"
    except (OSError, ValueError):
        return None  # verl starts from scratch then (or reports the tracker itself)
    return folder if folder.is_dir() else None


def check_resume_state(config) -> Path | None:
    """Read and verify the UEC state a run would resume, before Ray starts; returns its folder (None: nothing to
    resume, or a checkpoint without UEC state, which the trainer reports itself). A damaged state raises
    ``CorruptStateError`` naming the file and the checkpoint to resume instead, in seconds rather than after the
    workers have started. ``config`` is the whole run configuration."""
    uec = config.get("uec")
    if uec is not None and not uec.get("enable", True):
        return None
    folder = resume_folder(config.trainer)
    if folder is None or read_state(folder / STATE_FILE) is None:
        return None
    return folder
