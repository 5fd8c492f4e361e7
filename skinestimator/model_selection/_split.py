"""Cross-validation splitters that respect groups (one lesion, one patient)."""

from __future__ import annotations

import inspect
from numbers import Integral

import numpy as np
from sklearn import get_config
from sklearn.model_selection import StratifiedGroupKFold, check_cv

from .._validation import grouped_holdout
from .._warnings import warn_user

__all__ = [
    "check_group_cv",
    "check_groups_disjoint",
    "fit_grouped",
    "grouped_validation_split",
]


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


def grouped_validation_split(y, groups, fraction: float, *, random_state=None):
    """Hold out about ``fraction`` of the groups, stratified by class, as a validation set.

    Used for the classifier's early-stopping and pruning split inside a
    training fold: a plain random split would put images of one lesion on
    both sides and make the per-epoch validation score too optimistic.

    Parameters
    ----------
    y : array-like of shape (n_samples,)
        Class labels.
    groups : array-like of shape (n_samples,)
        Group labels such as ``lesion_id``.
    fraction : float
        Share of the samples to hold out, in ``(0, 0.5]``.
    random_state : int or None, default=None
        Seed of the shuffle.

    Returns
    -------
    train : ndarray of int
        Indices to train on.
    valid : ndarray of int
        Indices to validate on; no group is in both.

    Examples
    --------
    >>> import numpy as np
    >>> from skinestimator.model_selection import grouped_validation_split
    >>> y = np.array(["a", "b"] * 20)
    >>> groups = np.arange(40) // 2
    >>> train, valid = grouped_validation_split(y, groups, 0.25, random_state=0)
    >>> len(valid), set(groups[train]) & set(groups[valid])
    (10, set())
    """
    if not 0 < fraction <= 0.5:
        raise ValueError(f"fraction must be in (0, 0.5], got {fraction!r}.")
    seed = random_state if isinstance(random_state, Integral) else 0
    return grouped_holdout(y, groups, fraction, seed=seed)


def fit_grouped(estimator, X, y, groups=None):
    """Fit ``estimator`` so that its inner validation split is grouped like ``groups``.

    When the estimator, or the last step of a ``Pipeline``, has a ``fit(..., groups=)`` and
    holds out a ``validation_fraction`` (``SkinLesionClassifier``), ``groups`` goes to that
    ``fit``: its early-stopping (and pruning) split then keeps each lesion on one side.
    Otherwise this is ``estimator.fit(X, y)``.

    Under scikit-learn's metadata routing (``enable_metadata_routing=True``) a Pipeline passes
    ``groups`` only to a step that requested it, and this function keeps to the step's request:
    after ``clf.set_fit_request(groups=True)`` the step gets ``groups``; without a request it
    gets none and a ``UserWarning`` names that call (``set_fit_request(groups=False)`` declines
    them without a warning).

    Parameters
    ----------
    estimator : estimator or Pipeline
        Unfitted estimator, fitted in place.
    X : array-like of images or image paths
        Training input.
    y : array-like of shape (n_samples,)
        Class labels.
    groups : array-like of shape (n_samples,), default=None
        Group labels of the training samples.

    Returns
    -------
    estimator : estimator
        The fitted estimator.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from skinestimator.model_selection import fit_grouped
    >>> X, y = np.random.RandomState(0).rand(20, 3), np.arange(20) % 2
    >>> fit_grouped(LogisticRegression(), X, y, groups=np.arange(20) // 2).classes_
    array([0, 1])
    """
    steps = getattr(estimator, "steps", None)
    name, final = steps[-1] if steps else (None, estimator)
    takes_groups = (
        groups is not None
        and hasattr(final, "fit")
        and "groups" in inspect.signature(final.fit).parameters
        and bool(final.get_params().get("validation_fraction"))
    )
    if not takes_groups:
        return estimator.fit(X, y)
    if final is estimator:
        return estimator.fit(X, y, groups=groups)
    if get_config().get("enable_metadata_routing"):
        # Under metadata routing a Pipeline passes groups only to a step that requested it.
        requests = final.get_metadata_routing().fit.requests
        if requests.get("groups") is True:
            return estimator.fit(X, y, groups=groups)
        if requests.get("groups") is None:
            # Not requested: groups cannot reach the step, and its early-stopping (and
            # pruning) split would silently score on lesions it trains on. Requesting on the
            # user's behalf would change their estimator's routing, so say how instead.
            warn_user(
                f"Metadata routing is enabled and the Pipeline's last step {name!r} "
                f"({type(final).__name__}) has not requested groups for fit, so it gets none: "
                "its inner validation split (early stopping, pruning) is not grouped and may "
                "score on lesions it trains on. Call "
                f"pipe.named_steps[{name!r}].set_fit_request(groups=True) on the classifier "
                "step (or set_fit_request(groups=False) to train it without groups knowingly)."
            )
        return estimator.fit(X, y)
    return estimator.fit(X, y, **{f"{name}__groups": groups})
