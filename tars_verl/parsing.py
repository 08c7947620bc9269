"""Moved to ``tars_verl.reward.response_format``; kept for configs written before 0.2."""

from tars_verl._moved import reexport

_new = reexport(globals(), "tars_verl.parsing", "tars_verl.reward.response_format")
