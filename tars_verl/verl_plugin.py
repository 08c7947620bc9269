"""verl plug-in entry point (``[project.entry-points."verl.plugins"]``), imported by ``import verl``.

verl imports this module in EVERY process that imports verl (driver, Ray workers, vLLM workers), so it
must stay light: it imports nothing heavy itself. It registers two names lazily, at the moment verl
itself imports the registry they belong to:

- ``tars_verl.reward.manager`` (the ``tars`` reward manager) right after verl has imported its
  reward-loop registry package ``verl.experimental.reward_loop.reward_manager``;
- ``tars_verl.training.trainer`` (``trainer.v1.trainer_mode=tars``) right after ``verl.trainer.ppo.v1``.

A process that never looks a name up in those registries (a vLLM worker, an actor) never pays for
them; one that does finds ``tars`` registered, exactly as an eager import would have left it
(``get_reward_manager_cls("tars")`` returns the real ``TarsRewardManager``). The hook is a
``sys.meta_path`` finder that wraps the loader of just those two modules and removes itself once both
have run. If one of them is already imported when the plug-in loads, it registers at once.

verl swallows errors raised here at DEBUG level, so a failing registration is logged as a warning,
and ``python -c "import tars_verl.reward.manager, tars_verl.training.trainer"`` shows the full error.
"""

from __future__ import annotations

import importlib
import logging
import sys
from importlib.abc import MetaPathFinder

logger = logging.getLogger(__name__)

# verl module -> our module whose import registers the ``tars`` name in that module's registry.
LAZY_REGISTRATIONS = {
    "verl.experimental.reward_loop.reward_manager": "tars_verl.reward.manager",
    "verl.trainer.ppo.v1": "tars_verl.training.trainer",
}


def _register(target: str) -> None:
    """Import the module that registers ``tars`` for ``target``; never let a failure break verl's import."""
    ours = LAZY_REGISTRATIONS[target]
    try:
        importlib.import_module(ours)
    except Exception as exc:  # noqa: BLE001 - verl would swallow it at DEBUG level; say it loudly
        logger.warning("tars: importing %s (registers 'tars' for %s) failed: %s", ours, target, exc)


class _LoaderThenRegister:
    """Wraps a module's loader: run the module as usual, then import the TARS module registering into it."""

    def __init__(self, loader, target: str):
        self._loader = loader
        self._target = target

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        self._loader.exec_module(module)
        _register(self._target)

    def __getattr__(self, name):  # get_filename, get_data, is_package, resource readers...
        return getattr(self._loader, name)


class _AfterImport(MetaPathFinder):
    """Finds nothing itself; for the LAZY_REGISTRATIONS targets, wraps the spec the next finders return."""

    tars_after_import = True  # marker: install once per process, even if this module is loaded twice

    def __init__(self, targets: set[str]):
        self.pending = set(targets)

    def find_spec(self, fullname, path, target=None):
        if fullname not in self.pending:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None  # not found: leave the import machinery's list as it is
        self.pending.discard(fullname)
        if not self.pending and self in sys.meta_path:
            sys.meta_path.remove(self)  # safe: returning a spec ends the machinery's loop over sys.meta_path
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _LoaderThenRegister(spec.loader, fullname)
        return spec


def install() -> None:
    """Register now for targets already imported, and on import for the others (idempotent)."""
    if any(getattr(f, "tars_after_import", False) for f in sys.meta_path):
        return
    later = set()
    for target in LAZY_REGISTRATIONS:
        if target in sys.modules:
            _register(target)
        else:
            later.add(target)
    if later:
        sys.meta_path.insert(0, _AfterImport(later))


install()


def compute_score(*args, **kwargs):
    """Set as ``reward.custom_reward_function`` when verl also serves a reward model.

    verl skips reward managers whenever ``reward.reward_model.enable=True`` and no custom reward
    function is configured; naming this one keeps the ``tars`` manager in charge. The TARS manager
    never calls it; any other manager that does gets a clear error instead of a made-up score.
    """
    raise RuntimeError(
        "tars_verl.verl_plugin.compute_score only marks a TARS run; use it with reward.reward_manager.name=tars"
    )
