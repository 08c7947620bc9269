"""``python -m tars_verl.eval``: the evaluation command (``tars_verl.eval.cli``)."""

from tars_verl.eval.cli import main

if __name__ == "__main__":
    main()
