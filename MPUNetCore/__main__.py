"""`python -m MPUNetCore` is the `mpunet` command (used where the console script is not on PATH)."""

import sys

from MPUNetCore.cli import main

sys.exit(main())
