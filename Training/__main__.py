"""`python -m Training train|evaluate|export|report` (see `Training.cli`)."""

import sys

from Training.cli import main

if __name__ == "__main__":
    sys.exit(main())
