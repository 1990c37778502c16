"""verl sees the plugin: every registration, checked in a fresh interpreter (verl swallows plugin errors)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import entry_points

PROBE = r"""
import json, sys
import verl
before = sorted(m for m in sys.modules if m.startswith("uec_recipe"))
from verl.trainer.ppo import core_algos
from verl.experimental.agent_loop import agent_loop
from verl.trainer.ppo.v1.trainer_base import TRAINER_REGISTRY
from verl.workers.rollout import base as rollout_base
from verl.workers.rollout.replica import RolloutReplicaRegistry
from verl.plugin.platform import get_platform
import verl.utils.distributed as dist
print(json.dumps({
    "loaded_at_import": before,
    "adv_estimators": sorted(core_algos.ADV_ESTIMATOR_REGISTRY),
    "agent_loop": agent_loop._agent_loop_registry.get("uec_agent"),
    "trainer": (TRAINER_REGISTRY["uec"].__module__ + "." + TRAINER_REGISTRY["uec"].__name__)
    if "uec" in TRAINER_REGISTRY else None,
    "rollout_adapter": rollout_base._ROLLOUT_REGISTRY.get(("hf", "async")),
    "replica": RolloutReplicaRegistry.get("hf").__name__ if "hf" in RolloutReplicaRegistry._registry else None,
    "platform": get_platform().device_name,
    "backend_patched": getattr(dist.initialize_global_process_group_ray, "_uec_cpu_patched", False),
}))
"""


def probe(**env) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=180, env={**os.environ, **env}
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_entry_point_is_installed():
    names = {ep.name: ep.value for ep in entry_points(group="verl.plugins")}
    assert names.get("uec_rl") == "uec_recipe.plugin"


def test_registrations_in_a_fresh_process_with_the_cpu_backend():
    seen = probe(VERL_PLATFORM="cpu")
    # the plugin stays import-light: only its own small modules load inside `import verl`
    assert set(seen["loaded_at_import"]) <= {
        "uec_recipe",
        "uec_recipe.plugin",
        "uec_recipe.cpu",
        "uec_recipe.cpu.platform",
    }
    assert "uec" in seen["adv_estimators"]
    assert seen["agent_loop"] == {"_target_": "uec_recipe.rollout.agent_loop.UECAgentLoop"}
    assert seen["trainer"] == "uec_recipe.trainer.UECTrainer"
    assert seen["rollout_adapter"] == "uec_recipe.cpu.hf_rollout.HFServerAdapter"
    assert seen["replica"] == "HFReplica"
    assert seen["platform"] == "cpu"
    assert seen["backend_patched"] is True


def test_without_cpu_backend_the_platform_is_left_alone():
    env = {k: v for k, v in os.environ.items() if k != "VERL_PLATFORM"}
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import verl, sys; from verl.plugin.platform import get_platform;"
            "print(get_platform().device_name); print('uec_recipe.cpu.platform' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    device, cpu_module_loaded = result.stdout.split()[-2:]
    assert device != "cpu" and cpu_module_loaded == "False"
