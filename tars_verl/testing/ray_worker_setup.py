"""Ray worker start-up hook for verl on the ``cpu`` platform (TESTING only).

Kept apart from ``cpu_platform``: Ray imports the hook before anything else in a worker, and this
module must not import verl (``import verl`` loads the plug-ins, which need the platform registered).
"""

from __future__ import annotations


def init_worker_process_group() -> None:
    """Ray ``worker_process_setup_hook``: start torch.distributed on gloo in verl's worker-group actors.

    verl's backend string on a CPU platform is ``cpu:gloo,cpu:gloo``, which torch rejects; see the workaround
    ``process_group_on_cpu`` in ``tars_verl/verl_workarounds.py`` (it imports no verl either). Set it with
    ``+ray_kwargs.ray_init.runtime_env.worker_process_setup_hook=tars_verl.testing.ray_worker_setup.init_worker_process_group``.
    """
    from tars_verl.verl_workarounds import init_ray_worker_process_group_on_cpu

    init_ray_worker_process_group_on_cpu()
