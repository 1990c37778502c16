"""The one module verl imports (entry point group ``verl.plugins``): registrations only.

verl imports every ``verl.plugins`` entry point inside ``import verl``, in every process (driver, TaskRunner,
workers, agent-loop workers, rollout servers). Importing our trainer or verl's agent loop here would make each
of those processes pay for modules it never uses, so nothing heavy is imported now. Instead each registration
is attached to the verl module that owns the registry and runs right after that module is first imported
(or immediately, if it already was):

* ``verl.trainer.ppo.core_algos``            → advantage estimator ``uec``
* ``verl.experimental.agent_loop.agent_loop`` → agent loop ``uec_agent`` (per-row temperature)
* ``verl.trainer.ppo.v1.trainer_base``        → V1 trainer mode ``uec``
* ``verl.workers.rollout.base`` / ``.replica`` → CPU rollout ``hf`` (only with ``VERL_PLATFORM=cpu``)

With ``VERL_PLATFORM=cpu`` the CPU platform itself is registered eagerly: verl resolves its platform on first
use, which can come before any of the modules above.

verl swallows plugin import errors (it logs them at DEBUG level), so this module must not fail; the tests
check every registration in a fresh interpreter.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import sys
from typing import Callable

_HOOKS: dict[str, list[Callable]] = {}


class _AfterImportFinder(importlib.abc.MetaPathFinder):
    """Runs the registered callbacks once a watched module has finished executing."""

    def find_spec(self, fullname, path, target=None):
        if fullname not in _HOOKS:
            return None
        # Let the regular finders locate the module, then wrap its loader.
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return None
        original_exec = spec.loader.exec_module

        def exec_module(module, _original=original_exec, _name=fullname):
            _original(module)
            for callback in _HOOKS.pop(_name, []):
                callback(module)

        spec.loader.exec_module = exec_module
        return spec


_FINDER = _AfterImportFinder()


def after_import(module_name: str, callback: Callable) -> None:
    """Call ``callback(module)`` when ``module_name`` is imported (now, if it already is)."""
    module = sys.modules.get(module_name)
    if module is not None and getattr(module, "__spec__", None) is not None and module_name not in _HOOKS:
        callback(module)
        return
    _HOOKS.setdefault(module_name, []).append(callback)
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)


def _register_advantage_estimators(_core_algos) -> None:
    import uec_recipe.algo.estimators  # noqa: F401  (decorators register on import)


def _register_agent_loop(agent_loop_module) -> None:
    # The registry stores a hydra target, so registering needs no import of our agent loop here.
    agent_loop_module._agent_loop_registry["uec_agent"] = {"_target_": "uec_recipe.rollout.agent_loop.UECAgentLoop"}


def _register_trainer(_trainer_base) -> None:
    import uec_recipe.trainer  # noqa: F401  (@register_trainer("uec") on import)


def _register_cpu_rollout_adapter(rollout_base) -> None:
    rollout_base._ROLLOUT_REGISTRY[("hf", "async")] = "uec_recipe.cpu.hf_rollout.HFServerAdapter"


def _register_cpu_rollout_replica(replica_module) -> None:
    def load_hf_replica():
        from uec_recipe.cpu.hf_rollout import HFReplica

        return HFReplica

    replica_module.RolloutReplicaRegistry.register("hf", load_hf_replica)


def cpu_backend_requested() -> bool:
    return os.environ.get("VERL_PLATFORM", "").strip().lower() == "cpu"


def register() -> None:
    after_import("verl.trainer.ppo.core_algos", _register_advantage_estimators)
    after_import("verl.experimental.agent_loop.agent_loop", _register_agent_loop)
    after_import("verl.trainer.ppo.v1.trainer_base", _register_trainer)
    # The "hf" rollout is registered in every process that asks for the CPU backend. Its code needs
    # transformers' generate only, so it is also usable (slowly) on a GPU box for debugging.
    if cpu_backend_requested():
        from uec_recipe.cpu import platform as cpu_platform  # registers platform "cpu"

        cpu_platform.patch_pin_memory()
        after_import("verl.utils.distributed", cpu_platform.patch_process_group_backend)
        # verl registers its FSDP engine for device "cuda"/"npu" only; the engine code itself is device-agnostic
        # once the platform answers "cpu", so let the engine lookup use the "cuda" entry.
        os.environ.setdefault("VERL_ENGINE_DEVICE", "cuda")
    after_import("verl.workers.rollout.base", _register_cpu_rollout_adapter)
    after_import("verl.workers.rollout.replica", _register_cpu_rollout_replica)


register()
