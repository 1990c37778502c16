"""uec_lab/smoke/check.py on synthetic run folders: a run that did everything passes every check, and each way a
run can fall short fails the check that covers it (and only that one). The logs are written by the recipe's own
writers: the agent loop's ``request_record`` and the rollout server's ``server_record`` / ``append_server_log``."""

from __future__ import annotations

import dataclasses
import json
import math
import types
from pathlib import Path

import pytest
import torch
from PIL import Image
from tensordict import TensorDict

from uec_lab.smoke import check
from uec_lab.smoke.check import Expected, check_run
from uec_recipe.algo.buffers import BufferedRow
from uec_recipe.checkpoint import STATE_FILE, write_state
from uec_recipe.rollout.agent_loop import request_record
from uec_recipe.rollout.server_log import append_server_log, server_record

EXPECTED = Expected(steps=3, prompts=4, n=2, temperature=1.0, top_p=0.99, exploration_n=3, exploration_temperature=1.2)
CHECK_NAMES = [
    "metrics",
    "regular requests",
    "exploration requests",
    "server requests",
    "update",
    "replay",
    "checkpoint",
]
PIXELS = {"min_pixels": 3136, "max_pixels": 12544}
VALIDATED = dataclasses.replace(EXPECTED, validation_temperature=0.5)
WITH_IMAGES = dataclasses.replace(EXPECTED, images=True, mm_processor_kwargs=PIXELS)
# what the recipe's validation hook logs for one validation prompt sampled once at T = 0.5 (uec_recipe/eval/passk.py)
VALIDATION = {"temperature": 0.5, "top_p": 1.0, "n": 1.0, "num_problems": 1.0, "pass@1": 0.0}


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
    validation=None,
    server_change=None,
) -> Path:
    """A run folder as smoke.sh leaves it: verl's metrics lines, the agent loop's request log, the rollout server's
    log of the same requests (``server_change`` edits each server record, None drops it), a checkpoint with UEC
    state. ``validation``: the validation metrics logged at the last step (the request is always in the logs)."""
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
            if step == expected.steps and validation is not None:
                data.update({f"val-passk/digits/{name}": value for name, value in validation.items()})
            metrics.write(json.dumps({"step": step, "data": data}) + "\n")
    # a validation request (no row temperature) must not disturb the training counts
    requests.append(request("val0", 0, expected.steps, None, temperature=0.5, top_p=1.0))
    (folder / check.REQUESTS_FILE).write_text("".join(json.dumps(r) + "\n" for r in requests))
    write_server_log(folder / check.SERVER_DIR, requests, expected, server_change)
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


def prompt_of(uid: str) -> tuple[list[int], Image.Image]:
    """The prompt ids and the picture of a uid's prompt: every uid its own prompt and picture."""
    number = sum(ord(c) * 31**i for i, c in enumerate(uid)) % 250
    return [7, number, 9], Image.new("RGB", (56, 56), (number, 255 - number, 0))


def write_server_log(folder: Path, requests: list[dict], expected: Expected, change=None) -> None:
    """The server's record of each request as ``vLLMHttpServer.generate`` receives it from the agent loop."""
    for sent in requests:
        ids, picture = prompt_of(sent["uid"])
        arguments = {
            "prompt_ids": ids,
            "sampling_params": {"temperature": sent["temperature"], "top_p": sent["top_p"], "top_k": sent["top_k"]},
            "request_id": f"{sent['uid']}-{sent['session_id']}",
            "image_data": [picture] if expected.images else None,
            "mm_processor_kwargs": expected.mm_processor_kwargs if expected.images else None,
        }
        record = server_record(arguments, types.SimpleNamespace(global_steps=sent["global_steps"], replica_rank=0))
        record["row_temperature"] = sent["row_temperature"]  # for the edits below; the reader ignores it
        record = record if change is None else change(record)
        if record is not None:
            append_server_log(str(folder), record)


def results(folder, expected=EXPECTED) -> dict[str, check.Check]:
    checks = check_run(folder, expected)
    assert [c.name for c in checks] == check.check_names(expected)
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
    assert len(lines) == len(CHECK_NAMES) and all(line.startswith("PASS [text] ") for line in lines)
    assert check.main(["--run", f"text={good}", "--run", f"vlm={bad}", *argv]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 * len(CHECK_NAMES) and [line for line in lines if line.startswith("FAIL")] == [
        "FAIL [vlm] replay: no step logged uec/replay_rows > 0"
    ]


def test_cli_checks_validation_and_images_on_the_runs_named(tmp_path, capsys):
    text = write_run(tmp_path / "text", VALIDATED, validation=VALIDATION)
    vlm = write_run(tmp_path / "vlm", WITH_IMAGES)
    argv = ["--run", f"text={text}", "--run", f"vlm={vlm}", "--steps", "3", "--prompts", "4", "--n", "2"]
    argv += ["--temperature", "1.0", "--top-p", "0.99", "--exploration-n", "3", "--exploration-temperature", "1.2"]
    argv += ["--validate", "text", "--val-temperature", "0.5", "--images", "vlm"]
    assert check.main([*argv, "--mm-processor-kwargs", json.dumps(PIXELS)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("PASS [text] validation: 1 requests at T=0.5") for line in lines)
    assert any(line.startswith("PASS [vlm] images: all ") for line in lines)
    assert not any("[text] images" in line or "[vlm] validation" in line for line in lines)
    assert check.main([*argv, "--mm-processor-kwargs", '{"min_pixels": 3136, "max_pixels": 4194304}']) == 1
    failing = [line for line in capsys.readouterr().out.splitlines() if line.startswith("FAIL")]
    assert len(failing) == 1 and failing[0].startswith("FAIL [vlm] images: ")


def edit_requests(folder: Path, change, expected: Expected = EXPECTED) -> None:
    """Change what the agent loop sent; the server receives the changed requests."""
    path = folder / check.REQUESTS_FILE
    records = [json.loads(line) for line in path.read_text().splitlines()]
    records = [r for r in (change(r) for r in records) if r is not None]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    for server_file in (folder / check.SERVER_DIR).glob("*.jsonl"):
        server_file.unlink()
    write_server_log(folder / check.SERVER_DIR, records, expected)


def _sent_at(temperature):
    def change(r):
        return {**r, "temperature": temperature} if r["row_temperature"] == 1.2 else r

    return change


def _drop_first_session_of(uid):
    return lambda r: None if (r["uid"], r["session_id"]) == (uid, 0) else r


def _top_p(value):
    return lambda r: {**r, "top_p": value} if r["row_temperature"] == 1.0 else r


# What the agent loop sent is what the server received here, so a broken group also breaks the server's groups.
SERVER = "server requests"


@pytest.mark.parametrize(
    "change, failing, message",
    [
        # the per-row temperature did not reach the request: T' rows were sent at the batch temperature
        (_sent_at(1.0), ["exploration requests", SERVER], "sent at temperature"),
        (_drop_first_session_of("s3x1"), ["exploration requests", SERVER], "has 2 requests"),
        (_drop_first_session_of("s2p0"), ["regular requests", SERVER], "has 1 requests"),
        (lambda r: None if r["uid"] == "s2p3" else r, ["regular requests"], "step 2 had 3 regular groups"),
        (_top_p(1.0), ["regular requests"], "top_p"),
        (
            lambda r: {**r, "row_temperature": 0.7} if r["uid"] == "s1p0" else r,
            ["regular requests", SERVER],
            "unexpected",
        ),
        (lambda r: None if r["uid"] == "s1x0" else r, ["exploration requests"], "step 1 explored 0 groups but found 1"),
    ],
)
def test_a_request_log_that_falls_short_fails_its_check(tmp_path, change, failing, message):
    folder = write_run(tmp_path / "run")
    edit_requests(folder, change)
    checks = results(folder)
    assert [name for name, c in checks.items() if not c.passed] == failing
    assert message in checks[failing[0]].detail


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


# ---- what vLLM's server received -------------------------------------------------------------------------------


def _server(predicate, edit):
    return lambda record: edit(record) if predicate(record) else record


def _exploration(record) -> bool:
    return record["row_temperature"] == 1.2


@pytest.mark.parametrize(
    "change, message",
    [
        # T' dropped on the way: the agent loop sent 1.2, the server got the batch temperature
        (_server(_exploration, lambda r: {**r, "temperature": 1.0}), "(1.2, 0.99), the server received 0"),
        # or no temperature at all (vLLM's default would apply)
        (_server(_exploration, lambda r: {**r, "temperature": None}), "(temperature, top_p)=(None, 0.99)"),
        (_server(lambda r: True, lambda r: {**r, "top_p": 1.0} if r["temperature"] == 1.0 else r), "top_p)=(1.0, 1.0)"),
        # one sample of an exploration group never reached the server
        (_server(lambda r: r["request_id"] == "s3x1-0", lambda r: None), "not a multiple of 3"),
        # a sample of an exploration group reached the server with another prompt than its group's
        (_server(lambda r: r["request_id"] == "s3x1-0", lambda r: {**r, "prompt_digest": "other"}), "multiple of 3"),
    ],
)
def test_a_server_log_that_differs_from_what_the_agent_loop_sent_fails(tmp_path, change, message):
    folder = write_run(tmp_path / "run", server_change=change)
    checks = results(folder)
    assert [name for name, c in checks.items() if not c.passed] == ["server requests"], checks
    assert message in checks["server requests"].detail


def test_the_server_check_passes_on_what_the_agent_loop_sent(tmp_path):
    checks = results(write_run(tmp_path / "run"))
    detail = checks["server requests"].detail
    assert checks["server requests"].passed, detail
    assert "T=1.0: 24 in 12 groups of G=2, T'=1.2: 9 in 3 groups of G'=3" in detail


def test_no_server_log_fails_with_a_hint(tmp_path):
    folder = write_run(tmp_path / "run", server_change=lambda r: None)
    checks = results(folder)
    assert [name for name, c in checks.items() if not c.passed] == ["server requests"]
    assert "UEC_SERVER_LOG" in checks["server requests"].detail


def test_several_server_processes_write_one_file_each_and_are_read_together(tmp_path):
    folder = write_run(tmp_path / "run")
    (path,) = (folder / check.SERVER_DIR).glob("server-*.jsonl")
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[::2]) + "\n")
    (path.parent / "server-other-1.jsonl").write_text("\n".join(lines[1::2]) + "\n")
    assert results(folder)["server requests"].passed


@pytest.mark.parametrize(
    "change, message",
    [
        (_server(lambda r: r["request_id"] == "s2p1-0", lambda r: {**r, "images": 0}), "without a picture"),
        (_server(lambda r: True, lambda r: {**r, "mm_processor_kwargs": None}), "mm_processor_kwargs None"),
    ],
)
def test_a_vlm_request_without_its_picture_or_pixel_limits_fails_the_images_check(tmp_path, change, message):
    assert check.check_names(WITH_IMAGES).count("images") == 1
    assert all(c.passed for c in results(write_run(tmp_path / "good", WITH_IMAGES), WITH_IMAGES).values())
    checks = results(write_run(tmp_path / "run", WITH_IMAGES, server_change=change), WITH_IMAGES)
    assert [name for name, c in checks.items() if not c.passed] == ["images"]
    assert message in checks["images"].detail


def test_a_text_run_checked_for_pictures_fails(tmp_path):
    checks = results(write_run(tmp_path / "run"), WITH_IMAGES)
    assert [name for name, c in checks.items() if not c.passed] == ["images"]


# ---- validation ------------------------------------------------------------------------------------------------


def test_a_validated_run_passes_and_names_the_validation(tmp_path):
    checks = results(write_run(tmp_path / "run", VALIDATED, validation=VALIDATION), VALIDATED)
    assert all(c.passed for c in checks.values()), [c.line() for c in checks.values()]
    assert checks["validation"].detail == "1 requests at T=0.5 (validation at steps [3], 1 data source(s))"


@pytest.mark.parametrize(
    "validation, message",
    [
        (None, "no step logged val-passk/<source>/temperature"),
        ({**VALIDATION, "temperature": 1.0}, "validated digits at temperature 1.0"),
        ({**VALIDATION, "num_problems": 2.0}, "the agent loop sent 1 validation requests, the metrics count 2"),
    ],
)
def test_validation_that_did_not_run_as_asked_fails(tmp_path, validation, message):
    checks = results(write_run(tmp_path / "run", VALIDATED, validation=validation), VALIDATED)
    assert [name for name, c in checks.items() if not c.passed] == ["validation"]
    assert message in checks["validation"].detail


def test_a_validation_temperature_equal_to_t_or_t_prime_is_refused():
    for temperature in (1.0, 1.2):
        with pytest.raises(ValueError, match="--val-temperature"):
            dataclasses.replace(EXPECTED, validation_temperature=temperature)


def test_cli_refuses_options_for_runs_it_was_not_given(tmp_path, capsys):
    argv = ["--run", f"text={tmp_path}", "--steps", "1", "--prompts", "1", "--n", "2", "--temperature", "1"]
    argv += ["--top-p", "1", "--exploration-n", "2", "--exploration-temperature", "1.2"]
    for extra, message in (
        (["--images", "vlm"], "--images ['vlm']: not a --run label"),
        (["--validate", "text"], "--validate needs --val-temperature"),
        (["--images", "text", "--mm-processor-kwargs", "[1]"], "must be a JSON object"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            check.main(argv + extra)
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
