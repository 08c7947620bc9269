"""Moved to ``tars_verl.training.dry_run``; kept for configs written before 0.2."""

import sys

from tars_verl._moved import reexport

_new = reexport(globals(), "tars_verl.dry_run", "tars_verl.training.dry_run")

if __name__ == "__main__":
    sys.exit(_new.main())
