"""Moved to ``tars_verl.training.sft``; kept for configs written before 0.2."""

from tars_verl._moved import reexport

_new = reexport(globals(), "tars_verl.sft", "tars_verl.training.sft")

if __name__ == "__main__":
    _new.main()
