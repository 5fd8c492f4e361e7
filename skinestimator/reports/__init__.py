"""Cross-validated evaluation reports and scikit-learn-style plot displays."""

from ._coverage import CoverageDisplay, UncertaintySummary
from ._metrics import (
    classification_metrics,
    expected_calibration_error,
    per_class_metrics,
    reliability_curve,
)
from ._plot import OneVsRestRocDisplay, ReliabilityDisplay, TrainingCurvesDisplay
from ._report import CrossValidationReport, cross_validated_report

__all__ = [
    "CoverageDisplay",
    "CrossValidationReport",
    "OneVsRestRocDisplay",
    "ReliabilityDisplay",
    "TrainingCurvesDisplay",
    "classification_metrics",
    "cross_validated_report",
    "expected_calibration_error",
    "per_class_metrics",
    "UncertaintySummary",
    "reliability_curve",
]
