"""``python -m facepruning``: see :mod:`facepruning.cli`."""

import sys

from .cli import main

sys.exit(main())
