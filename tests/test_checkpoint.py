"""UEC state files are written atomically: a process killed in the middle of a save leaves the last state intact."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

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
