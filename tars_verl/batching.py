"""Moved to ``tars_verl.reward.batching``; kept for configs written before 0.2."""

from tars_verl._moved import reexport

_new = reexport(globals(), "tars_verl.batching", "tars_verl.reward.batching")
