"""Compose verl's trainer config with the TARS defaults (``tars_verl/config/tars_grpo.yaml``).

>>> cfg = compose_tars_config(["tars@reward.tars=tiny_cpu", "actor_rollout_ref.model.path=/tmp/tars_tiny/policy"])
>>> cfg.reward.reward_manager.name
'tars'
"""

from __future__ import annotations

from omegaconf import DictConfig

from tars_verl.config import compose


def compose_tars_config(overrides: list[str] | None = None, config_name: str = "tars_grpo") -> DictConfig:
    """What ``python -m verl.trainer.main_ppo --config-path=pkg://tars_verl.config --config-name=tars_grpo`` sees."""
    return compose(config_name, overrides or [])
