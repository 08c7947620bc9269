"""Moved to ``tars_verl.reward.log_schema``; kept for configs written before 0.2."""

from tars_verl._moved import reexport

_new = reexport(globals(), "tars_verl.reward_log", "tars_verl.reward.log_schema")
