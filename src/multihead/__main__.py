"""`python -m multihead` runs the command line."""

import sys

from multihead.cli import main

sys.exit(main())
