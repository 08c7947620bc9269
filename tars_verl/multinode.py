"""Moved to ``tars_verl.training.multinode``; kept for configs written before 0.2."""

from tars_verl._moved import reexport

_new = reexport(globals(), "tars_verl.multinode", "tars_verl.training.multinode")
