"""``python -m geneva``: see :mod:`geneva.cli`."""

import sys

from geneva.cli import main

sys.exit(main())
