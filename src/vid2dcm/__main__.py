"""python -m vid2dcm: the command line."""

import sys

from vid2dcm.apps.cli import main

sys.exit(main())
