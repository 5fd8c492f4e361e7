"""skinestimator: skin-lesion image classification as a first-class scikit-learn estimator."""

from ._classifier import SkinLesionClassifier
from ._runtime import keep_freed_memory
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

__version__ = "0.1.0"

__all__ = [
    "ColorConstancy",
    "ImageLoader",
    "ImageReadError",
    "ImageResizer",
    "SkinLesionClassifier",
    "__version__",
    "keep_freed_memory",
    "load_dermamnist",
    "load_ham10000",
    "load_image_folder",
    "make_synthetic_lesions",
    "read_image",
    "save_image_folder",
]
