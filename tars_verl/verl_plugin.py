"""verl plug-in entry point (``[project.entry-points."verl.plugins"]``), imported by ``import verl``.

Importing ``tars_verl.reward_manager`` registers the ``tars`` reward manager in verl's reward-loop
registry, and ``tars_verl.trainer`` the ``tars`` trainer mode (per-prompt-type training metrics),
so ``reward.reward_manager.name=tars`` works in every process verl starts (driver and Ray workers).
verl swallows errors here at DEBUG level: a trainer import failure is logged as a warning below, and
``python -c "import tars_verl.verl_plugin"`` shows any other.
"""

from __future__ import annotations

import logging

import tars_verl.reward_manager  # noqa: F401  (registers the "tars" reward manager)

try:  # registers trainer_mode "tars"; kept apart so a trainer import problem never hides the manager
    import tars_verl.trainer  # noqa: F401
except Exception as exc:  # noqa: BLE001 - verl would swallow it at DEBUG level; say it loudly
    logging.getLogger(__name__).warning("tars trainer (trainer.v1.trainer_mode=tars) unavailable: %s", exc)


def compute_score(*args, **kwargs):
    """Set as ``reward.custom_reward_function`` when verl also serves a reward model.

    verl skips reward managers whenever ``reward.reward_model.enable=True`` and no custom reward
    function is configured; naming this one keeps the ``tars`` manager in charge. The TARS manager
    never calls it; any other manager that does gets a clear error instead of a made-up score.
    """
    raise RuntimeError(
        "tars_verl.verl_plugin.compute_score only marks a TARS run; use it with reward.reward_manager.name=tars"
    )
