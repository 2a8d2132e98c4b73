"""python -m vid2dcm.apps.cli: the command line (as python -m vid2dcm)."""

import sys

from vid2dcm.apps.cli import main

sys.exit(main())
