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
    "finder_in_meta_path": sys.modules["uec_recipe.plugin"]._FINDER in sys.meta_path,
    "failures": sorted(sys.modules["uec_recipe.plugin"].FAILURES),
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
    # every registration ran, without error, and the import hook is gone
    assert seen["failures"] == [] and seen["finder_in_meta_path"] is False


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


# ---- isolation: a UEC-RL module that fails to import must not break verl ----------------------------------------

# Runs before `import verl`: makes the modules named in argv[1] (comma-separated) raise an ImportError when
# imported, as a missing optional dependency or a version skew inside them would.
BREAK_MODULE = r"""
import importlib.abc, importlib.machinery, sys

class Broken(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path, target=None):
        return importlib.machinery.ModuleSpec(name, self) if name in sys.argv[1].split(",") else None
    def create_module(self, spec):
        return None
    def exec_module(self, module):
        raise ModuleNotFoundError("No module named 'uec_missing_dependency'", name="uec_missing_dependency")

sys.meta_path.insert(0, Broken())
"""

ISOLATION_PROBE = (
    BREAK_MODULE
    + r"""
import json
import hydra
import verl
import verl.trainer.ppo.v1.trainer_base as trainer_base  # raised the ImportError before isolation
from verl.trainer.ppo import core_algos
from verl.experimental.agent_loop import agent_loop
from verl.workers.rollout import base as rollout_base
from verl.workers.rollout import replica as rollout_replica
import verl.utils.distributed
import uec_recipe.plugin as plugin


def error_of(use):
    try:
        use()
    except Exception as error:
        return {"type": type(error).__name__, "message": str(error), "cause": repr(error.__cause__)}
    return None


print(json.dumps({
    "finder_in_meta_path": plugin._FINDER in sys.meta_path,
    "failures": sorted(plugin.FAILURES),
    "grpo_trainer": trainer_base.get_trainer_cls("sync").__name__,
    "grpo_estimator": core_algos.get_adv_estimator_fn("grpo").__name__,
    "trainer": error_of(lambda: trainer_base.get_trainer_cls("uec")(config=None)),
    "estimator": error_of(lambda: core_algos.get_adv_estimator_fn("uec")()),
    "agent_loop": error_of(lambda: hydra.utils.instantiate(agent_loop._agent_loop_registry["uec_agent"])),
}))
"""
)


def run_probe(code: str, argument: str, env: dict) -> tuple[dict, str]:
    """Run ``code`` in a fresh interpreter; the JSON it prints last, and its stderr."""
    result = subprocess.run(
        [sys.executable, "-c", code, argument], capture_output=True, text=True, timeout=180, env=env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1]), result.stderr


def run_isolation_probe(broken_module: str, **env) -> tuple[dict, str]:
    return run_probe(ISOLATION_PROBE, broken_module, {**os.environ, "VERL_PLATFORM": "cpu", **env})


def uec_warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "uec-rl: registering" in line]


def test_a_failing_trainer_module_leaves_verl_working_and_uec_mode_fails_with_the_cause():
    seen, stderr = run_isolation_probe("uec_recipe.trainer")
    # one warning, naming uec-rl, the verl module whose import ran the registration, and the error
    (warning,) = uec_warnings(stderr)
    assert "trainer mode uec" in warning and "verl.trainer.ppo.v1.trainer_base" in warning
    assert "ModuleNotFoundError: No module named 'uec_missing_dependency'" in warning
    assert seen["failures"] == ["trainer mode uec"]
    # plain verl is intact; the hook has left sys.meta_path after its last registration
    assert seen["grpo_trainer"] == "PPOTrainerSync" and seen["grpo_estimator"] == "compute_grpo_outcome_advantage"
    assert seen["finder_in_meta_path"] is False
    # asking for the UEC trainer fails with the original cause
    error = seen["trainer"]
    assert error["type"] == "UECUnavailableError"
    assert "trainer.v1.trainer_mode=uec" in error["message"] and "uec_missing_dependency" in error["message"]
    assert error["cause"].startswith("ModuleNotFoundError(") and "uec_missing_dependency" in error["cause"]
    # what did not fail still works
    assert seen["estimator"]["type"] != "UECUnavailableError"
    assert "uec_missing_dependency" not in seen["agent_loop"]["message"]


def test_failing_estimator_and_agent_loop_modules_fail_their_own_settings_with_the_cause():
    seen, stderr = run_isolation_probe("uec_recipe.algo.estimators,uec_recipe.rollout.agent_loop")
    # one warning per failed registration (the trainer imports both modules, so it fails too)
    warnings = uec_warnings(stderr)
    assert seen["failures"] == ["advantage estimator uec", "agent loop uec_agent", "trainer mode uec"]
    assert len(warnings) == 3 and seen["finder_in_meta_path"] is False
    assert any("advantage estimator uec" in w and "verl.trainer.ppo.core_algos" in w for w in warnings)
    assert any("agent loop uec_agent" in w and "verl.experimental.agent_loop.agent_loop" in w for w in warnings)
    error = seen["estimator"]
    assert error["type"] == "UECUnavailableError"
    assert "algorithm.adv_estimator=uec" in error["message"] and "uec_missing_dependency" in error["message"]
    assert "uec_missing_dependency" in error["cause"]
    # hydra wraps what the agent loop's target raises; the message still names the setting and the cause
    message = seen["agent_loop"]["message"]
    assert "default_agent_loop=uec_agent" in message and "uec_missing_dependency" in message
    assert seen["grpo_trainer"] == "PPOTrainerSync"
    assert seen["grpo_estimator"] == "compute_grpo_outcome_advantage"


# Fakes the vLLM server module (vllm is not installed here) and the server-log module the hook installs, so the test
# holds whether or not uec_recipe/rollout/server_log.py exists. argv[1]: "works" or "fails".
SERVER_LOG_PROBE = r"""
import importlib.abc, importlib.machinery, json, sys, types

SERVER = "verl.workers.rollout.vllm_rollout.vllm_async_server"
installed = []


class Fakes(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path, target=None):
        if name in (SERVER, SERVER.rpartition(".")[0], "uec_recipe.rollout.server_log"):
            return importlib.machinery.ModuleSpec(name, self, is_package=name != SERVER and "server_log" not in name)
        return None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        if module.__name__ == "uec_recipe.rollout.server_log":
            if sys.argv[1] == "fails":
                raise ModuleNotFoundError("No module named 'uec_recipe.rollout.server_log'")
            module.install = lambda server_module: installed.append(server_module.__name__)


import verl
sys.meta_path.insert(0, Fakes())  # behind the plugin's finder, which wraps what the regular finders return
import uec_recipe.plugin as plugin
__import__(SERVER)
print(json.dumps({"installed": installed, "failures": sorted(plugin.FAILURES)}))
"""


def run_server_log_probe(mode: str, **env) -> tuple[dict, str]:
    return run_probe(SERVER_LOG_PROBE, mode, {**{k: v for k, v in os.environ.items() if k != "UEC_SERVER_LOG"}, **env})


def test_server_log_is_installed_after_the_vllm_server_imports_when_asked():
    seen, _ = run_server_log_probe("works", UEC_SERVER_LOG="/tmp/server.jsonl")
    assert seen == {"installed": ["verl.workers.rollout.vllm_rollout.vllm_async_server"], "failures": []}


def test_a_missing_server_log_module_only_warns_and_without_the_variable_nothing_is_installed():
    seen, stderr = run_server_log_probe("fails", UEC_SERVER_LOG="/tmp/server.jsonl")
    assert seen == {"installed": [], "failures": ["vLLM server log"]}  # and the server module imported
    (warning,) = uec_warnings(stderr)
    assert "vllm_async_server" in warning and "uec_recipe.rollout.server_log" in warning
    seen, stderr = run_server_log_probe("fails")  # UEC_SERVER_LOG unset: the hook is not even attached
    assert seen == {"installed": [], "failures": []} and not uec_warnings(stderr)
