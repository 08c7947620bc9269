"""Load a user's object named in a config: ``package.module:name`` or ``path/to/file.py:name``.

The one loader behind ``backend: my_pkg.my_scorers:MyScorer`` (a :class:`~tars_verl.scorers.base.Scorer` subclass)
and ``backend: function`` with ``fn: path/to/rewards.py:my_reward`` (a plain function). It follows the conventions
TRL (``reward_funcs``: a dotted import path) and verl (``custom_reward_function.path``: a file, or
``pkg://package.module``) use:

- ``package.module:name`` (or ``pkg://package.module:name``): ``importlib.import_module``. The module must be
  importable in every process that scores: verl's reward workers are Ray actors that inherit ``PYTHONPATH`` and the
  installed packages, not the driver's ``sys.path`` edits.
- ``path/to/file.py:name`` (or ``file://...``): the file is executed once per process under a stable module name
  (registered in ``sys.modules``, so dataclasses and pickling work in it). A relative path is resolved against the
  working folder of the process that loads it; reward workers on other nodes need the file at the same absolute
  path (a shared file system).

Every failure is a :class:`~tars_verl.errors.ScorerConfigError` that names the config key and says what to do.

    >>> load_object("json:dumps", "reward.tars.safety.fn").__name__
    'dumps'
    >>> load_object("json:dump_s", "reward.tars.safety.fn")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    tars_verl.errors.ScorerConfigError: reward.tars.safety.fn='json:dump_s': module json has no attribute 'dump_s' ...
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from typing import Any

from tars_verl.errors import ScorerConfigError

SPEC_FORMS = "'package.module:name' or 'path/to/file.py:name'"


def is_object_spec(value: Any) -> bool:
    """True when ``value`` names an object in user code (``module:name``) rather than a registered back end."""
    return isinstance(value, str) and ":" in value


def load_object(spec: str, key: str) -> Any:
    """The object ``spec`` names; ``key`` is the config key that holds ``spec`` (for the error messages)."""
    shown = f"{key}={spec!r}"
    if not isinstance(spec, str) or ":" not in spec.strip(":"):
        raise ScorerConfigError(f"{shown} must be {SPEC_FORMS}")
    module_part, name = spec.rsplit(":", 1)
    if not module_part or not name.isidentifier():
        raise ScorerConfigError(f"{shown} must be {SPEC_FORMS}")
    if module_part.startswith("file://") or _looks_like_file(module_part):
        module = _load_file(module_part.removeprefix("file://"), shown)
        where = f"file {module.__file__}"
    else:
        module_name = module_part.removeprefix("pkg://").replace("/", ".")
        module = _import_module(module_name, shown)
        where = f"module {module_name}"
    try:
        return getattr(module, name)
    except AttributeError:
        defined = sorted(k for k, v in vars(module).items() if not k.startswith("_") and callable(v))
        raise ScorerConfigError(
            f"{shown}: {where} has no attribute {name!r} (it defines: {', '.join(defined) or 'nothing callable'})"
        ) from None


def _looks_like_file(module_part: str) -> bool:
    return module_part.endswith(".py") or "/" in module_part or os.sep in module_part


def _import_module(module_name: str, shown: str):
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        missing = err.name or ""
        if module_name == missing or module_name.startswith(missing + "."):
            raise ScorerConfigError(
                f"{shown}: module {module_name!r} not found ({err}). Install its package (pip install -e <folder>) "
                "or put the folder that holds it on PYTHONPATH before starting Ray (verl's reward workers inherit "
                "PYTHONPATH, not sys.path edits), or name a file instead: path/to/file.py:name."
            ) from None
        raise ScorerConfigError(f"{shown}: importing {module_name} failed: {type(err).__name__}: {err}") from err
    except Exception as err:  # noqa: BLE001 - the user's module raised while importing: say so, keep the cause
        raise ScorerConfigError(f"{shown}: importing {module_name} failed: {type(err).__name__}: {err}") from err


def _load_file(path: str, shown: str):
    """Execute ``path`` once per process under ``tars_user_code_<stem>_<hash of the absolute path>``."""
    full = os.path.abspath(os.path.expanduser(path))
    if not os.path.isfile(full):
        raise ScorerConfigError(
            f"{shown}: file {full} not found (a relative path is resolved against the working folder {os.getcwd()} "
            "of the process that loads it; verl's reward workers are other processes, possibly on other nodes: give "
            "an absolute path on a file system every node sees, or an installed module: package.module:name)"
        )
    stem = "".join(c if c.isalnum() else "_" for c in os.path.splitext(os.path.basename(full))[0])
    module_name = f"tars_user_code_{stem}_{hashlib.sha1(full.encode()).hexdigest()[:10]}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, full)
    if spec is None or spec.loader is None:
        raise ScorerConfigError(f"{shown}: {full} cannot be loaded as a Python module (is it a .py file?)")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # before running it: dataclasses and pickle look the module up there
    try:
        spec.loader.exec_module(module)
    except Exception as err:  # noqa: BLE001 - the user's file raised while loading: say so, keep the cause
        del sys.modules[module_name]
        raise ScorerConfigError(f"{shown}: running {full} failed: {type(err).__name__}: {err}") from err
    return module
