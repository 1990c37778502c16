"""The rollout-temperature hook: a single-turn agent loop that honours a per-row temperature.

verl 0.9.1's agent loop builds one set of sampling parameters for a whole batch. Every extra column of a
prompt row reaches the agent loop's ``run`` as a keyword argument, so the UEC step puts the temperature it
wants for that prompt in the ``uec_temperature`` column (the base temperature for regular prompts, T' for
the exploration re-samples of difficult prompts) and this loop swaps it into the request's sampling
parameters. Rows without the column (validation) keep the batch parameters untouched.

Registered as ``uec_agent`` by ``uec_recipe.plugin``; select it with
``actor_rollout_ref.rollout.agent.default_agent_loop=uec_agent``.
"""

from __future__ import annotations

from typing import Any

from verl.experimental.agent_loop.agent_loop import AgentLoopOutput
from verl.experimental.agent_loop.single_turn_agent_loop import SingleTurnAgentLoop

TEMPERATURE_COLUMN = "uec_temperature"


def apply_row_temperature(sampling_params: dict[str, Any], row_temperature) -> dict[str, Any]:
    """The request's sampling parameters with the row's temperature, if it has one."""
    if row_temperature is None:
        return sampling_params
    temperature = float(row_temperature)
    if not temperature > 0:
        raise ValueError(f"{TEMPERATURE_COLUMN}={row_temperature!r}: a sampled row needs a temperature > 0")
    # rounded so that a value stored as float32 on its way through the data pipeline arrives as written
    return {**sampling_params, "temperature": round(temperature, 6)}


class UECAgentLoop(SingleTurnAgentLoop):
    async def run(self, sampling_params: dict[str, Any], **kwargs) -> AgentLoopOutput:
        row_temperature = kwargs.pop(TEMPERATURE_COLUMN, None)
        if hasattr(row_temperature, "item"):
            row_temperature = row_temperature.item()
        return await super().run(apply_row_temperature(sampling_params, row_temperature), **kwargs)
