"""Resume is exact: a run resumed from a mid-run checkpoint has the first run's buffers and continues identically."""

from __future__ import annotations

import pytest
import torch

from uec_recipe.checkpoint import read_state

pytestmark = pytest.mark.e2e
COMPARED = [
    "uec/batch_buffer_size",
    "uec/replay_buffer_size",
    "uec/update_ran",
    "uec/replay_rows",
    "uec/difficult_prompts",
    "uec/exploration_kept",
    "critic/score/mean",
    "actor/pg_loss",
]


def buffer_contents(state: dict, name: str) -> list[tuple]:
    """What a buffer holds, independent of TransferQueue keys (their uids are random per run)."""
    rows = state[name]
    fields = state[f"{name}_fields"]
    contents = []
    for i, row in enumerate(rows):
        responses = fields["responses"][i].tolist()
        old = fields["old_log_probs"][i].tolist() if "old_log_probs" in fields.keys() else None
        contents.append(
            (
                round(row["advantage"], 5),
                row["exploration"],
                row["step"],
                responses,
                None if old is None else [round(x, 4) for x in old],
            )
        )
    return contents


def test_resume_restores_buffers_and_continues_identically(demo, quickstart, tmp_path):
    first_out, second_out = tmp_path / "first", tmp_path / "second"
    first, _ = quickstart(first_out, steps=4, overrides=["trainer.save_freq=2"])
    saved = read_state(first_out / "checkpoints/global_step_2/uec_state.pt")
    assert saved is not None and saved["global_steps"] == 2
    assert len(saved["batch_buffer"]) + len(saved["replay_buffer"]) > 0

    second, _ = quickstart(
        second_out,
        steps=4,
        overrides=[
            "trainer.save_freq=2",
            "trainer.resume_mode=resume_path",
            f"trainer.resume_from_path={first_out}/checkpoints/global_step_2",
        ],
    )
    log = (second_out / "stdout.log").read_text()
    assert (
        f"[uec] restored {len(saved['batch_buffer'])} batch-buffer rows and {len(saved['replay_buffer'])} replay rows"
    ) in log
    assert [r["step"] for r in second] == [3, 4]
    for a, b in zip(first[2:], second):
        for key in COMPARED:
            if key in a:
                assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-6), (a["step"], key)

    end_first = read_state(first_out / "checkpoints/global_step_4/uec_state.pt")
    end_second = read_state(second_out / "checkpoints/global_step_4/uec_state.pt")
    for name in ("batch_buffer", "replay_buffer"):
        assert buffer_contents(end_first, name) == buffer_contents(end_second, name)
    assert end_first["replay_updates"] == end_second["replay_updates"]


def test_grpo_checkpoint_resumes_under_uec_with_empty_buffers(demo, quickstart, tmp_path):
    grpo_out, uec_out = tmp_path / "grpo", tmp_path / "uec"
    quickstart(grpo_out, steps=1, algo="grpo", overrides=["trainer.save_freq=1"])
    rows, _ = quickstart(
        uec_out,
        steps=2,
        overrides=["trainer.resume_mode=resume_path", f"trainer.resume_from_path={grpo_out}/checkpoints/global_step_1"],
    )
    assert "has no uec_state.pt: resuming with empty buffers" in (uec_out / "stdout.log").read_text()
    assert [r["step"] for r in rows] == [2]
    assert torch.isfinite(torch.tensor(rows[0]["critic/score/mean"]))
