"""``python -m skinestimator.cli``: the same as the ``skinestimator`` console script."""

import sys

from . import main

sys.exit(main())
