"""Ray worker start-up hook for verl on the ``cpu`` platform (TESTING only).

Kept apart from ``cpu_platform``: Ray imports the hook before anything else in a worker, and this
module must not import verl (``import verl`` loads the plug-ins, which need the platform registered).
"""

from __future__ import annotations

import os


def init_worker_process_group() -> None:
    """Ray ``worker_process_setup_hook``: start torch.distributed in verl's worker-group actors, on gloo.

    verl's workers call ``initialize_global_process_group_ray()``, whose backend string is
    ``cpu:gloo,{device}:{backend}``; on a CPU platform that is ``cpu:gloo,cpu:gloo``, which torch
    rejects ("Duplicate device type cpu"). verl skips its own call when a process group exists, so this
    hook starts one first, with the same rank, world size and rendezvous verl would use. Set it with
    ``+ray_kwargs.ray_init.runtime_env.worker_process_setup_hook=tars_verl.testing.ray_worker_setup.init_worker_process_group``.
    Other Ray processes (task runner, reward and agent-loop workers) have no ``WG_BACKEND`` and are left alone.
    """
    env = os.environ
    if env.get("WG_BACKEND") != "ray" or env.get("VERL_PLATFORM") != "cpu" or "MASTER_PORT" not in env:
        return
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(
            backend="gloo",
            rank=int(env["RANK"]),
            world_size=int(env["WORLD_SIZE"]),
            init_method=env.get("DIST_INIT_METHOD"),
        )
