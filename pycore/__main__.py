"""``python -m pycore``: the command line (pycore/cli)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
