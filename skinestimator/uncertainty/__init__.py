"""How sure the classifier is: temperature calibration of its probabilities, conformal prediction
sets with a coverage guarantee, and the referral rule built on both.

Plain numpy / scipy on predicted probabilities, so that the classifier (``fit``,
``predict_set``), the reports, the command line and the web page share one implementation.
"""

from ._conformal import ConformalScores, conformal_thresholds, prediction_sets, set_labels
from ._referral import Referral, refer
from ._temperature import apply_temperature, fit_temperature

__all__ = [
    "ConformalScores",
    "Referral",
    "apply_temperature",
    "conformal_thresholds",
    "fit_temperature",
    "prediction_sets",
    "refer",
    "set_labels",
]
