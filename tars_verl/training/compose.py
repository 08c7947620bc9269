"""Compose verl's trainer config with the TARS defaults (``tars_verl/config/tars_grpo.yaml``).

>>> cfg = compose_tars_config(["tars@reward.tars=tiny_cpu", "actor_rollout_ref.model.path=/tmp/tars_tiny/policy"])
>>> cfg.reward.reward_manager.name
'tars'
"""

from __future__ import annotations

from omegaconf import DictConfig


def compose_tars_config(overrides: list[str] | None = None, config_name: str = "tars_grpo") -> DictConfig:
    """What ``python -m verl.trainer.main_ppo --config-path=pkg://tars_verl.config --config-name=tars_grpo`` sees."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    with initialize_config_module(config_module="tars_verl.config", version_base=None):
        return compose(config_name=config_name, overrides=list(overrides or []))
