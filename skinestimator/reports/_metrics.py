"""Classification metrics computed from predicted probabilities."""

from __future__ import annotations

import numbers
import re
import warnings

import numpy as np
import pandas as pd
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    log_loss,
    precision_recall_fscore_support,
    roc_auc_score,
    top_k_accuracy_score,
)

from .._warnings import warn_user

__all__ = [
    "classification_metrics",
    "expected_calibration_error",
    "per_class_metrics",
    "reliability_curve",
]


def _check_n_bins(n_bins) -> int:
    if isinstance(n_bins, bool) or not isinstance(n_bins, numbers.Integral) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}.")
    return int(n_bins)


def _resolve_top_k(top_k, n_classes: int) -> int:
    """``top_k`` checked; ``None`` becomes 2, or 1 when there are at most two classes."""
    if top_k is None:
        return 2 if n_classes > 2 else 1
    if isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral) or top_k < 1:
        raise ValueError(f"top_k must be a positive integer or None, got {top_k!r}.")
    return int(top_k)


def _top_k_warning(top_k: int, n_classes: int) -> str:
    """scikit-learn's message for a top-k accuracy that cannot be anything but 1."""
    return (
        f"'k' ({top_k}) greater than or equal to 'n_classes' ({n_classes}) will result in a "
        "perfect score and is therefore meaningless."
    )


#: Relative tolerance on a row's sum: scikit-learn's for float32 probabilities (its square-root
#: epsilon), used for every dtype because float32 network outputs usually arrive here already
#: cast to float64 (as in :func:`cross_validated_report`), which would otherwise hide their
#: rounding from a dtype-based tolerance.
SUM_RTOL = float(np.sqrt(np.finfo(np.float32).eps))
#: Start of the warning about rows that do not sum to one (callers filter on it).
NOT_SUMMING_TO_ONE = "y_proba rows do not sum to one"


def _check_probability_values(y_proba: np.ndarray) -> None:
    """Refuse what cannot be probabilities; warn about rows that do not sum to one.

    As :func:`sklearn.metrics.log_loss` (1.9): NaN, infinity and values outside [0, 1] raise,
    rows off 1 warn and are used as given, not renormalized. Without these checks, scores or
    logits gave an "ECE" above 1 and a log loss of silently renormalized rows.
    """
    if not np.isfinite(y_proba).all():
        raise ValueError("y_proba contains NaN or infinity; pass predicted probabilities.")
    if y_proba.size == 0:
        return
    hint = "pass predicted probabilities (predict_proba), not scores or logits."
    if y_proba.max() > 1:
        raise ValueError(f"y_proba contains values greater than 1: {y_proba.max()}; {hint}")
    if y_proba.min() < 0:
        raise ValueError(f"y_proba contains values lower than 0: {y_proba.min()}; {hint}")
    sums = y_proba.sum(axis=1)
    off = np.flatnonzero(~np.isclose(sums, 1.0, rtol=SUM_RTOL, atol=0.0))
    if off.size:
        warn_user(
            f"{NOT_SUMMING_TO_ONE}: {off.size} of {len(sums)} rows (row {off[0]} sums to "
            f"{sums[off[0]]:.6g}). Make sure to pass probabilities; the metrics use the values "
            "as given, not renormalized.",
            UserWarning,
        )


def _check_proba(y_true, y_proba, classes):
    y_true = np.asarray(y_true)
    y_proba = np.asarray(y_proba, dtype=float)
    if classes is None:
        classes = np.unique(y_true)
    classes = np.asarray(classes)
    if y_proba.ndim != 2 or y_proba.shape != (len(y_true), len(classes)):
        raise ValueError(
            f"y_proba must have shape (n_samples, n_classes) = ({len(y_true)}, {len(classes)}), "
            f"got {y_proba.shape}."
        )
    unknown = np.setdiff1d(y_true, classes)
    if unknown.size:
        raise ValueError(f"y_true holds labels missing from classes: {unknown.tolist()}.")
    _check_probability_values(y_proba)
    return y_true, y_proba, classes


def reliability_curve(y_true, y_proba, *, classes=None, n_bins: int = 10):
    """Top-label reliability curve: accuracy against confidence, per confidence bin.

    The confidence of a prediction is its largest class probability; a
    calibrated classifier is right in 80 % of the cases it is 80 % sure about.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels.
    y_proba : array-like of shape (n_samples, n_classes)
        Predicted probabilities, columns in the order of ``classes``: values in [0, 1],
        each row summing to 1.
    classes : array-like of shape (n_classes,), default=None
        Column labels of ``y_proba``; default ``np.unique(y_true)``.
    n_bins : int, default=10
        Number of equal-width confidence bins on ``[0, 1]``; a positive integer.

    Returns
    -------
    confidence : ndarray of shape (n_bins,)
        Mean confidence in each bin (NaN for empty bins).
    accuracy : ndarray of shape (n_bins,)
        Fraction of correct predictions in each bin (NaN for empty bins).
    counts : ndarray of shape (n_bins,)
        Number of predictions in each bin.
    bin_edges : ndarray of shape (n_bins + 1,)
        Bin edges.

    Raises
    ------
    ValueError
        If ``y_proba`` does not have shape ``(n_samples, n_classes)``, contains NaN,
        infinity or values outside [0, 1] (scores or logits rather than probabilities),
        or ``y_true`` holds labels missing from ``classes``.

    Warns
    -----
    UserWarning
        If rows of ``y_proba`` do not sum to 1 within a relative 3.5e-4 (the square root
        of float32's epsilon, which float32 rounding stays within); they are used as
        given, not renormalized, as by :func:`sklearn.metrics.log_loss`.

    Examples
    --------
    >>> import numpy as np
    >>> from skinestimator.reports import reliability_curve
    >>> proba = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.4, 0.6]])
    >>> conf, acc, counts, edges = reliability_curve(["a", "b", "b", "b"], proba, n_bins=2)
    >>> counts
    array([0, 4])
    >>> acc[1]
    np.float64(0.75)
    """
    n_bins = _check_n_bins(n_bins)
    y_true, y_proba, classes = _check_proba(y_true, y_proba, classes)
    confidence = y_proba.max(axis=1)
    correct = classes[y_proba.argmax(axis=1)] == y_true
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # Right-closed bins so that a confidence of exactly 1.0 lands in the last one.
    idx = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    counts = np.bincount(idx, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(idx, weights=confidence, minlength=n_bins) / counts
        accuracy = np.bincount(idx, weights=correct, minlength=n_bins) / counts
    return mean_conf, accuracy, counts, edges


def expected_calibration_error(y_true, y_proba, *, classes=None, n_bins: int = 10) -> float:
    """Top-label expected calibration error (ECE).

    The gap between accuracy and confidence in each bin of
    :func:`reliability_curve`, averaged with the bins' sample counts as
    weights (Guo et al., 2017). 0 is perfectly calibrated.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels.
    y_proba : array-like of shape (n_samples, n_classes)
        Predicted probabilities, columns in the order of ``classes``: values in [0, 1],
        each row summing to 1.
    classes : array-like of shape (n_classes,), default=None
        Column labels of ``y_proba``; default ``np.unique(y_true)``.
    n_bins : int, default=10
        Number of equal-width confidence bins.

    Returns
    -------
    ece : float
        Expected calibration error in ``[0, 1]``.

    Raises
    ------
    ValueError
        If ``y_proba`` does not have shape ``(n_samples, n_classes)``, contains NaN,
        infinity or values outside [0, 1] (scores or logits rather than probabilities),
        or ``y_true`` holds labels missing from ``classes``.

    Warns
    -----
    UserWarning
        If rows of ``y_proba`` do not sum to 1 within a relative 3.5e-4 (the square root
        of float32's epsilon, which float32 rounding stays within); they are used as
        given, not renormalized, as by :func:`sklearn.metrics.log_loss`.

    Examples
    --------
    >>> import numpy as np
    >>> from skinestimator.reports import expected_calibration_error
    >>> proba = np.array([[0.9, 0.1], [0.9, 0.1], [0.1, 0.9], [0.1, 0.9]])
    >>> round(expected_calibration_error(["a", "a", "b", "a"], proba), 3)  # 90 % sure, 75 % right
    0.15
    """
    mean_conf, accuracy, counts, _ = reliability_curve(
        y_true, y_proba, classes=classes, n_bins=n_bins
    )
    return _ece_from_curve(mean_conf, accuracy, counts)


def _ece_from_curve(mean_conf, accuracy, counts) -> float:
    filled = counts > 0
    gaps = np.abs(accuracy[filled] - mean_conf[filled])
    return float(np.sum(counts[filled] * gaps) / counts.sum())


def _roc_auc_per_class(y_true, y_proba, classes) -> np.ndarray:
    """One-vs-rest AUC per class; NaN where the class or its rest is absent."""
    aucs = np.full(len(classes), np.nan)
    for i, c in enumerate(classes):
        positive = y_true == c
        if 0 < positive.sum() < len(y_true):
            aucs[i] = roc_auc_score(positive, y_proba[:, i])
    return aucs


def classification_metrics(
    y_true, y_proba, *, classes=None, top_k: int | None = None, n_bins: int = 10
) -> dict[str, float]:
    """Scalar metrics of a probabilistic classifier on one set of predictions.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels.
    y_proba : array-like of shape (n_samples, n_classes)
        Predicted probabilities, columns in the order of ``classes``: values in [0, 1],
        each row summing to 1.
    classes : array-like of shape (n_classes,), default=None
        Column labels of ``y_proba``; default ``np.unique(y_true)``.
    top_k : int or None, default=None
        ``k`` of the top-k accuracy; ``None`` is 2, or 1 for two classes. With
        ``k >= n_classes`` every prediction counts as right: the score is 1.0 with an
        ``UndefinedMetricWarning``, as from :func:`sklearn.metrics.top_k_accuracy_score`.
    n_bins : int, default=10
        Confidence bins of the expected calibration error.

    Returns
    -------
    metrics : dict of str to float
        ``n_samples``, ``accuracy``, ``balanced_accuracy``, ``f1_macro``,
        ``f1_weighted``, ``roc_auc_ovr_macro`` (mean one-vs-rest AUC over the
        classes present), ``top_<k>_accuracy``, ``log_loss`` and ``ece``.

    Raises
    ------
    ValueError
        If ``y_proba`` does not have shape ``(n_samples, n_classes)``, contains NaN,
        infinity or values outside [0, 1] (scores or logits rather than probabilities),
        or ``y_true`` holds labels missing from ``classes``.

    Warns
    -----
    UserWarning
        If rows of ``y_proba`` do not sum to 1 within a relative 3.5e-4 (the square root
        of float32's epsilon, which float32 rounding stays within); they are used as
        given, not renormalized, as by :func:`sklearn.metrics.log_loss`.

    Examples
    --------
    >>> import numpy as np
    >>> from skinestimator.reports import classification_metrics
    >>> proba = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.3, 0.3, 0.4], [0.5, 0.4, 0.1]])
    >>> m = classification_metrics(["a", "b", "c", "b"], proba, classes=["a", "b", "c"])
    >>> m["accuracy"], m["top_2_accuracy"]
    (0.75, 1.0)
    """
    n_bins = _check_n_bins(n_bins)
    y_true, y_proba, classes = _check_proba(y_true, y_proba, classes)
    top_k = _resolve_top_k(top_k, len(classes))
    y_pred = classes[y_proba.argmax(axis=1)]
    if top_k >= len(classes):
        warn_user(_top_k_warning(top_k, len(classes)), UndefinedMetricWarning)
    with warnings.catch_warnings():
        # Classes missing from a small fold or subgroup make some scores
        # ill-defined; they are reported as computed (0 or NaN), not as noise.
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        warnings.simplefilter("ignore", UserWarning)
        metrics = {
            "n_samples": float(len(y_true)),
            "accuracy": accuracy_score(y_true, y_pred),
            "balanced_accuracy": balanced_accuracy_score(y_true, y_pred),
            "f1_macro": f1_score(y_true, y_pred, average="macro", zero_division=0),
            "f1_weighted": f1_score(y_true, y_pred, average="weighted", zero_division=0),
        }
        aucs = _roc_auc_per_class(y_true, y_proba, classes)
        metrics["roc_auc_ovr_macro"] = (
            float(np.nanmean(aucs)) if np.isfinite(aucs).any() else np.nan
        )
        if top_k >= len(classes):
            # Every label is in the top k: 1.0, as scikit-learn scores it.
            metrics[f"top_{top_k}_accuracy"] = 1.0
        elif len(classes) == 2:
            # Top-1 of two classes; scikit-learn's scorer wants one score column for them.
            metrics[f"top_{top_k}_accuracy"] = metrics["accuracy"]
        else:
            metrics[f"top_{top_k}_accuracy"] = top_k_accuracy_score(
                y_true, y_proba, k=top_k, labels=classes
            )
        # A probability of 0 for the true class costs -log(1e-15), not infinity. Rows off 1
        # were warned about above and are scored as given, as scikit-learn scores them.
        metrics["log_loss"] = log_loss(y_true, np.clip(y_proba, 1e-15, 1.0), labels=classes)
    with warnings.catch_warnings():
        # Already said once by _check_proba above.
        warnings.filterwarnings("ignore", message=re.escape(NOT_SUMMING_TO_ONE))
        metrics["ece"] = expected_calibration_error(
            y_true, y_proba, classes=classes, n_bins=n_bins
        )
    return {name: float(value) for name, value in metrics.items()}


def per_class_metrics(y_true, y_proba, *, classes=None) -> pd.DataFrame:
    """Precision, recall (sensitivity), F1, one-vs-rest AUC and support per class.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels.
    y_proba : array-like of shape (n_samples, n_classes)
        Predicted probabilities, columns in the order of ``classes``: values in [0, 1],
        each row summing to 1.
    classes : array-like of shape (n_classes,), default=None
        Column labels of ``y_proba``; default ``np.unique(y_true)``.

    Returns
    -------
    table : pandas.DataFrame
        One row per class, columns ``precision``, ``recall``, ``f1``,
        ``roc_auc_ovr`` and ``support``.

    Raises
    ------
    ValueError
        If ``y_proba`` does not have shape ``(n_samples, n_classes)``, contains NaN,
        infinity or values outside [0, 1] (scores or logits rather than probabilities),
        or ``y_true`` holds labels missing from ``classes``.

    Warns
    -----
    UserWarning
        If rows of ``y_proba`` do not sum to 1 within a relative 3.5e-4 (the square root
        of float32's epsilon, which float32 rounding stays within); they are used as
        given, not renormalized, as by :func:`sklearn.metrics.log_loss`.

    Examples
    --------
    >>> import numpy as np
    >>> from skinestimator.reports import per_class_metrics
    >>> proba = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]])
    >>> per_class_metrics(["a", "b", "b"], proba)["recall"].tolist()
    [1.0, 0.5]
    """
    y_true, y_proba, classes = _check_proba(y_true, y_proba, classes)
    y_pred = classes[y_proba.argmax(axis=1)]
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=classes, zero_division=0
    )
    return pd.DataFrame(
        {
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "roc_auc_ovr": _roc_auc_per_class(y_true, y_proba, classes),
            "support": support.astype(int),
        },
        index=pd.Index([str(c) for c in classes], name="class"),
    )
