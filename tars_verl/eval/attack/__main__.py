"""``python -m tars_verl.eval.attack``: see :mod:`tars_verl.eval.attack.cli`."""

from tars_verl.eval.attack.cli import main

if __name__ == "__main__":
    main()
