"""skinestimator: skin-lesion image classification as a first-class scikit-learn estimator.

The package follows the data's path (see docs/architecture.md): ``images`` (files → arrays),
``data`` (the torch dataset), ``networks`` (backbones and offline weights), the estimator,
``model_selection`` / ``reports`` / ``explain``, then ``deploy``, ``cli`` and ``web``.
"""

import importlib
from typing import TYPE_CHECKING

# Imported now, unlike the names below: the function `explain` shares its name with the
# subpackage, and importing a subpackage later binds its name in this namespace, over a
# function bound lazily before. (It loads numpy only.)
from .explain import explain, overlay_heatmap

# Where each public name lives. The names are imported on first use (PEP 562, as SciPy and
# scikit-image do), because the estimator's module loads torch, which takes seconds: the
# command line's --help and `info`, and `from skinestimator import read_image`, do not need it.
_PUBLIC_MODULES = {
    "SkinLesionClassifier": "._classifier",
    "keep_freed_memory": "._runtime",
    "ModelFileError": ".deploy",
    "export_onnx": ".deploy",
    "load_model": ".deploy",
    "read_model_card": ".deploy",
    "save_model": ".deploy",
    "ColorConstancy": ".images",
    "ImageLoader": ".images",
    "ImageReadError": ".images",
    "ImageResizer": ".images",
    "load_dermamnist": ".images",
    "load_ham10000": ".images",
    "load_image_folder": ".images",
    "make_synthetic_lesions": ".images",
    "read_image": ".images",
    "save_image_folder": ".images",
    "OptunaLesionSearchCV": ".model_selection",
    "CrossValidationReport": ".reports",
    "OneVsRestRocDisplay": ".reports",
    "ReliabilityDisplay": ".reports",
    "TrainingCurvesDisplay": ".reports",
    "cross_validated_report": ".reports",
}

if TYPE_CHECKING:  # what type checkers and IDEs see
    from ._classifier import SkinLesionClassifier
    from ._runtime import keep_freed_memory
    from .deploy import ModelFileError, export_onnx, load_model, read_model_card, save_model
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


def __getattr__(name: str):
    module = _PUBLIC_MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


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
