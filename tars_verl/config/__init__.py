"""The Hydra configs of a TARS run, and :func:`compose`, the one place Python composes them.

``tars_grpo.yaml`` (verl's PPO trainer config plus ``tars_additions.yaml``, what TARS adds to any verl config),
``tars_grpo_recipe.yaml`` (that plus the paper's GRPO settings: the launch scripts' config), ``tars_sft.yaml`` (verl's
SFT trainer config plus ``tars_sft``), the presets in ``tars/`` and one file per scorer back end in ``tars_scorer/``;
every option is in
this folder's ``README.md``. The launch scripts hand the folder to verl (``--config-path=pkg://tars_verl.config``);
in Python, the dry run, the demo, the tests and
:func:`tars_verl.reward.config.load_preset` all compose through :func:`compose`.

>>> compose("tars/tiny_cpu").tars.mode
'decoupled'
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from omegaconf import DictConfig

CONFIG_MODULE = "tars_verl.config"


def compose(config_name: str, overrides: Iterable[str] = ()) -> DictConfig:
    """``config_name`` (``tars_grpo``, ``tars_sft``, ``tars/paper``, ...) with Hydra ``overrides``, as verl's entry
    points compose it from ``--config-path=pkg://tars_verl.config``.

    Hydra keeps one global search path per process; it is reset first, so that whatever set it up before (another
    composition, a ``hydra.main`` entry point, a test) never changes what this one finds.
    """
    # Imported here: reward workers import this package (load_preset) without composing anything.
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    with initialize_config_module(config_module=CONFIG_MODULE, version_base=None):
        return hydra_compose(config_name=config_name, overrides=list(overrides))
