"""The validation part held out of a training set, for early stopping: whole groups at a time.

It lives below both the classifier (its ``fit(..., groups=)``) and ``model_selection`` (its
public :func:`~skinestimator.model_selection.grouped_validation_split`), so that the two share one
definition of "hold out a fraction of the lesions".
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold


def grouped_holdout(y, groups, fraction: float, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, valid)``: about ``fraction`` of the samples, as whole groups, held out
    and stratified by class as far as the groups allow (one fold of ``StratifiedGroupKFold``).

    Raises ``ValueError`` when there are fewer than 2 groups.
    """
    y = np.asarray(y)
    n_groups = len(np.unique(groups))
    if n_groups < 2:
        raise ValueError(f"holding out groups needs at least 2 groups, got {n_groups}")
    n_splits = min(max(2, round(1 / fraction)), n_groups)
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        # Only one fold is used: a rare class missing from the validation part is expected
        # here, not a mistake worth a warning on every fit.
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        train, valid = next(splitter.split(np.zeros(len(y)), y, groups))
    return np.sort(train), np.sort(valid)
