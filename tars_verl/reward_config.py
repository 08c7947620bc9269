"""Moved to ``tars_verl.reward.config``; kept for configs written before 0.2."""

from tars_verl._moved import reexport

_new = reexport(globals(), "tars_verl.reward_config", "tars_verl.reward.config")
