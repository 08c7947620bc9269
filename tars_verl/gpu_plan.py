"""Moved to ``tars_verl.training.gpu_plan``; kept for configs written before 0.2."""

from tars_verl._moved import reexport

_new = reexport(globals(), "tars_verl.gpu_plan", "tars_verl.training.gpu_plan")
