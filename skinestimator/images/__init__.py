"""Step 1 of the data's path: image files → RGB arrays, and scikit-learn image transformers."""

from ._arrays import as_image_batch, is_path_sequence, resize_batch, unflatten_images
from ._datasets import (
    DERMAMNIST_CLASSES,
    IMAGE_EXTENSIONS,
    load_dermamnist,
    load_ham10000,
    load_image_folder,
    make_synthetic_lesions,
    save_image_folder,
)
from ._io import RESIZE_POLICIES, ImageReadError, image_file_size, read_image
from ._transformers import ColorConstancy, ImageLoader, ImageResizer

__all__ = [
    "ColorConstancy",
    "DERMAMNIST_CLASSES",
    "IMAGE_EXTENSIONS",
    "ImageLoader",
    "ImageReadError",
    "ImageResizer",
    "RESIZE_POLICIES",
    "as_image_batch",
    "image_file_size",
    "is_path_sequence",
    "load_dermamnist",
    "load_ham10000",
    "load_image_folder",
    "make_synthetic_lesions",
    "read_image",
    "resize_batch",
    "save_image_folder",
    "unflatten_images",
]
