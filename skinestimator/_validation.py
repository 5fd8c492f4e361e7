"""The validation part held out of a training set, for early stopping: whole groups at a time.

It lives below both the classifier (its ``fit(..., groups=)``) and ``model_selection`` (its
public :func:`~skinestimator.model_selection.grouped_validation_split`), so that the two share one
definition of "hold out a fraction of the lesions".
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.model_selection import ShuffleSplit, StratifiedGroupKFold, StratifiedShuffleSplit
from sklearn.utils import check_random_state


def fit_seeds(random_state) -> tuple[int, int]:
    """``(torch_seed, split_seed)``: the seeds one ``fit`` draws from ``random_state``.

    The command line draws its hold-out seed here too, so that ``train --seed S`` holds out the
    same images as ``SkinLesionClassifier(random_state=S).fit`` and trains the same model.
    """
    rng = check_random_state(random_state)
    torch_seed = int(rng.randint(np.iinfo(np.int32).max))
    split_seed = int(rng.randint(np.iinfo(np.int32).max))
    return torch_seed, split_seed


def random_holdout(y, n_valid: int, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, valid)``: ``n_valid`` samples held out at random, stratified by class
    when every class has two samples and both parts can hold one of each.

    The caller checks that ``n_valid`` leaves something on both sides.
    """
    n = len(y)
    counts = np.unique(y, return_counts=True)[1]
    if counts.min() >= 2 and len(counts) <= n_valid <= n - len(counts):
        splitter = StratifiedShuffleSplit(n_splits=1, test_size=n_valid, random_state=seed)
    else:
        splitter = ShuffleSplit(n_splits=1, test_size=n_valid, random_state=seed)
    train, valid = next(splitter.split(np.zeros(n), y))
    return np.sort(train), np.sort(valid)


def grouped_holdout(y, groups, fraction: float, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, valid)``: about ``fraction`` of the samples, as whole groups, held out
    and stratified by class as far as the groups allow (``m`` of the ``k`` folds of
    ``StratifiedGroupKFold`` whose share ``m / k`` is closest to ``fraction``).

    Raises ``ValueError`` when there are fewer than 2 groups.
    """
    y = np.asarray(y)
    n_groups = len(np.unique(groups))
    if n_groups < 2:
        raise ValueError(f"holding out groups needs at least 2 groups, got {n_groups}")
    n_splits, n_held_out = _folds_for_fraction(fraction, n_groups)
    largest_class = int(np.unique(y, return_counts=True)[1].max())
    if largest_class < n_splits:
        # StratifiedGroupKFold's own message names its n_splits, which the caller never set.
        raise ValueError(
            f"too few images per class to hold out {fraction:g} of them as whole groups: "
            f"that takes {n_splits} stratified group folds, but the largest class has "
            f"{largest_class} images"
        )
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        # Only some folds are used: a rare class missing from the validation part is expected
        # here, not a mistake worth a warning on every fit.
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        folds = [valid for _, valid in splitter.split(np.zeros(len(y)), y, groups)]
    valid = np.concatenate(folds[:n_held_out])
    train = np.setdiff1d(np.arange(len(y)), valid)
    return np.sort(train), np.sort(valid)


def _folds_for_fraction(fraction: float, n_groups: int, max_splits: int = 20) -> tuple[int, int]:
    """``(k, m)``: holding out ``m`` of ``k`` group folds comes closest to ``fraction``.

    The fewest folds win ties, so 0.1 is 1 of 10 folds and 0.2 is 1 of 5, as before; but 0.4
    is now 2 of 5 and 0.9 is 9 of 10, where one fold of ``round(1 / fraction)`` held out 50 %.
    """
    best = None
    for k in range(2, max(2, min(max_splits, n_groups)) + 1):
        m = min(max(1, round(fraction * k)), k - 1)
        error = abs(m / k - fraction)
        if best is None or error < best[0] - 1e-12:
            best = (error, k, m)
    return best[1], best[2]
