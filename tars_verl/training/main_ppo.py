"""``python -m tars_verl.training.main_ppo``: verl's ``main_ppo`` that also hands scorer settings and secrets to
every node.

Exactly ``python -m verl.trainer.main_ppo`` (same Hydra config and overrides, verl's own ``main``),
except that the Ray job verl starts gets the environment variables the ``reward.tars`` scorers read
(``api_key_env`` names such as ``OPENAI_API_KEY``, and ``oc.env`` settings such as ``TARS_GUARD_URL``)
in its runtime env, so reward workers on other nodes see the head's values. Only the names are
printed. See :mod:`tars_verl.training.multinode`. The launch scripts use this entry point.

    python -m tars_verl.training.main_ppo --config-path=pkg://tars_verl.config --config-name=tars_grpo ...
"""

from __future__ import annotations

import hydra

from tars_verl.training.multinode import forwarded_env, ray_init_with_env


@hydra.main(config_path="pkg://tars_verl.config", config_name="tars_grpo", version_base=None)
def main(config) -> None:
    from verl.trainer import main_ppo

    with ray_init_with_env(forwarded_env(config)):
        main_ppo.main.__wrapped__(config)


if __name__ == "__main__":
    main()
