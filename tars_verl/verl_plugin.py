"""verl plug-in entry point (``[project.entry-points."verl.plugins"]``), imported by ``import verl``.

verl imports this module in EVERY process that imports verl (driver, Ray workers, vLLM workers), so it
must stay light: it imports nothing heavy itself. It registers two names lazily, at the moment verl
itself imports the registry they belong to:

- ``tars_verl.reward.manager`` (the ``tars`` reward manager) right after verl has imported its
  reward-loop registry package ``verl.experimental.reward_loop.reward_manager``;
- ``tars_verl.training.trainer`` (``trainer.v1.trainer_mode=tars``) right after ``verl.trainer.ppo.v1``.

A process that never looks a name up in those registries (a vLLM worker, an actor) never pays for
them; one that does finds ``tars`` registered, exactly as an eager import would have left it
(``get_reward_manager_cls("tars")`` returns the real ``TarsRewardManager``). The hook is the
workaround ``lazy_plugin_registration`` in ``tars_verl/verl_workarounds.py`` (a ``sys.meta_path``
finder). If one of them is already imported when the plug-in loads, it registers at once.

verl swallows errors raised here at DEBUG level, so a failing registration is logged as a warning,
and ``python -c "import tars_verl.reward.manager, tars_verl.training.trainer"`` shows the full error.
"""

from __future__ import annotations

import os

from tars_verl.verl_workarounds import register_when_verl_imports, served_rm_marker_compute_score

# A TARS training job (python -m tars_verl.training.main_ppo sets this in every Ray worker's environment): each of
# its processes scrubs scorer keys and URL passwords from its logs, stdout/stderr and tracebacks; verl's TaskRunner
# prints the resolved config, scorer URLs included. Other verl runs are left alone.
if os.environ.get("TARS_SCRUB_OUTPUT") == "1":
    from tars_verl.redaction import install

    install()

# verl module -> our module whose import registers the ``tars`` name in that module's registry.
LAZY_REGISTRATIONS = {
    "verl.experimental.reward_loop.reward_manager": "tars_verl.reward.manager",
    "verl.trainer.ppo.v1": "tars_verl.training.trainer",
}

register_when_verl_imports(LAZY_REGISTRATIONS)  # workaround lazy_plugin_registration

# Set as ``reward.custom_reward_function`` when verl also serves a reward model (workaround served_rm_routing):
# verl skips reward managers whenever ``reward.reward_model.enable=True`` and no custom reward function is
# configured; naming this one keeps the ``tars`` manager in charge. Calling it raises.
compute_score = served_rm_marker_compute_score
