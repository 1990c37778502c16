"""uec_lab/smoke/check.py on synthetic run folders: a run that did everything passes every check, and each way a
run can fall short fails the check that covers it (and only that one)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from tensordict import TensorDict

from uec_recipe.algo.buffers import BufferedRow
from uec_recipe.checkpoint import STATE_FILE, write_state
from uec_recipe.rollout.agent_loop import request_record
from uec_lab.smoke import check
from uec_lab.smoke.check import Expected, check_run

EXPECTED = Expected(steps=3, prompts=4, n=2, temperature=1.0, top_p=0.99, exploration_n=3, exploration_temperature=1.2)
CHECK_NAMES = ["metrics", "regular requests", "exploration requests", "update", "replay", "checkpoint"]


def request(uid, session, step, row_temperature, temperature=None, top_p=0.99):
    """A request-log line exactly as the agent loop writes it."""
    sent = {"temperature": row_temperature if temperature is None else temperature, "top_p": top_p, "top_k": -1}
    return request_record(sent, row_temperature, {"uid": uid, "session_id": session, "global_steps": step, "index": 0})


def write_run(
    folder: Path,
    expected: Expected = EXPECTED,
    difficult=(1, 0, 2),
    updates=(1, 2, 3),
    replays=(2, 3),
    update_loss=0.12,
    replay_loss=-0.05,
    checkpoint_step=None,
) -> Path:
    """A run folder as smoke.sh leaves it: verl's metrics lines, the request log, a checkpoint with UEC state."""
    folder.mkdir(parents=True, exist_ok=True)
    requests = []
    with open(folder / check.METRICS_FILE, "w") as metrics:
        for step in range(1, expected.steps + 1):
            for prompt in range(expected.prompts):
                uid = f"s{step}p{prompt}"
                requests += [request(uid, s, step, expected.temperature) for s in range(expected.n)]
            for group in range(difficult[step - 1]):
                uid = f"s{step}x{group}"
                requests += [
                    request(uid, s, step, expected.exploration_temperature) for s in range(expected.exploration_n)
                ]
            data = {
                "uec/difficult_prompts": difficult[step - 1],
                "uec/exploration_samples": difficult[step - 1] * expected.exploration_n,
                "uec/update_ran": int(step in updates),
                "uec/replay_rows": 8 if step in replays else 0,
            }
            if step in updates:
                data["actor/pg_loss"] = update_loss
            if step in replays:
                data["uec_replay/actor/pg_loss"] = replay_loss
            metrics.write(json.dumps({"step": step, "data": data}) + "\n")
    # a validation request (no row temperature) must not disturb the counts
    requests.append(request("val0", 0, expected.steps, None, temperature=0.5))
    (folder / check.REQUESTS_FILE).write_text("".join(json.dumps(r) + "\n" for r in requests))
    step = expected.steps if checkpoint_step is None else checkpoint_step
    checkpoints = folder / check.CHECKPOINT_DIR
    rows = [BufferedRow(key="k_0_0", tag={"response_len": 4}, advantage=1.0, exploration=False, step=step)]
    fields = TensorDict({"responses": torch.nested.as_nested_tensor([torch.ones(4)], layout=torch.jagged)}, [1])
    meta = {"global_steps": step, "replay_updates": 1}
    write_state(
        checkpoints / f"global_step_{step}", meta, {"batch_buffer": rows, "replay_buffer": rows}, lambda _: fields
    )
    (checkpoints / "latest_checkpointed_iteration.txt").write_text(str(step))
    return folder


def results(folder, expected=EXPECTED) -> dict[str, check.Check]:
    checks = check_run(folder, expected)
    assert [c.name for c in checks] == CHECK_NAMES
    return {c.name: c for c in checks}


def failed(folder, expected=EXPECTED) -> list[str]:
    return [name for name, c in results(folder, expected).items() if not c.passed]


def test_a_complete_run_passes_every_check(tmp_path):
    checks = results(write_run(tmp_path / "run"))
    assert all(c.passed for c in checks.values()), [c.line() for c in checks.values()]
    assert (
        "24 requests in 12 groups of G=2 at T=1.0 top_p=0.99 (groups per step 4/4/4)"
        in checks["regular requests"].detail
    )
    assert "9 requests in 3 groups of G'=3 at T'=1.2" in checks["exploration requests"].detail
    assert "(per step 1/0/2)" in checks["exploration requests"].detail
    assert "3 policy updates" in checks["update"].detail and "2 replay updates" in checks["replay"].detail


def test_cli_prints_one_line_per_check_and_exits_by_result(tmp_path, capsys):
    good, bad = write_run(tmp_path / "good"), write_run(tmp_path / "bad", replays=())
    argv = ["--steps", "3", "--prompts", "4", "--n", "2", "--temperature", "1.0", "--top-p", "0.99"]
    argv += ["--exploration-n", "3", "--exploration-temperature", "1.2"]
    assert check.main(["--run", f"text={good}", *argv]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 6 and all(line.startswith("PASS [text] ") for line in lines)
    assert check.main(["--run", f"text={good}", "--run", f"vlm={bad}", *argv]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 12 and [line for line in lines if line.startswith("FAIL")] == [
        "FAIL [vlm] replay: no step logged uec/replay_rows > 0"
    ]


def edit_requests(folder: Path, change) -> None:
    path = folder / check.REQUESTS_FILE
    records = [json.loads(line) for line in path.read_text().splitlines()]
    records = [r for r in (change(r) for r in records) if r is not None]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def _sent_at(temperature):
    def change(r):
        return {**r, "temperature": temperature} if r["row_temperature"] == 1.2 else r

    return change


def _drop_first_session_of(uid):
    return lambda r: None if (r["uid"], r["session_id"]) == (uid, 0) else r


def _top_p(value):
    return lambda r: {**r, "top_p": value} if r["row_temperature"] == 1.0 else r


@pytest.mark.parametrize(
    "change, failing, message",
    [
        # the per-row temperature did not reach the request: T' rows were sent at the batch temperature
        (_sent_at(1.0), "exploration requests", "sent at temperature"),
        (_drop_first_session_of("s3x1"), "exploration requests", "has 2 requests"),
        (_drop_first_session_of("s2p0"), "regular requests", "has 1 requests"),
        (lambda r: None if r["uid"] == "s2p3" else r, "regular requests", "step 2 had 3 regular groups"),
        (_top_p(1.0), "regular requests", "top_p"),
        (lambda r: {**r, "row_temperature": 0.7} if r["uid"] == "s1p0" else r, "regular requests", "unexpected"),
        (lambda r: None if r["uid"] == "s1x0" else r, "exploration requests", "step 1 explored 0 groups but found 1"),
    ],
)
def test_a_request_log_that_falls_short_fails_its_check(tmp_path, change, failing, message):
    folder = write_run(tmp_path / "run")
    edit_requests(folder, change)
    checks = results(folder)
    assert [name for name, c in checks.items() if not c.passed] == [failing]
    assert message in checks[failing].detail


def test_no_difficult_prompt_means_no_exploration_and_fails(tmp_path):
    checks = results(write_run(tmp_path / "run", difficult=(0, 0, 0)))
    assert not checks["exploration requests"].passed
    assert "difficult prompts per step 0/0/0" in checks["exploration requests"].detail


@pytest.mark.parametrize(
    "kwargs, failing, message",
    [
        ({"updates": ()}, "update", "no step logged uec/update_ran=1"),
        ({"update_loss": None}, "update", "not finite"),  # verl's file logger writes NaN as null
        ({"update_loss": math.inf}, "update", "not finite"),
        ({"replays": ()}, "replay", "no step logged uec/replay_rows > 0"),
        ({"replay_loss": None}, "replay", "not finite"),
        ({"checkpoint_step": 2}, "checkpoint", "global_step_3/uec_state.pt was not written"),
    ],
)
def test_metrics_and_checkpoint_that_fall_short_fail_their_check(tmp_path, kwargs, failing, message):
    checks = results(write_run(tmp_path / "run", **kwargs))
    assert [name for name, c in checks.items() if not c.passed] == [failing]
    assert message in checks[failing].detail


def test_a_stale_tracker_or_a_torn_state_file_fails_the_checkpoint(tmp_path):
    folder = write_run(tmp_path / "run")
    (folder / "checkpoints/latest_checkpointed_iteration.txt").write_text("2")
    assert failed(folder) == ["checkpoint"]
    folder = write_run(tmp_path / "torn")
    (folder / "checkpoints/global_step_3" / STATE_FILE).write_bytes(b"not a torch file")
    assert failed(folder) == ["checkpoint"]


def test_missing_step_lines_fail_the_metrics_check(tmp_path):
    folder = write_run(tmp_path / "run")
    lines = (folder / check.METRICS_FILE).read_text().splitlines()
    (folder / check.METRICS_FILE).write_text("\n".join(lines[:2]) + "\n")
    # the requests of step 3 are still there, but the difficult prompts they explored were never logged
    assert failed(folder) == ["metrics", "exploration requests"]


def test_missing_files_fail_with_a_hint(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    checks = results(folder)
    assert not any(c.passed for c in checks.values())
    assert "UEC_AGENT_REQUEST_LOG" in checks["regular requests"].detail


def test_equal_temperatures_are_refused():
    with pytest.raises(ValueError, match="equal"):
        Expected(steps=1, prompts=1, n=2, temperature=1.0, top_p=1.0, exploration_n=2, exploration_temperature=1.0)


def test_cli_rejects_a_malformed_run(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        check.main(
            ["--run", str(tmp_path), "--steps", "1", "--prompts", "1", "--n", "2", "--temperature", "1"]
            + ["--top-p", "1", "--exploration-n", "2", "--exploration-temperature", "1.2"]
        )
    assert exit_info.value.code == 2 and "LABEL=DIR" in capsys.readouterr().err
