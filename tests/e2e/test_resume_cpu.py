"""Resume is exact: a run resumed from uec_run's step-2 checkpoint has its buffers and repeats its steps 3 and 4."""

from __future__ import annotations

import pytest

from uec_recipe.checkpoint import buffer_rows, iter_buffer_shards, read_state

pytestmark = pytest.mark.e2e
COMPARED = [
    "uec/batch_buffer_size",
    "uec/replay_buffer_size",
    "uec/update_ran",
    "uec/update_rows",
    "uec/replay_rows",
    "uec/difficult_prompts",
    "uec/exploration_kept",
    "critic/score/mean",
    "actor/pg_loss",
]


def buffer_contents(folder, state: dict, name: str) -> list[tuple]:
    """What a buffer holds, independent of TransferQueue keys (their uids are random per run)."""
    fields = {}
    for keys, shard in iter_buffer_shards(folder, state, name):
        for i, key in enumerate(keys):
            old = shard["old_log_probs"][i].tolist() if "old_log_probs" in shard.keys() else None
            fields[key] = (shard["responses"][i].tolist(), None if old is None else [round(x, 4) for x in old])
    return [(round(r.advantage, 5), r.exploration, r.step, *fields[r.key]) for r in buffer_rows(state, name)]


def test_resume_restores_buffers_and_continues_identically(uec_run, uec_run_settings, quickstart, tmp_path):
    first, _, first_out = uec_run
    saved_folder = first_out / "checkpoints" / "global_step_2"
    saved = read_state(saved_folder / "uec_state.pt")
    assert saved is not None and saved["global_steps"] == 2
    batch, replay = (len(saved["buffers"][name]["records"]) for name in ("batch_buffer", "replay_buffer"))
    assert batch + replay > 0

    second, _ = quickstart(
        tmp_path,
        steps=4,
        overrides=[
            *uec_run_settings["overrides"],  # the settings of the run resumed
            "trainer.resume_mode=resume_path",
            f"trainer.resume_from_path={saved_folder}",
        ],
    )
    log = (tmp_path / "stdout.log").read_text()
    assert f"[uec] restored {batch} batch-buffer rows and {replay} replay rows" in log
    assert [r["step"] for r in second] == [3, 4]
    for a, b in zip(first[2:], second):
        for key in COMPARED:
            if key in a:
                assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-6), (a["step"], key)

    folders = [out / "checkpoints" / "global_step_4" for out in (first_out, tmp_path)]
    ends = [read_state(folder / "uec_state.pt") for folder in folders]
    for name in ("batch_buffer", "replay_buffer"):
        assert buffer_contents(folders[0], ends[0], name) == buffer_contents(folders[1], ends[1], name)
    assert ends[0]["replay_updates"] == ends[1]["replay_updates"]


def test_saved_states_carry_checksums_that_verify(uec_run):
    """Every checkpoint of uec_run records its shards' sizes and checksums and the index's own, and they verify
    (docs/faults.md: what a resume checks before restoring anything)."""
    import subprocess

    _, _, out = uec_run
    for step in (2, 4):
        folder = out / "checkpoints" / f"global_step_{step}"
        state = read_state(folder / "uec_state.pt")  # raises on any mismatch
        shards = [s for name in ("batch_buffer", "replay_buffer") for s in state["buffers"][name]["shards"]]
        assert shards and sorted(state["files"]) == sorted(shards + ([state["images"]] if state["images"] else []))
        result = subprocess.run(["sha256sum", "-c", "uec_state.pt.sha256"], cwd=folder, capture_output=True, text=True)
        assert result.returncode == 0 and "uec_state.pt: OK" in result.stdout
