"""Moved to ``tars_verl.training.main_ppo``; kept for configs written before 0.2."""

from tars_verl._moved import reexport

_new = reexport(globals(), "tars_verl.main_ppo", "tars_verl.training.main_ppo")

if __name__ == "__main__":
    _new.main()
