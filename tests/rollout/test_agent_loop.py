"""uec_recipe/rollout/agent_loop.py: the per-row temperature reaches the request, and the opt-in request log records
what each request is sent with. verl's parent ``run`` is replaced by a fake that records its arguments, so no
tokenizer, server or Ray is involved."""

from __future__ import annotations

import asyncio
import json
import os
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest
import torch
from verl.experimental.agent_loop.single_turn_agent_loop import SingleTurnAgentLoop

from uec_recipe.rollout.agent_loop import REQUEST_LOG_ENV, UECAgentLoop, append_request_log

BATCH_PARAMS = {"temperature": 1.0, "top_p": 0.99, "top_k": -1, "repetition_penalty": 1.0, "logprobs": True}


@pytest.fixture
def parent_calls(monkeypatch):
    """Replace SingleTurnAgentLoop.run by a fake that records (sampling_params, kwargs) and returns a marker."""
    calls = []

    async def fake_run(self, sampling_params, **kwargs):
        calls.append((dict(sampling_params), dict(kwargs)))
        return "output"

    monkeypatch.setattr(SingleTurnAgentLoop, "run", fake_run)
    return calls


def run_loop(**row):
    loop = object.__new__(UECAgentLoop)  # run() uses no state set by __init__ (which needs a tokenizer and server)
    return asyncio.run(loop.run(dict(BATCH_PARAMS), raw_prompt=[{"role": "user", "content": "q"}], **row))


def read_log(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_row_temperature_reaches_the_request_and_is_logged(parent_calls, tmp_path, monkeypatch):
    log = tmp_path / "requests.jsonl"
    monkeypatch.setenv(REQUEST_LOG_ENV, str(log))
    # values as verl's V1 worker hands them over: numpy scalars and 0-d tensors from the prompt batch
    row = dict(uid="u1", session_id=3, global_steps=np.int64(2), index=torch.tensor(7), uec_temperature=np.float32(1.2))
    assert run_loop(**row) == "output"
    params, kwargs = parent_calls[0]
    assert params["temperature"] == 1.2 and params["top_p"] == 0.99
    assert "uec_temperature" not in kwargs and kwargs["uid"] == "u1"
    [record] = read_log(log)
    assert {k: record[k] for k in ("uid", "session_id", "global_steps", "index")} == {
        "uid": "u1",
        "session_id": 3,
        "global_steps": 2,
        "index": 7,
    }
    assert (record["row_temperature"], record["temperature"], record["top_p"], record["top_k"]) == (1.2, 1.2, 0.99, -1)
    assert record["pid"] == os.getpid()


def test_rows_without_the_column_keep_the_batch_parameters(parent_calls, tmp_path, monkeypatch):
    log = tmp_path / "requests.jsonl"
    monkeypatch.setenv(REQUEST_LOG_ENV, str(log))
    run_loop(uid="val", session_id=0, global_steps=5, index=1)
    assert parent_calls[0][0] == BATCH_PARAMS
    [record] = read_log(log)
    assert record["row_temperature"] is None and record["temperature"] == 1.0


def test_no_log_without_the_variable(parent_calls, tmp_path, monkeypatch):
    monkeypatch.delenv(REQUEST_LOG_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    run_loop(uid="u", session_id=0, global_steps=1, index=0, uec_temperature=1.0)
    assert parent_calls and list(tmp_path.iterdir()) == []


def test_an_unwritable_log_path_names_the_variable(parent_calls, tmp_path, monkeypatch):
    monkeypatch.setenv(REQUEST_LOG_ENV, str(tmp_path / "missing-folder" / "requests.jsonl"))
    with pytest.raises(OSError, match=f"{REQUEST_LOG_ENV}=.*missing-folder"):
        run_loop(uid="u", session_id=0, global_steps=1, index=0, uec_temperature=1.0)
    assert parent_calls == []  # the request is not sent unlogged


def test_a_bad_row_temperature_is_rejected(parent_calls):
    with pytest.raises(ValueError, match="uec_temperature"):
        run_loop(uid="u", session_id=0, global_steps=1, index=0, uec_temperature=0.0)


def _append_many(args):
    path, worker, count = args
    for i in range(count):
        append_request_log(path, {"worker": worker, "i": i, "pad": "x" * 200})
    return count


def test_concurrent_writers_append_whole_lines(tmp_path):
    # agent-loop workers are separate processes sharing one log file
    path = str(tmp_path / "requests.jsonl")
    with ProcessPoolExecutor(max_workers=2) as pool:
        assert sum(pool.map(_append_many, [(path, w, 300) for w in range(4)])) == 1200
    records = read_log(tmp_path / "requests.jsonl")
    assert len(records) == 1200
    for worker in range(4):
        assert [r["i"] for r in records if r["worker"] == worker] == list(range(300))
