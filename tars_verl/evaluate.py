"""Moved to ``tars_verl.eval.cli``; kept for configs written before 0.2."""

from tars_verl._moved import reexport

_new = reexport(globals(), "tars_verl.evaluate", "tars_verl.eval.cli", command="tars_verl.eval")

if __name__ == "__main__":
    _new.main()
