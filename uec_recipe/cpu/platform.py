"""A CPU platform for verl 0.9.1's platform registry, so the real trainer runs on a machine without a GPU.

verl 0.9.1 ships CUDA, NPU and ROCm platforms only; on a CPU-only host it falls back to "nvidia" and nccl
(see docs/design.md, "CPU backend"). This module registers platform ``cpu``; it is activated by
``VERL_PLATFORM=cpu`` and is imported by the plugin only then. Ray still needs a "GPU" resource to place
verl's workers, so the platform reports the Ray resource name "GPU" and the launcher starts Ray with logical
GPUs (``+ray_kwargs.ray_init.num_gpus=1``): the GPUs are bookkeeping only, every tensor stays on CPU.
"""

from __future__ import annotations

import contextlib
import types
from typing import Any, Optional

import torch
from verl.plugin.platform import PlatformBase, PlatformRegistry


def _noop(*_args, **_kwargs):
    return None


def _zero(*_args, **_kwargs):
    return 0


class _CPUDeviceModule(types.ModuleType):
    """``torch.cpu`` plus the accelerator calls verl makes through ``get_torch_device()``.

    Memory statistics report 0 and cache management is a no-op: CPU memory is managed by the allocator of the
    process, not by a device cache. RNG state is the global CPU generator, which is what seeding on CPU means.
    """

    def __init__(self):
        super().__init__("uec_recipe.cpu.device")
        self.is_available = lambda: True
        self.device_count = lambda: 1
        self.current_device = lambda: "cpu"
        self.set_device = _noop
        self.synchronize = _noop
        self.empty_cache = _noop
        self.ipc_collect = _noop
        self.set_per_process_memory_fraction = _noop
        self.memory_allocated = _zero
        self.memory_reserved = _zero
        self.max_memory_allocated = _zero
        self.max_memory_reserved = _zero
        self.reset_peak_memory_stats = _noop
        self.get_device_name = lambda *_a, **_k: "cpu"
        self.get_rng_state = lambda *_a, **_k: torch.get_rng_state()
        self.set_rng_state = lambda state, *_a, **_k: torch.set_rng_state(state)
        self.manual_seed = torch.manual_seed
        self.manual_seed_all = torch.manual_seed
        self.Stream = torch.cpu.Stream
        self.stream = torch.cpu.stream
        self.current_stream = torch.cpu.current_stream
        self.Event = torch.cpu.Event if hasattr(torch.cpu, "Event") else _noop

    def mem_get_info(self, *_args, **_kwargs):
        # (free, total) in bytes; used by verl only to log and to size KV caches of GPU engines.
        import psutil

        vm = psutil.virtual_memory()
        return vm.available, vm.total


CPU_DEVICE_MODULE = _CPUDeviceModule()


@PlatformRegistry.register(platform="cpu")
class PlatformCPU(PlatformBase):
    @property
    def device_name(self) -> str:
        return "cpu"

    @property
    def vendor_name(self) -> str:
        return "cpu"

    @property
    def device_module(self) -> types.ModuleType:
        return CPU_DEVICE_MODULE

    def is_available(self) -> bool:
        return True

    def is_platform_available(self, use_smi_check=False) -> bool:
        # Never auto-detected: the CPU backend is chosen explicitly with VERL_PLATFORM=cpu.
        return False

    def current_device(self):
        # verl moves modules with `.to(get_device_id())`; "cpu" keeps them where they are.
        return "cpu"

    def device_count(self) -> int:
        return 1

    def set_device(self, device_index: int) -> None:
        return None

    def synchronize(self, device_index: Optional[int] = None) -> None:
        return None

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    def manual_seed_all(self, seed: int) -> None:
        torch.manual_seed(seed)

    def set_allocator_settings(self, settings: str) -> None:
        return None

    def empty_cache(self) -> None:
        return None

    def get_device_capability(self, device_index: int = 0):
        return None, None

    def communication_backend_name(self) -> str:
        return "gloo"

    def visible_devices_envvar(self) -> str:
        # Ray sets this for actors holding logical GPUs; nothing reads it on CPU.
        return "CUDA_VISIBLE_DEVICES"

    @contextlib.contextmanager
    def nvtx_range(self, msg: str):
        yield

    def profiler_start(self) -> None:
        return None

    def profiler_stop(self) -> None:
        return None

    def ray_resource_name(self) -> str:
        return "GPU"

    def ray_resource_options(self, num_gpus: float) -> dict[str, Any]:
        return {"num_gpus": num_gpus}

    def ray_noset_envvars(self) -> list[str]:
        return []

    def is_ipc_supported(self) -> bool:
        return False

    def cudart(self):
        return None


def patch_process_group_backend(distributed) -> None:
    """Default verl's process group to plain gloo.

    ``initialize_global_process_group_ray`` builds ``"cpu:gloo,<device>:<backend>"``, which on CPU becomes
    ``"cpu:gloo,cpu:gloo"`` and torch rejects it ("Duplicate device type cpu in backend string").
    """
    original = distributed.initialize_global_process_group_ray
    if getattr(original, "_uec_cpu_patched", False):
        return

    def initialize_global_process_group_ray(timeout_second=None, backend=None):
        return original(timeout_second=timeout_second, backend=backend or "gloo")

    initialize_global_process_group_ray._uec_cpu_patched = True
    distributed.initialize_global_process_group_ray = initialize_global_process_group_ray
    # The patch runs right after verl.utils.distributed is imported (see plugin.py), before any module can
    # bind the original with `from verl.utils.distributed import initialize_global_process_group_ray`.


def patch_pin_memory() -> None:
    """Make ``Tensor.pin_memory`` a no-op on a CPU-only torch.

    verl's reference-policy engine uses ``CPUOffloadPolicy(pin_memory=True)``; pinning needs an accelerator and
    raises "Cannot access accelerator device" on a CPU build. Pinned memory only speeds up host-to-device copies,
    so skipping it changes nothing on CPU.
    """
    if torch.cuda.is_available() or getattr(torch.Tensor.pin_memory, "_uec_cpu_patched", False):
        return

    def pin_memory(self, *args, **kwargs):
        return self

    pin_memory._uec_cpu_patched = True
    torch.Tensor.pin_memory = pin_memory
