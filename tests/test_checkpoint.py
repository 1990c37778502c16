"""UEC state files are written atomically: a process killed in the middle of a save leaves the last state intact."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from uec_recipe.checkpoint import STATE_VERSION, read_state, write_atomically

WRITER = r"""
import sys, time, torch
import uec_recipe.checkpoint as checkpoint

def stalling_save(payload, stream):
    stream.write(b"x" * 4096)  # half a file on disk...
    stream.flush()
    time.sleep(600)            # ...and the process dies here

checkpoint.torch.save = stalling_save
checkpoint.write_atomically(sys.argv[1], {"version": checkpoint.STATE_VERSION, "global_steps": 99})
"""


def test_kill_during_write_keeps_the_previous_state(tmp_path):
    target = tmp_path / "global_step_2" / "uec_state.pt"
    write_atomically(target, {"version": STATE_VERSION, "global_steps": 2, "buffers": {}})
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(target)])
    deadline = time.time() + 60
    while not any(p.name.endswith(".tmp") and p.stat().st_size > 0 for p in target.parent.iterdir()):
        assert time.time() < deadline and writer.poll() is None, "the writer never started writing"
        time.sleep(0.05)
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    state = read_state(target)
    assert state["global_steps"] == 2  # the previous state, whole


def test_missing_state_reads_as_none_and_wrong_version_is_refused(tmp_path):
    assert read_state(tmp_path / "uec_state.pt") is None
    torch.save({"version": 999}, tmp_path / "old.pt")
    try:
        read_state(tmp_path / "old.pt")
    except ValueError as error:
        assert "version 999" in str(error)
    else:
        raise AssertionError("a state of another version must not load")


class RunsCode:
    """An object whose unpickling would run code (what weights_only=True loading refuses)."""

    def __reduce__(self):
        return (os.system, ("touch ran",))


def test_state_loads_without_running_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"version": STATE_VERSION, "payload": RunsCode()}, tmp_path / "evil.pt")
    try:
        read_state(tmp_path / "evil.pt")
    except ValueError as error:
        assert "weights_only=True" in str(error)
    else:
        raise AssertionError("a state that names code must not load")
    assert not (tmp_path / "ran").exists()


def test_states_of_rotated_checkpoints_are_removed(tmp_path):
    from uec_recipe.checkpoint import remove_orphaned_states

    for step, has_actor in ((2, False), (4, True)):
        folder = tmp_path / f"global_step_{step}"
        (folder / "actor" if has_actor else folder).mkdir(parents=True)
        for name in ("uec_state.pt", "uec_state.batch_buffer.0000.pt", "uec_state.images.pt"):
            (folder / name).write_bytes(b"x")
        (folder / "data.pt").write_bytes(b"x")  # verl's own file: not ours to delete
    removed = remove_orphaned_states(tmp_path)
    assert sorted(p.name for p in removed) == ["uec_state.batch_buffer.0000.pt", "uec_state.images.pt", "uec_state.pt"]
    assert sorted(p.name for p in (tmp_path / "global_step_2").iterdir()) == ["data.pt"]
    assert len(list((tmp_path / "global_step_4").glob("uec_state*"))) == 3


# ---- integrity: a damaged state is refused by name, before any training ----------------------------------------


def save_state(folder, rows: int = 3, with_actor: bool = True):
    """A UEC state of ``rows`` batch-buffer rows in ``folder`` (a global_step_N), as the trainer writes it."""
    from tensordict import TensorDict

    from uec_recipe.algo.buffers import BufferedRow
    from uec_recipe.checkpoint import write_state

    buffered = [BufferedRow(f"k{i}", {"seq_len": 5}, 0.5 + i, bool(i % 2), 1) for i in range(rows)]

    def fetch(keys):
        n = len(keys)
        return TensorDict({"responses": torch.arange(n * 4).reshape(n, 4), "old_log_probs": torch.randn(n, 4)}, [n])

    if with_actor:
        (folder / "actor").mkdir(parents=True)
    write_state(folder, {"global_steps": 2, "replay_updates": 0}, {"batch_buffer": buffered}, fetch)
    return folder


def refusal(path) -> str:
    from uec_recipe.checkpoint import CorruptStateError

    try:
        read_state(path)
    except CorruptStateError as error:
        return str(error)
    raise AssertionError(f"{path} was accepted")


def test_state_records_every_file_and_the_index_checksum_checks_with_sha256sum(tmp_path):
    folder = save_state(tmp_path / "global_step_2")
    state = read_state(folder / "uec_state.pt")
    shard = "uec_state.batch_buffer.0000.pt"
    assert state["buffers"]["batch_buffer"]["shards"] == [shard]
    assert state["files"][shard]["bytes"] == (folder / shard).stat().st_size
    result = subprocess.run(["sha256sum", "-c", "uec_state.pt.sha256"], cwd=folder, capture_output=True, text=True)
    assert result.returncode == 0 and "uec_state.pt: OK" in result.stdout


def test_a_flipped_byte_in_a_shard_is_refused_though_torch_would_load_it(tmp_path):
    save_state(tmp_path / "global_step_2")
    folder = save_state(tmp_path / "global_step_4")
    shard = folder / "uec_state.batch_buffer.0000.pt"
    data = bytearray(shard.read_bytes())
    # find a one-bit flip in the second half (the stored tensors) that torch.load accepts with changed numbers:
    # it does not check the zip records' CRCs, so only the recorded checksum can catch it
    offset = len(data) // 2
    clean = torch.load(shard, weights_only=True)
    for position in range(offset, len(data)):
        data[position] ^= 0x01
        shard.write_bytes(bytes(data))
        try:
            damaged = torch.load(shard, weights_only=True)
        except Exception:
            data[position] ^= 0x01
            continue
        if repr(damaged) != repr(clean):
            break  # loads, with different numbers
        data[position] ^= 0x01
    else:
        raise AssertionError("no byte flip that torch.load accepts silently was found")
    message = refusal(folder / "uec_state.pt")
    assert "uec_state.batch_buffer.0000.pt does not match the checksum" in message
    assert f"trainer.resume_mode=resume_path trainer.resume_from_path={tmp_path / 'global_step_2'}" in message


def test_a_truncated_shard_or_index_names_the_file_and_the_previous_checkpoint(tmp_path):
    save_state(tmp_path / "global_step_2")
    folder = save_state(tmp_path / "global_step_4")
    previous = f"trainer.resume_from_path={tmp_path / 'global_step_2'}"
    shard = folder / "uec_state.batch_buffer.0000.pt"
    whole = shard.read_bytes()
    shard.write_bytes(whole[: len(whole) // 2])
    message = refusal(folder / "uec_state.pt")
    assert "uec_state.batch_buffer.0000.pt has" in message and "truncated" in message and previous in message
    shard.unlink()
    assert "uec_state.batch_buffer.0000.pt is missing" in refusal(folder / "uec_state.pt")
    shard.write_bytes(whole)

    index = folder / "uec_state.pt"
    index.write_bytes(index.read_bytes()[:100])
    message = refusal(index)
    assert "uec_state.pt does not match its checksum in uec_state.pt.sha256" in message and previous in message
    # without the checksum file (a state written before it existed) the load itself fails, as clearly
    (folder / "uec_state.pt.sha256").unlink()
    message = refusal(index)
    assert "uec_state.pt cannot be read: truncated, corrupted" in message and previous in message


def test_with_no_earlier_checkpoint_the_advice_names_the_folder_to_look_in(tmp_path):
    folder = save_state(tmp_path / "global_step_2")
    (folder / "uec_state.batch_buffer.0000.pt").write_bytes(b"")
    message = refusal(folder / "uec_state.pt")
    assert f"trainer.resume_from_path={tmp_path}/global_step_M" in message


def test_a_state_written_before_checksums_still_loads(tmp_path):
    folder = save_state(tmp_path / "global_step_2")
    index = torch.load(folder / "uec_state.pt", weights_only=True)
    del index["files"]
    torch.save(index, folder / "uec_state.pt")
    (folder / "uec_state.pt.sha256").unlink()
    state = read_state(folder / "uec_state.pt")
    from uec_recipe.checkpoint import iter_buffer_shards

    assert [keys for keys, _ in iter_buffer_shards(folder, state, "batch_buffer")] == [["k0", "k1", "k2"]]
    # its shards are still checked for presence, and for readability when loaded
    shard = folder / "uec_state.batch_buffer.0000.pt"
    shard.write_bytes(shard.read_bytes()[:50])
    from uec_recipe.checkpoint import CorruptStateError

    try:
        list(iter_buffer_shards(folder, state, "batch_buffer"))
    except CorruptStateError as error:
        assert "uec_state.batch_buffer.0000.pt cannot be read" in str(error)
    else:
        raise AssertionError("a truncated legacy shard was loaded")


# A process whose files may not grow past 64 KiB (RLIMIT_FSIZE; SIGXFSZ ignored, so writes fail with EFBIG as they
# fail with ENOSPC on a full disk): a save that does not fit must fail loudly and keep the previous state.
FULL_DISK_WRITER = r"""
import resource, signal, sys, torch
from pathlib import Path
import uec_recipe.checkpoint as checkpoint

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))
target = Path(sys.argv[1])
try:
    checkpoint.write_atomically(target, {"version": checkpoint.STATE_VERSION, "big": torch.zeros(100_000)})
except OSError as error:
    print(f"{error.errno} {error}")
    sys.exit(3)
"""


def test_a_write_that_does_not_fit_fails_loudly_and_keeps_the_previous_state(tmp_path):
    import errno

    target = tmp_path / "uec_state.pt"
    write_atomically(target, {"version": STATE_VERSION, "global_steps": 2, "buffers": {}})
    result = subprocess.run([sys.executable, "-c", FULL_DISK_WRITER, str(target)], capture_output=True, text=True)
    assert result.returncode == 3, result.stderr[-2000:]
    code, message = result.stdout.strip().split(" ", 1)
    # the operating system's error, not torch's "unexpected pos", and the file it was writing
    assert int(code) == errno.EFBIG and "File too large" in message and str(target) in message
    assert [p.name for p in tmp_path.iterdir()] == ["uec_state.pt"]  # no temporary file left behind
    assert read_state(target)["global_steps"] == 2


def test_the_state_a_run_would_resume_is_checked_before_ray_starts(tmp_path):
    from omegaconf import OmegaConf

    from uec_recipe.checkpoint import check_resume_state, resume_folder

    save_state(tmp_path / "global_step_2")
    folder = save_state(tmp_path / "global_step_4")
    (tmp_path / "latest_checkpointed_iteration.txt").write_text("4")

    def config(**trainer):
        return OmegaConf.create({"trainer": {"default_local_dir": str(tmp_path), **trainer}, "uec": {"enable": True}})

    assert resume_folder(config(resume_mode="disable").trainer) is None
    assert resume_folder(config(resume_mode="auto").trainer) == folder
    assert check_resume_state(config(resume_mode="auto")) == folder
    previous = config(resume_mode="resume_path", resume_from_path=str(tmp_path / "global_step_2"))
    assert check_resume_state(previous) == tmp_path / "global_step_2"
    # a fresh directory: nothing to resume
    assert check_resume_state(OmegaConf.create({"trainer": {"default_local_dir": str(tmp_path / "new")}})) is None

    shard = folder / "uec_state.batch_buffer.0000.pt"
    shard.write_bytes(shard.read_bytes()[:-10])
    from uec_recipe.checkpoint import CorruptStateError

    with pytest.raises(CorruptStateError, match="uec_state.batch_buffer.0000.pt has"):
        check_resume_state(config(resume_mode="auto"))
    assert check_resume_state(previous) == tmp_path / "global_step_2"  # the advice given works
