"""Warnings that point at the user's code, not at the line inside skinestimator that raised them.

A fixed ``stacklevel`` is only right for one call path: ``fit`` reaches the input checks through
more frames than ``predict_proba`` does, and a ``Pipeline`` adds its own. Walking up to the first
frame outside the package gives the user's line on every direct path (through a ``Pipeline``
or a search it is the scikit-learn line that called the package) (Python 3.12's
``skip_file_prefixes`` does the same, but the package supports 3.10 and 3.11).
"""

from __future__ import annotations

import os
import sys
import warnings

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def warn_user(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn(message, category)`` attributed to the nearest caller outside the package."""
    frame = sys._getframe(1)
    stacklevel = 2  # 1 would be this function; 2 is its caller
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE_DIR):
        frame = frame.f_back
        stacklevel += 1
    warnings.warn(message, category, stacklevel=stacklevel)
