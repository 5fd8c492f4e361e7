"""Cross-validation splitters that respect groups (one lesion, one patient)."""

from __future__ import annotations

from numbers import Integral

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, check_cv

__all__ = ["check_group_cv", "check_groups_disjoint"]


def check_group_cv(cv=5, y=None, groups=None, *, classifier: bool = True):
    """Return a splitter that keeps each group on one side of every split.

    scikit-learn's ``check_cv`` turns an integer into ``StratifiedKFold``,
    which silently ignores ``groups``: images of one lesion would then land in
    both the training and the test part of a fold and inflate every score.
    With ``groups`` and an integer ``cv`` this returns
    ``StratifiedGroupKFold`` instead; otherwise it defers to ``check_cv``.

    Parameters
    ----------
    cv : int, cross-validation generator or iterable, default=5
        Number of folds or a splitter.
    y : array-like of shape (n_samples,), default=None
        Target, used to choose a stratified splitter for classifiers.
    groups : array-like of shape (n_samples,), default=None
        Group labels such as ``lesion_id``.
    classifier : bool, default=True
        Whether the estimator being validated is a classifier.

    Returns
    -------
    splitter : cross-validator
        An object with ``split(X, y, groups)`` and ``get_n_splits()``.

    Examples
    --------
    >>> from skinestimator.model_selection import check_group_cv
    >>> check_group_cv(3, y=[0, 1, 0, 1, 0, 1], groups=[0, 0, 1, 1, 2, 2])
    StratifiedGroupKFold(n_splits=3, random_state=None, shuffle=False)
    >>> check_group_cv(3, y=[0, 1, 0, 1, 0, 1])
    StratifiedKFold(n_splits=3, random_state=None, shuffle=False)
    """
    if groups is not None and isinstance(cv, Integral) and classifier:
        return StratifiedGroupKFold(n_splits=int(cv))
    return check_cv(cv, y, classifier=classifier)


def check_groups_disjoint(splits, groups) -> None:
    """Raise ``ValueError`` if a group appears on both sides of a split.

    Parameters
    ----------
    splits : iterable of (train_indices, test_indices)
        Materialised splits.
    groups : array-like of shape (n_samples,) or None
        Group labels; nothing is checked when ``None``.

    Examples
    --------
    >>> from skinestimator.model_selection import check_groups_disjoint
    >>> check_groups_disjoint([([0, 1], [2, 3])], groups=["a", "a", "b", "b"])
    >>> check_groups_disjoint([([0, 2], [1, 3])], groups=["a", "a", "b", "b"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: Fold 0 puts 2 group(s) in both its training and its test part ...
    """
    if groups is None:
        return
    groups = np.asarray(groups)
    for fold, (train, test) in enumerate(splits):
        shared = np.intersect1d(groups[np.asarray(train)], groups[np.asarray(test)])
        if shared.size:
            raise ValueError(
                f"Fold {fold} puts {shared.size} group(s) in both its training and its test "
                f"part (e.g. {shared[:3].tolist()}); use a group-aware splitter such as "
                "StratifiedGroupKFold or GroupKFold, or pass cv as an integer."
            )
