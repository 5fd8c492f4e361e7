"""When the classifier should say "uncertain: refer" instead of a condition."""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np

__all__ = ["Referral", "refer"]


@dataclass(frozen=True)
class Referral:
    """The referral rule: an image is referred when its prediction set holds more than
    ``max_set_size`` conditions or its most probable condition has a probability under
    ``min_probability``.

    Parameters
    ----------
    max_set_size : int, default=1
        1 refers every image whose set holds two or more conditions at the coverage asked.
    min_probability : float, default=0.5
        0 switches the probability rule off.
    """

    max_set_size: int = 1
    min_probability: float = 0.5

    def __post_init__(self):
        if isinstance(self.max_set_size, bool) or not isinstance(self.max_set_size, Integral) \
                or self.max_set_size < 1:
            raise ValueError(f"max_set_size must be a positive integer, got "
                             f"{self.max_set_size!r}")
        if isinstance(self.min_probability, bool) or not isinstance(self.min_probability, Real) \
                or not 0 <= self.min_probability <= 1:
            raise ValueError(f"min_probability must be between 0 and 1, got "
                             f"{self.min_probability!r}")


def refer(proba: np.ndarray, sets: np.ndarray, rule: Referral = Referral()) -> np.ndarray:
    """Boolean per image: True for "uncertain: refer" under ``rule``.

    Examples
    --------
    >>> import numpy as np
    >>> from skinestimator.uncertainty import Referral, refer
    >>> proba = np.array([[0.9, 0.1], [0.55, 0.45], [0.45, 0.55]])
    >>> sets = np.array([[True, False], [True, True], [False, True]])
    >>> refer(proba, sets).tolist()
    [False, True, False]
    >>> refer(proba, sets, Referral(max_set_size=2, min_probability=0.6)).tolist()
    [False, True, True]
    """
    proba = np.asarray(proba)
    return (np.asarray(sets).sum(axis=1) > rule.max_set_size) | (
        proba.max(axis=1) < rule.min_probability)
