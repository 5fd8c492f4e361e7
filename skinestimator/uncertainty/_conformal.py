"""Split conformal prediction sets (Vovk et al.; Angelopoulos & Bates, 2021) from a calibration
set's scores, overall or per class (Mondrian).

Written here rather than taken from MAPIE: MAPIE's classifiers wrap and refit or re-predict an
estimator and keep their state in Python objects, while what the classifier, its model file,
the command line and the web page need is a few numbers (the calibration scores, stored with
the model, so that any coverage can be asked for later) and the dozen lines below; the coverage
guarantee is tested in tests/test_uncertainty.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real

import numpy as np

from .._warnings import warn_user

__all__ = ["ConformalScores", "check_coverage", "conformal_thresholds", "prediction_sets",
           "set_labels"]


def check_coverage(coverage) -> float:
    if isinstance(coverage, bool) or not isinstance(coverage, Real) or not 0 < coverage < 1:
        raise ValueError(f"coverage must be a number strictly between 0 and 1 (e.g. 0.9), got "
                         f"{coverage!r}")
    return float(coverage)


@dataclass(frozen=True)
class ConformalScores:
    """The nonconformity scores of a calibration set: one minus the probability the classifier
    gave each image's true class, with that class's index.

    Parameters
    ----------
    scores : ndarray of shape (n_images,)
    labels : ndarray of shape (n_images,)
        Class indices (columns of ``predict_proba``).
    n_classes : int
    """

    scores: np.ndarray
    labels: np.ndarray
    n_classes: int

    @classmethod
    def from_proba(cls, proba: np.ndarray, labels: np.ndarray) -> ConformalScores:
        """Scores of calibration images with probabilities ``proba`` and true ``labels``."""
        proba = np.asarray(proba, dtype=np.float64)
        labels = np.asarray(labels, dtype=np.int64)
        return cls(1.0 - proba[np.arange(len(labels)), labels], labels, proba.shape[1])

    def to_dict(self) -> dict:
        """JSON-ready form (the model card stores it)."""
        return {"scores": [float(s) for s in self.scores],
                "labels": [int(v) for v in self.labels], "n_classes": int(self.n_classes)}

    @classmethod
    def from_dict(cls, data: dict) -> ConformalScores:
        return cls(np.asarray(data["scores"], dtype=np.float64),
                   np.asarray(data["labels"], dtype=np.int64), int(data["n_classes"]))


def _threshold(scores: np.ndarray, coverage: float) -> float:
    """The score below which a new image's true class falls with probability >= coverage:
    the ceil((n + 1) coverage)-th smallest of n scores; infinite when n is too small."""
    n = len(scores)
    rank = math.ceil((n + 1) * coverage)
    if rank > n:
        return math.inf
    return float(np.sort(scores)[rank - 1])


def conformal_thresholds(calibration: ConformalScores, coverage: float, *,
                         by_class: bool = False, class_names=None) -> np.ndarray:
    """One score threshold per class for sets that hold the true class with probability at
    least ``coverage`` (over the class of the image too, when ``by_class``).

    A class with too few calibration images for ``coverage`` (fewer than
    ``coverage / (1 - coverage)``, e.g. 9 at 0.9) gets an infinite threshold, so that every
    set includes it, with a warning naming it.

    Examples
    --------
    >>> import numpy as np
    >>> from skinestimator.uncertainty import ConformalScores, conformal_thresholds
    >>> proba = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.3, 0.7]] * 5)
    >>> labels = np.array([0, 0, 1, 1] * 5)
    >>> calibration = ConformalScores.from_proba(proba, labels)
    >>> conformal_thresholds(calibration, 0.8).round(2)
    array([0.4, 0.4])
    """
    coverage = check_coverage(coverage)
    if not by_class:
        return np.full(calibration.n_classes, _threshold(calibration.scores, coverage))
    thresholds = np.empty(calibration.n_classes)
    short = []
    for k in range(calibration.n_classes):
        scores = calibration.scores[calibration.labels == k]
        thresholds[k] = _threshold(scores, coverage)
        if math.isinf(thresholds[k]):
            name = k if class_names is None else class_names[k]
            short.append(f"'{name!s}' ({len(scores)})")
    if short:
        needed = next(n for n in range(1, 10**7) if not math.isinf(_threshold(np.zeros(n),
                                                                              coverage)))
        warn_user(f"coverage {coverage} per class needs at least {needed} calibration images of "
                  f"each class; {', '.join(short)} have fewer and are put in every set")
    return thresholds


def prediction_sets(proba: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Boolean ``(n_images, n_classes)``: class ``k`` is in image ``i``'s set when one minus its
    probability is at most ``thresholds[k]``. The most probable class is always in the set
    (which can only raise the coverage), so that no set is empty."""
    proba = np.asarray(proba, dtype=np.float64)
    sets = (1.0 - proba) <= np.asarray(thresholds)[None, :]
    sets[np.arange(len(proba)), proba.argmax(axis=1)] = True
    return sets


def set_labels(proba: np.ndarray, sets: np.ndarray, classes) -> list[list[str]]:
    """Each image's set as its conditions' names, the most probable first (what the command
    line and the web page show).

    Examples
    --------
    >>> import numpy as np
    >>> from skinestimator.uncertainty import set_labels
    >>> set_labels(np.array([[0.2, 0.5, 0.3]]), np.array([[False, True, True]]), ["a", "b", "c"])
    [['b', 'c']]
    """
    return [[str(classes[k]) for k in np.argsort(-row, kind="stable") if members[k]]
            for row, members in zip(np.asarray(proba), np.asarray(sets), strict=True)]
