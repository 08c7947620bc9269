"""Moved to ``tars_verl.training.trainer``; kept for configs written before 0.2."""

from tars_verl._moved import reexport

_new = reexport(globals(), "tars_verl.trainer", "tars_verl.training.trainer")
