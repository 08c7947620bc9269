"""Moved to ``tars_verl.reward.manager``; kept for configs written before 0.2."""

from tars_verl._moved import reexport

_new = reexport(globals(), "tars_verl.reward_manager", "tars_verl.reward.manager")
