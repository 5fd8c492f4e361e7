"""Temperature scaling (Guo et al., 2017): one number that divides the logits so that the
probabilities of a validation set are as likely as they can be; the ranking, and so ``predict``,
never changes."""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax

__all__ = ["apply_temperature", "fit_temperature"]

# Temperatures outside this range mean the validation set says nothing useful (e.g. a handful
# of images all classified right): clip rather than make every probability 0 or 1.
_LOG_BOUNDS = (np.log(0.05), np.log(20.0))


def apply_temperature(log_proba: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities of ``softmax(log_proba / temperature)``, row by row.

    ``log_proba`` may be logits or log-probabilities: softmax ignores a constant per row.
    """
    scaled = np.asarray(log_proba, dtype=np.float64) / float(temperature)
    return np.exp(log_softmax(scaled, axis=1))


def fit_temperature(log_proba: np.ndarray, y: np.ndarray) -> float:
    """The temperature minimizing the negative log-likelihood of the labels ``y`` (class
    indices) under ``softmax(log_proba / T)``.

    Parameters
    ----------
    log_proba : ndarray of shape (n_samples, n_classes)
        Logits or log-probabilities of a held-out set (not the training images, on which a
        network is overconfident).
    y : ndarray of shape (n_samples,)
        The true class indices.

    Returns
    -------
    temperature : float
        Above 1 softens overconfident probabilities, below 1 sharpens timid ones.

    Examples
    --------
    >>> import numpy as np
    >>> from skinestimator.uncertainty import fit_temperature
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 3, 2000)
    >>> logits = rng.normal(size=(2000, 3)); logits[np.arange(2000), y] += 1.0
    >>> 3.5 < fit_temperature(4 * logits, y) < 4.5  # four times too confident
    True
    """
    log_proba = np.asarray(log_proba, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    # -inf log-probabilities (a probability of exactly 0) would make the likelihood -inf.
    log_proba = np.maximum(log_proba, np.log(1e-12))
    rows = np.arange(len(y))

    def negative_log_likelihood(log_temperature: float) -> float:
        return -float(log_softmax(log_proba / np.exp(log_temperature), axis=1)[rows, y].mean())

    found = minimize_scalar(negative_log_likelihood, bounds=_LOG_BOUNDS, method="bounded",
                            options={"xatol": 1e-4})
    return float(np.exp(found.x))
