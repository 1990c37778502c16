"""The rollout-temperature hook: a single-turn agent loop that honours a per-row temperature.

verl 0.9.1's agent loop builds one set of sampling parameters for a whole batch. Every extra column of a
prompt row reaches the agent loop's ``run`` as a keyword argument, so the UEC step puts the temperature it
wants for that prompt in the ``uec_temperature`` column (the base temperature for regular prompts, T' for
the exploration re-samples of difficult prompts) and this loop swaps it into the request's sampling
parameters. Rows without the column (validation) keep the batch parameters untouched.

Opt-in request log: with ``UEC_AGENT_REQUEST_LOG=<path>`` in the agent-loop workers' environment, every request
appends one JSON line to ``<path>`` with the sampling parameters it is sent with and the row it belongs to (uid,
session, training step, dataset index, the row's ``uec_temperature``). It is written here, where the request is
made, so it shows what any rollout backend (vLLM, SGLang, the CPU ``hf`` rollout) receives. Several agent-loop
worker processes append to the same file; each line is one ``write`` to a file opened with ``O_APPEND``, so lines
do not interleave on a local file system. The GPU smoke test (``run_scripts/gpu/smoke.sh``) reads it.

Registered as ``uec_agent`` by ``uec_recipe.plugin``; select it with
``actor_rollout_ref.rollout.agent.default_agent_loop=uec_agent``.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from verl.experimental.agent_loop.agent_loop import AgentLoopOutput
from verl.experimental.agent_loop.single_turn_agent_loop import SingleTurnAgentLoop

TEMPERATURE_COLUMN = "uec_temperature"
REQUEST_LOG_ENV = "UEC_AGENT_REQUEST_LOG"
# Row fields copied into each log line: the group (uid), the sample within it (session_id, set by verl's V1 agent
# loop worker), the training step that drew the prompt, and the dataset row.
LOGGED_ROW_FIELDS = ("uid", "session_id", "global_steps", "index")
LOGGED_SAMPLING_PARAMS = ("temperature", "top_p", "top_k")


def apply_row_temperature(sampling_params: dict[str, Any], row_temperature) -> dict[str, Any]:
    """The request's sampling parameters with the row's temperature, if it has one."""
    if row_temperature is None:
        return sampling_params
    temperature = float(row_temperature)
    if not temperature > 0:
        raise ValueError(f"{TEMPERATURE_COLUMN}={row_temperature!r}: a sampled row needs a temperature > 0")
    # rounded so that a value stored as float32 on its way through the data pipeline arrives as written
    return {**sampling_params, "temperature": round(temperature, 6)}


def _plain(value):
    """A JSON-ready form of a row field (numpy scalars and 0-d tensors arrive here as well as plain values)."""
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        value = value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def request_record(sampling_params: dict[str, Any], row_temperature, row: dict[str, Any]) -> dict[str, Any]:
    """One request-log line: the parameters the request is sent with and the row it belongs to."""
    record = {name: _plain(row.get(name)) for name in LOGGED_ROW_FIELDS}
    record["row_temperature"] = None if row_temperature is None else round(float(row_temperature), 6)
    record.update({name: _plain(sampling_params.get(name)) for name in LOGGED_SAMPLING_PARAMS})
    record["pid"] = os.getpid()
    record["time"] = round(time.time(), 3)
    return record


def append_request_log(path: str, record: dict[str, Any]) -> None:
    """Append one JSON line with a single write (O_APPEND), so concurrent writers never interleave lines."""
    line = (json.dumps(record, sort_keys=True) + "\n").encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as error:
        raise OSError(
            f"{REQUEST_LOG_ENV}={path}: cannot append the agent-loop request log ({error.strerror}); "
            f"create its folder on every node or unset {REQUEST_LOG_ENV}"
        ) from error
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


class UECAgentLoop(SingleTurnAgentLoop):
    async def run(self, sampling_params: dict[str, Any], **kwargs) -> AgentLoopOutput:
        row_temperature = kwargs.pop(TEMPERATURE_COLUMN, None)
        if hasattr(row_temperature, "item"):
            row_temperature = row_temperature.item()
        params = apply_row_temperature(sampling_params, row_temperature)
        log_path = os.environ.get(REQUEST_LOG_ENV)
        if log_path:
            append_request_log(log_path, request_record(params, row_temperature, kwargs))
        return await super().run(params, **kwargs)
