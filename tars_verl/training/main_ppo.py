"""``python -m tars_verl.training.main_ppo``: verl's ``main_ppo`` that also hands scorer settings and secrets to
every node.

Exactly ``python -m verl.trainer.main_ppo`` (same Hydra config and overrides, verl's own ``main``),
except that the Ray job verl starts gets the environment variables the ``reward.tars`` scorers read
(``api_key_env`` names such as ``OPENAI_API_KEY``, and ``oc.env`` settings such as ``TARS_GUARD_URL``)
in its runtime env, so reward workers on other nodes see the head's values. Only the names are
printed. See :mod:`tars_verl.training.multinode`; how the env reaches ``ray.init`` is the workaround
``ray_init_env_forwarding`` in :mod:`tars_verl.verl_workarounds`. The launch scripts use this entry point, as they
start the driver on the head directly; a run submitted with ``ray job submit`` needs no wrapper: the job's runtime
env carries the values (``python -m tars_verl.overrides --runtime-env``; docs/multinode.md says why, and what Ray
itself logs of a runtime env).

    python -m tars_verl.training.main_ppo --config-path=pkg://tars_verl.config --config-name=tars_grpo_recipe ...
"""

from __future__ import annotations

import hydra

from tars_verl.training.multinode import forwarded_env
from tars_verl.verl_workarounds import run_verl_main_ppo


@hydra.main(config_path="pkg://tars_verl.config", config_name="tars_grpo", version_base=None)
def main(config) -> None:
    run_verl_main_ppo(config, forwarded_env(config))  # workaround ray_init_env_forwarding


if __name__ == "__main__":
    main()
