"""Moved to ``tars_verl.training.compose``; kept for configs written before 0.2."""

from tars_verl._moved import reexport

_new = reexport(globals(), "tars_verl.verl_compose", "tars_verl.training.compose")
