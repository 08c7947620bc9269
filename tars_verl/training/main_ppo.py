"""``python -m tars_verl.training.main_ppo``: verl's ``main_ppo`` that also hands scorer settings and secrets to
every node.

Exactly ``python -m verl.trainer.main_ppo`` (same Hydra config and overrides, verl's own ``main``),
except that the Ray job verl starts gets the environment variables the ``reward.tars`` scorers read
(``api_key_env`` names such as ``OPENAI_API_KEY``, and ``oc.env`` settings such as ``TARS_GUARD_URL``)
in its runtime env, so reward workers on other nodes see the head's values. Only the names are
printed. Every process of the job scrubs secrets from its output (``TARS_SCRUB_OUTPUT``, read by
:mod:`tars_verl.verl_plugin`; :mod:`tars_verl.redaction`). See :mod:`tars_verl.training.multinode`; how
the env reaches ``ray.init`` is the workaround ``ray_init_env_forwarding`` in :mod:`tars_verl.verl_workarounds`.
The launch scripts use this entry point, as they start the driver on the head directly; a run submitted with
``ray job submit`` needs no wrapper: the job's runtime env carries the values (``python -m tars_verl.overrides
--runtime-env``; docs/multinode.md says why, and what Ray itself logs of a runtime env).

    python -m tars_verl.training.main_ppo --config-path=pkg://tars_verl.config --config-name=tars_grpo_recipe ...
"""

from __future__ import annotations

import hydra

from tars_verl.redaction import install, register_env_secret, register_url
from tars_verl.training.multinode import forwarded_env, scorer_env_names, scorer_urls
from tars_verl.verl_workarounds import run_verl_main_ppo


def scrubbing_env(config) -> dict[str, str]:
    """What every process of the job needs to keep the scorers' secrets out of its output: the flag that makes
    ``tars_verl.verl_plugin`` install :mod:`tars_verl.redaction` there (verl prints the resolved config from its
    TaskRunner, scorer URLs included), and the names of the variables holding the API keys."""
    secrets, _ = scorer_env_names(config)
    for name in secrets:
        register_env_secret(name)
    for _, url in scorer_urls(config):
        register_url(url)
    return {"TARS_SCRUB_OUTPUT": "1", "TARS_SECRET_ENV": ",".join(secrets)}


@hydra.main(config_path="pkg://tars_verl.config", config_name="tars_grpo", version_base=None)
def main(config) -> None:
    install()
    env = {**forwarded_env(config), **scrubbing_env(config)}
    run_verl_main_ppo(config, env)  # workaround ray_init_env_forwarding


if __name__ == "__main__":
    main()
