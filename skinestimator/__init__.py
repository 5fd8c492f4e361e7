"""skinestimator: skin-lesion image classification as a first-class scikit-learn estimator.

The package follows the data's path (see docs/architecture.md): ``images`` (files → arrays),
``data`` (the torch dataset), ``networks`` (backbones and offline weights), the estimator,
``model_selection`` / ``reports`` / ``explain``, then ``deploy``, ``cli`` and ``web``.
"""

from ._classifier import SkinLesionClassifier
from ._runtime import keep_freed_memory
from .deploy import ModelFileError, export_onnx, load_model, read_model_card, save_model
from .explain import explain, overlay_heatmap
from .images import (
    ColorConstancy,
    ImageLoader,
    ImageReadError,
    ImageResizer,
    load_dermamnist,
    load_ham10000,
    load_image_folder,
    make_synthetic_lesions,
    read_image,
    save_image_folder,
)
from .model_selection import OptunaLesionSearchCV
from .reports import (
    CrossValidationReport,
    OneVsRestRocDisplay,
    ReliabilityDisplay,
    TrainingCurvesDisplay,
    cross_validated_report,
)

__version__ = "0.1.0"

__all__ = [
    "ColorConstancy",
    "CrossValidationReport",
    "ImageLoader",
    "ImageReadError",
    "ImageResizer",
    "ModelFileError",
    "OneVsRestRocDisplay",
    "OptunaLesionSearchCV",
    "ReliabilityDisplay",
    "SkinLesionClassifier",
    "TrainingCurvesDisplay",
    "__version__",
    "cross_validated_report",
    "explain",
    "export_onnx",
    "keep_freed_memory",
    "load_dermamnist",
    "load_ham10000",
    "load_image_folder",
    "load_model",
    "make_synthetic_lesions",
    "overlay_heatmap",
    "read_image",
    "read_model_card",
    "save_image_folder",
    "save_model",
]
