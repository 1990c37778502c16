"""The one module verl imports (entry point group ``verl.plugins``): registrations only.

verl imports every ``verl.plugins`` entry point inside ``import verl``, in every process (driver, TaskRunner,
workers, agent-loop workers, rollout servers). Importing our trainer or verl's agent loop here would make each
of those processes pay for modules it never uses, so nothing heavy is imported now. Instead each registration
is attached to the verl module that owns the registry and runs right after that module is first imported
(or immediately, if it already was):

* ``verl.trainer.ppo.core_algos``            → advantage estimator ``uec``
* ``verl.experimental.agent_loop.agent_loop`` → agent loop ``uec_agent`` (per-row temperature)
* ``verl.trainer.ppo.v1.trainer_base``        → V1 trainer mode ``uec``
* ``verl.workers.rollout.base`` / ``.replica`` → CPU rollout ``hf``
* ``verl.workers.rollout.vllm_rollout.vllm_async_server`` → the vLLM server's log (only with ``UEC_SERVER_LOG``)

With ``VERL_PLATFORM=cpu`` the CPU platform itself is registered eagerly: verl resolves its platform on first
use, which can come before any of the modules above.

Isolation: a registration runs inside verl's own ``import``, so an error in it (a missing optional dependency, a
version skew) would otherwise fail that import and with it every verl run in the environment, GRPO included.
verl's own plugin loader swallows plugin errors for the same reason. Each registration is therefore guarded: a
failure logs one warning naming uec-rl, the module and the error, and leaves a placeholder under the UEC-RL name
that raises an error carrying the original cause when it is used (``trainer.v1.trainer_mode=uec``,
``algorithm.adv_estimator=uec``, ``default_agent_loop=uec_agent``), so a run that asks for UEC-RL still fails
with the real reason instead of "unknown trainer". The import hook leaves ``sys.meta_path`` once its last
registration has run.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import logging
import os
import sys
from typing import Callable

logger = logging.getLogger(__name__)

_HOOKS: dict[str, list[Callable]] = {}
# What failed in this process: registration name -> the error. Read by the placeholders and the tests.
FAILURES: dict[str, BaseException] = {}

SERVER_LOG_ENV = "UEC_SERVER_LOG"


class UECUnavailableError(RuntimeError):
    """UEC-RL was asked for, but its registration failed when verl imported the module that owns the registry."""


def unavailable(name: str, what: str) -> UECUnavailableError:
    """The error a placeholder raises: what was asked for and the recorded cause (also chained as __cause__)."""
    cause = FAILURES.get(name)
    error = UECUnavailableError(
        f"uec-rl: {what} is not available in this process: registering it failed with "
        f"{type(cause).__name__}: {cause}. Fix that error (see the 'uec-rl:' warning logged when verl imported the "
        "module; typically a missing or mismatched dependency) and rerun; plain verl runs are unaffected."
    )
    error.__cause__ = cause
    return error


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
            callbacks = _HOOKS.pop(_name, [])
            _leave_meta_path_if_done()
            for callback in callbacks:
                callback(module)

        spec.loader.exec_module = exec_module
        return spec


_FINDER = _AfterImportFinder()


def _leave_meta_path_if_done() -> None:
    # Once nothing is watched, the finder would only add a dictionary lookup to every import of the process.
    if not _HOOKS and _FINDER in sys.meta_path:
        sys.meta_path.remove(_FINDER)


def after_import(module_name: str, callback: Callable) -> None:
    """Call ``callback(module)`` when ``module_name`` is imported (now, if it already is)."""
    module = sys.modules.get(module_name)
    if module is not None and getattr(module, "__spec__", None) is not None and module_name not in _HOOKS:
        callback(module)
        return
    _HOOKS.setdefault(module_name, []).append(callback)
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)


def guarded(name: str, module_name: str, register: Callable, placeholder: Callable | None = None) -> Callable:
    """``register(module)``, with any error turned into ``placeholder(module)`` plus one warning.

    ``name`` identifies the registration in ``FAILURES`` and the placeholder's error; the placeholder puts something
    under the UEC-RL name that raises that error when used.
    """

    def run(module) -> None:
        try:
            register(module)
        except Exception as error:
            FAILURES[name] = error
            outcome = "a run that asks for it will fail with this error"
            if placeholder is not None:
                try:
                    placeholder(module)
                except Exception as placeholder_error:  # a verl without the registry we expected
                    outcome = f"no placeholder either ({type(placeholder_error).__name__}: {placeholder_error})"
            logger.warning(
                "uec-rl: registering %s after verl imported %s failed (%s: %s); verl continues without it, %s",
                name,
                module_name,
                type(error).__name__,
                error,
                outcome,
            )

    return run


def register_after(name: str, module_name: str, register: Callable, placeholder: Callable | None = None) -> None:
    after_import(module_name, guarded(name, module_name, register, placeholder))


# ---- the registrations ------------------------------------------------------------------------------------------


def _register_advantage_estimators(_core_algos) -> None:
    import uec_recipe.algo.estimators  # noqa: F401  (decorators register on import)


def _estimator_placeholder(core_algos) -> None:
    def uec_estimator_unavailable(*args, **kwargs):
        raise unavailable("advantage estimator uec", "algorithm.adv_estimator=uec")

    core_algos.ADV_ESTIMATOR_REGISTRY.setdefault("uec", uec_estimator_unavailable)


AGENT_LOOP_TARGET = "uec_recipe.rollout.agent_loop.UECAgentLoop"


def _register_agent_loop(agent_loop_module) -> None:
    # The registry stores a hydra target; importing it now (this process has just imported verl's agent loop, on
    # which ours builds) turns a broken module into the guarded warning here rather than a failure of every
    # sample inside the agent-loop workers.
    module_name, _, _ = AGENT_LOOP_TARGET.rpartition(".")
    importlib.import_module(module_name)
    agent_loop_module._agent_loop_registry["uec_agent"] = {"_target_": AGENT_LOOP_TARGET}


class UnavailableAgentLoop:
    """Registered as ``uec_agent`` when the real agent loop cannot be imported: instantiating it raises the cause."""

    def __init__(self, *args, **kwargs):
        raise unavailable("agent loop uec_agent", "actor_rollout_ref.rollout.agent.default_agent_loop=uec_agent")


def _agent_loop_placeholder(agent_loop_module) -> None:
    agent_loop_module._agent_loop_registry["uec_agent"] = {"_target_": f"{__name__}.UnavailableAgentLoop"}


def _register_trainer(_trainer_base) -> None:
    import uec_recipe.trainer  # noqa: F401  (@register_trainer("uec") on import)


class UnavailableTrainer:
    """``TRAINER_REGISTRY["uec"]`` when uec_recipe.trainer cannot be imported: verl's task runner instantiates the
    class it looks up, and this one raises the cause then (before any worker starts)."""

    def __init__(self, *args, **kwargs):
        raise unavailable("trainer mode uec", "trainer.v1.trainer_mode=uec")


def _trainer_placeholder(trainer_base) -> None:
    # Set directly: register_trainer accepts PPOTrainer subclasses only, and this must not fail.
    trainer_base.TRAINER_REGISTRY.setdefault("uec", UnavailableTrainer)


def _register_cpu_rollout_adapter(rollout_base) -> None:
    rollout_base._ROLLOUT_REGISTRY[("hf", "async")] = "uec_recipe.cpu.hf_rollout.HFServerAdapter"


def _register_cpu_rollout_replica(replica_module) -> None:
    def load_hf_replica():
        from uec_recipe.cpu.hf_rollout import HFReplica

        return HFReplica

    replica_module.RolloutReplicaRegistry.register("hf", load_hf_replica)


def _install_server_log(server_module) -> None:
    from uec_recipe.rollout import server_log

    server_log.install(server_module)


def cpu_backend_requested() -> bool:
    return os.environ.get("VERL_PLATFORM", "").strip().lower() == "cpu"


def _register_cpu_platform() -> None:
    from uec_recipe.cpu import platform as cpu_platform  # registers platform "cpu"

    cpu_platform.patch_pin_memory()
    register_after("CPU process-group backend", "verl.utils.distributed", cpu_platform.patch_process_group_backend)
    # verl registers its FSDP engine for device "cuda"/"npu" only; the engine code itself is device-agnostic
    # once the platform answers "cpu", so let the engine lookup use the "cuda" entry.
    os.environ.setdefault("VERL_ENGINE_DEVICE", "cuda")


def register() -> None:
    register_after(
        "advantage estimator uec",
        "verl.trainer.ppo.core_algos",
        _register_advantage_estimators,
        _estimator_placeholder,
    )
    register_after(
        "agent loop uec_agent",
        "verl.experimental.agent_loop.agent_loop",
        _register_agent_loop,
        _agent_loop_placeholder,
    )
    register_after("trainer mode uec", "verl.trainer.ppo.v1.trainer_base", _register_trainer, _trainer_placeholder)
    # The "hf" rollout is registered in every process (only its class path: nothing loads until a config names
    # it). Its code needs transformers' generate only, so it is also usable (slowly) on a GPU box for debugging.
    if cpu_backend_requested():
        guarded("CPU platform", "uec_recipe.cpu.platform", lambda _module: _register_cpu_platform())(None)
    register_after("CPU rollout adapter hf", "verl.workers.rollout.base", _register_cpu_rollout_adapter)
    register_after("CPU rollout replica hf", "verl.workers.rollout.replica", _register_cpu_rollout_replica)
    if os.environ.get(SERVER_LOG_ENV):
        register_after("vLLM server log", "verl.workers.rollout.vllm_rollout.vllm_async_server", _install_server_log)


register()
