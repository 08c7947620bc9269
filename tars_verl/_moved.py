"""The old public paths of modules that moved in 0.2 (``tars_verl.reward_manager`` -> ``tars_verl.reward.manager``...).

Each old module is three lines: it calls :func:`reexport`, which warns once (``DeprecationWarning`` naming the new
path) and binds every name of the new module into the old one. The objects are the new module's own (the same
class, the same registry entry): nothing is defined or registered twice. The shims go in 0.3.

>>> import warnings
>>> with warnings.catch_warnings(record=True) as caught:
...     warnings.simplefilter("always")
...     names = {}
...     module = reexport(names, "old.path", "tars_verl.data.text")
>>> names["normalise"] is module.normalise, caught[0].category.__name__
(True, 'DeprecationWarning')
>>> str(caught[0].message)
'old.path moved to tars_verl.data.text; import tars_verl.data.text instead (old.path goes in tars_verl 0.3)'
"""

from __future__ import annotations

import importlib
import warnings
from types import ModuleType


def reexport(namespace: dict, old: str, new: str, command: str | None = None) -> ModuleType:
    """Warn that ``old`` moved to ``new``, copy ``new``'s names into ``namespace`` (the old module's globals), and
    return the new module (the old paths run as ``python -m`` call its ``main``; ``command`` is the module to name
    for that, when it is not ``new``)."""
    if namespace.get("__name__") == "__main__":
        # Run as ``python -m <old>``: the shim is __main__, where Python shows a DeprecationWarning by default.
        message, stacklevel = f"python -m {old} moved to python -m {command or new} ({old} goes in tars_verl 0.3)", 2
    else:
        # Imported: blame the importer (Python skips importlib's own frames).
        message, stacklevel = f"{old} moved to {new}; import {new} instead ({old} goes in tars_verl 0.3)", 3
    warnings.warn(message, DeprecationWarning, stacklevel=stacklevel)
    module = importlib.import_module(new)
    namespace.update(
        (name, value)
        for name, value in vars(module).items()
        if not (name.startswith("__") and name.endswith("__")) or name == "__all__"
    )
    return module
