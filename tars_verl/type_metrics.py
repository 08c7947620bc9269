"""Moved to ``tars_verl.reward.per_type_metrics``; kept for configs written before 0.2."""

from tars_verl._moved import reexport

_new = reexport(globals(), "tars_verl.type_metrics", "tars_verl.reward.per_type_metrics")
