"""Conformal prediction sets of a fitted :class:`~skinestimator.SkinLesionClassifier`: which
conditions each image may have, with a coverage guarantee (see :mod:`skinestimator.uncertainty`)."""

from __future__ import annotations

import numpy as np
from sklearn.utils.validation import check_is_fitted

from .uncertainty import conformal_thresholds, prediction_sets
from .uncertainty._conformal import check_coverage

__all__ = ["PredictionSetMixin"]


class PredictionSetMixin:
    """``predict_set`` and ``fit_conformal`` for a classifier with ``predict_proba``."""

    def predict_set(self, X, coverage: float = 0.9, *, by_class: bool = False) -> np.ndarray:
        """The set of conditions each image may have, holding the true one with probability
        at least ``coverage``.

        Split conformal prediction: the score of a condition is one minus its (calibrated)
        probability, and a set holds the conditions scoring under the threshold that
        ``coverage`` of the calibration images' true conditions scored under. On images
        exchangeable with the calibration images (the same population, not chosen by the
        prediction), the true condition is in the set with probability at least ``coverage``
        over the draw of both. The calibration images are ``fit``'s validation split (whole
        lesions with ``groups``), or those given to :meth:`fit_conformal`.

        Parameters
        ----------
        X : sequence of paths or image array, as in :meth:`fit`
        coverage : float in (0, 1), default=0.9
        by_class : bool, default=False
            Class-conditional (Mondrian) sets: the coverage holds for the images of each
            condition separately, so rare conditions get it too (at the price of larger sets
            for them); each class then needs ``coverage / (1 - coverage)`` calibration images
            (9 at 0.9), and one with fewer is put in every set, with a warning.

        Returns
        -------
        sets : ndarray of bool, shape (n_images, n_classes)
            Columns follow ``classes_``: ``clf.classes_[sets[i]]`` are image ``i``'s
            conditions. The most probable condition is always in the set.

        Examples
        --------
        >>> from skinestimator import SkinLesionClassifier, make_synthetic_lesions
        >>> X, y = make_synthetic_lesions(n_samples=120, image_size=(32, 32), random_state=0)
        >>> clf = SkinLesionClassifier(backbone="seed_cnn", max_epochs=4, random_state=0,
        ...                            validation_fraction=0.3).fit(X, y)
        >>> sets = clf.predict_set(X[:5], coverage=0.9)
        >>> sets.shape, sets.dtype
        ((5, 3), dtype('bool'))
        """
        check_is_fitted(self)
        coverage = check_coverage(coverage)
        calibration = getattr(self, "conformal_scores_", None)
        if calibration is None:
            raise ValueError(
                "predict_set needs calibration scores: fit held out no validation split "
                "(validation_fraction=None, no X_val, or partial_fit); call "
                "fit_conformal(X_cal, y_cal) with labelled images the network did not train on")
        thresholds = conformal_thresholds(calibration, coverage, by_class=bool(by_class),
                                          class_names=self.classes_)
        return prediction_sets(self.predict_proba(X), thresholds)

    def fit_conformal(self, X, y):
        """Replace the calibration scores of :meth:`predict_set` by those of ``(X, y)``.

        Use labelled images that neither training nor early stopping saw (e.g. lesions held
        out for the purpose): ``fit``'s own validation split also picked the best epoch and
        the temperature, which can make its sets a little too small.

        Parameters
        ----------
        X : sequence of paths or image array, as in :meth:`fit`
        y : array-like of shape (n,)
            Their true labels, classes the classifier knows.

        Returns
        -------
        self
        """
        from .training._calibrate import conformal_scores_of

        check_is_fitted(self)
        y = np.asarray(y)
        if len(y) == 0:
            raise ValueError("fit_conformal needs at least one labelled image")
        proba = self.predict_proba(X)
        if len(proba) != len(y):
            raise ValueError(f"X has {len(proba)} samples but y has {len(y)}")
        self.conformal_scores_ = conformal_scores_of(self, proba, y)
        return self
