"""Rainbow-Teaming archives (the TARS authors' format) against your own warm start, resumable. See --help."""

import sys

from tars_verl.data.rainbow.cli import main

if __name__ == "__main__":
    sys.exit(main())
