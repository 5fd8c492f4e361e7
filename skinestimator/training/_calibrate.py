"""After training: the temperature that calibrates the probabilities, and the conformal scores
that prediction sets are drawn from, both measured on the validation split ``fit`` held out."""

from __future__ import annotations

import warnings

import numpy as np

from ..uncertainty import ConformalScores, apply_temperature, fit_temperature

__all__ = ["calibrate", "conformal_scores_of"]


def _uncalibrated_proba(net, data) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return net.predict_proba(data).astype(np.float64)


def calibrate(estimator, valid_data) -> None:
    """Set ``temperature_`` and ``conformal_scores_`` from ``valid_data`` (None: no validation
    split, so temperature 1 and no scores; :meth:`fit_conformal` can add them)."""
    net = estimator.net_
    estimator.temperature_ = 1.0
    estimator.conformal_scores_ = None
    net.temperature = 1.0
    if valid_data is None or len(valid_data) == 0:
        return
    proba = _uncalibrated_proba(net, valid_data)
    labels = np.asarray(valid_data.y, dtype=np.int64)
    if estimator.calibration == "temperature":
        log_proba = np.log(np.clip(proba, 1e-12, None))
        estimator.temperature_ = fit_temperature(log_proba, labels)
        proba = apply_temperature(log_proba, estimator.temperature_)
        net.temperature = estimator.temperature_
    estimator.conformal_scores_ = ConformalScores.from_proba(proba, labels)


def conformal_scores_of(estimator, proba: np.ndarray, y) -> ConformalScores:
    """The scores of calibration images with (calibrated) probabilities ``proba`` and labels
    ``y`` (original class labels)."""
    y = np.asarray(y)
    unseen = np.setdiff1d(np.unique(y), estimator.classes_)
    if unseen.size:
        raise ValueError(f"y has classes {unseen.tolist()} that the classifier was not fitted on")
    return ConformalScores.from_proba(proba, np.searchsorted(estimator.classes_, y))
