"""A ``cpu`` platform for verl, so that its SFT trainer runs on a machine without a GPU (TESTING only).

Loaded in every verl process with ``VERL_USE_EXTERNAL_MODULES=tars_verl.testing.cpu_platform`` and
selected with ``VERL_PLATFORM=cpu`` (verl's own plug-in points; nothing in verl or torch is patched).
``cpu_env()`` returns the environment for such a run:

    env = {**os.environ, **cpu_env()}
    subprocess.run(["torchrun", "--nproc_per_node=1", "-m", "tars_verl.training.sft", ...], env=env)

verl's device helpers call ``torch.<device>.memory_reserved()``, ``get_device_name()`` and friends, which
``torch.cpu`` lacks; the platform therefore hands verl a small device module that has them.
"""

from __future__ import annotations

import contextlib
import os
import types
from typing import Any, Optional

import torch
from verl.plugin.platform.platform_base import PlatformBase
from verl.plugin.platform.platform_manager import PlatformRegistry


def _cpu_device_module() -> types.ModuleType:
    mod = types.ModuleType("tars_cpu_device")
    for name in dir(torch.cpu):  # is_available, synchronize, current_device, device_count, Stream, ...
        if not name.startswith("_"):
            setattr(mod, name, getattr(torch.cpu, name))
    zero = lambda *a, **k: 0  # noqa: E731 - no device memory to report
    for name in ("memory_allocated", "memory_reserved", "max_memory_allocated", "max_memory_reserved"):
        setattr(mod, name, zero)
    mod.reset_peak_memory_stats = lambda *a, **k: None
    mod.empty_cache = lambda: None
    mod.set_device = lambda *a, **k: None
    mod.manual_seed = torch.manual_seed
    # verl's checkpoint loader restores rng_state["cpu"] through the device module when the device is "cpu".
    mod.get_rng_state = torch.get_rng_state
    mod.set_rng_state = torch.set_rng_state
    mod.manual_seed_all = torch.manual_seed
    mod.get_device_name = lambda *a, **k: "cpu"
    mod.get_device_capability = lambda *a, **k: (None, None)
    mod.memory_stats = lambda *a, **k: {}

    def mem_get_info(*a, **k):
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        free = os.sysconf("SC_AVPHYS_PAGES") * page_size
        return free, pages * page_size

    mod.mem_get_info = mem_get_info
    return mod


CPU_DEVICE = _cpu_device_module()


@PlatformRegistry.register("cpu")
class PlatformCPU(PlatformBase):
    @property
    def device_name(self) -> str:
        return "cpu"

    @property
    def vendor_name(self) -> str:
        return "cpu"

    @property
    def device_module(self) -> types.ModuleType:
        return CPU_DEVICE

    def is_available(self) -> bool:
        return True

    def is_platform_available(self, use_smi_check=False) -> bool:
        # Never auto-detected: only an explicit VERL_PLATFORM=cpu selects it.
        return False

    def current_device(self) -> str:  # type: ignore[override]
        # verl passes this to .to(device=...); an int would mean "accelerator 0".
        return "cpu"

    def device_count(self) -> int:
        return 1

    def set_device(self, device_index: int) -> None:
        pass

    def synchronize(self, device_index: Optional[int] = None) -> None:
        pass

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    def manual_seed_all(self, seed: int) -> None:
        torch.manual_seed(seed)

    def set_allocator_settings(self, settings: str) -> None:
        pass

    def empty_cache(self) -> None:
        pass

    def get_device_capability(self, device_index: int = 0) -> tuple[Optional[int], Optional[int]]:
        return None, None

    def communication_backend_name(self) -> str:
        return "gloo"

    def visible_devices_envvar(self) -> str:
        return "TARS_CPU_VISIBLE_DEVICES"

    @contextlib.contextmanager
    def nvtx_range(self, msg: str):
        yield

    def profiler_start(self) -> None:
        pass

    def profiler_stop(self) -> None:
        pass

    def ray_resource_name(self) -> str:
        # verl places one worker per accelerator slot and counts only GPU/NPU slots
        # (ResourcePoolManager._check_resource_available); a CPU run declares its slots with
        # ``+ray_kwargs.ray_init.num_gpus=N`` (CUDA_VISIBLE_DEVICES unset). No CUDA is used.
        return "GPU"

    def ray_noset_envvars(self) -> list[str]:
        return []

    def is_ipc_supported(self) -> bool:
        return False

    def cudart(self) -> Any:
        return None  # no CUDA runtime on CPU


def cpu_env() -> dict[str, Any]:
    """Environment variables that make verl use this platform (and its FSDP engine) in every process.

    Also loads the testing rollout ``tars_hf`` (``tars_verl.testing.hf_rollout``) for GRPO on CPU.
    ``CUDA_VISIBLE_DEVICES`` must not be set to an empty string for GRPO: Ray then refuses the
    accelerator slots that ``grpo_cpu_overrides`` declares.
    """
    return {
        "VERL_USE_EXTERNAL_MODULES": "tars_verl.testing.cpu_platform,tars_verl.testing.hf_rollout",
        "VERL_PLATFORM": "cpu",
        # verl registers its FSDP engine for cuda/npu devices only; the engine code itself runs on CPU.
        "VERL_ENGINE_DEVICE": "cuda",
        "TOKENIZERS_PARALLELISM": "false",
        # Ray's own "single machine" switch: every Ray address (and verl's reward-model router, which binds
        # ray.util.get_node_ip_address()) is 127.0.0.1, not the machine's network address.
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    }


def sft_cpu_overrides() -> list[str]:
    """Hydra overrides for verl's SFT trainer on this platform (``examples/run_sft_warmstart_*.sh``)."""
    return [
        "+model.override_config.attn_implementation=sdpa",  # no flash-attn on CPU
        "engine.strategy=fsdp2",  # FSDP1 moves modules to a GPU for sync_module_states
        "trainer.device=cpu",
        "data.num_workers=0",
        "data.use_dynamic_bsz=False",
        "trainer.resume_mode=disable",
    ]


def grpo_cpu_overrides(n_slots: int = 1) -> list[str]:
    """Hydra overrides for ``verl.trainer.main_ppo`` (``examples/run_tars_*.sh``) on this platform.

    With ``ROLLOUT_NAME=tars_hf`` and ``GPUS_PER_NODE=n_slots`` in the environment. The reference
    model is switched off (``use_kl_loss=False``): verl's FSDP engine builds a forward-only model with
    ``CPUOffloadPolicy(pin_memory=True)`` (FSDP2) or ``sync_module_states=True`` (FSDP1), and both
    need an accelerator.
    """
    return [
        "+actor_rollout_ref.model.override_config.attn_implementation=sdpa",
        "actor_rollout_ref.model.use_remove_padding=False",  # needs flash-attn's varlen kernels
        "actor_rollout_ref.actor.strategy=fsdp2",
        "actor_rollout_ref.actor.use_kl_loss=False",  # no reference model on CPU (see above)
        "trainer.device=cpu",
        # Ray: verl counts accelerator slots; TransferQueue's default 8 storage actors hang on few CPUs.
        "+ray_kwargs.ray_init.num_cpus=32",
        f"+ray_kwargs.ray_init.num_gpus={n_slots}",
        "+ray_kwargs.ray_init.runtime_env.worker_process_setup_hook="
        "tars_verl.testing.ray_worker_setup.init_worker_process_group",
        "transfer_queue.backend.SimpleStorage.num_data_storage_units=1",
        "reward.num_workers=1",
        "actor_rollout_ref.rollout.agent.num_workers=1",
        "data.dataloader_num_workers=0",
        # verl's own switch: requests are named by their index in the batch, and the tars_hf rollout samples each
        # from a seed of its own, so a run does not depend on the order in which requests reach the server.
        "actor_rollout_ref.rollout.full_determinism=True",
    ]
