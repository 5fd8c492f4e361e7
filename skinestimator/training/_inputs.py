"""What ``fit`` and the predictions accept as ``X``: paths, image arrays or flattened rows,
validated and brought to the network's size."""

from __future__ import annotations

import os

import numpy as np
from sklearn.utils import check_array
from sklearn.utils.validation import validate_data

from .._warnings import warn_user
from ..images import as_image_batch, image_file_size, is_path_sequence, resize_batch
from ..images._arrays import check_path_items

__all__ = ["check_images", "default_path_image_size", "forget_table_input"]

# File paths train at their own size by default, scaled down so that the shorter side is at most
# this: HAM10000's 150x200 images then train as they are (measured: docs/benchmarks.md), and a
# phone photo is not fed to the network at full resolution.
_MAX_DEFAULT_SHORT_SIDE = 224
_SIZE_SAMPLE = 64


def default_path_image_size(paths: np.ndarray) -> tuple[int, int]:
    """Median ``(height, width)`` of up to 64 evenly spaced files, shorter side capped at 224."""
    sample = paths[np.linspace(0, len(paths) - 1, min(len(paths), _SIZE_SAMPLE)).astype(int)]
    height, width = np.median([image_file_size(p) for p in sample], axis=0)
    scale = min(1.0, _MAX_DEFAULT_SHORT_SIDE / min(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def _holds_integers(X) -> bool:
    """Whether ``X`` (array, list, DataFrame or other array-like) holds integers."""
    dtypes = getattr(X, "dtypes", None)
    if dtypes is not None and not isinstance(dtypes, np.dtype):  # a DataFrame
        kinds = {getattr(dtype, "kind", "O") for dtype in dtypes}
    else:
        dtype = getattr(X, "dtype", None)
        kinds = {(dtype if isinstance(dtype, np.dtype) else np.asarray(X).dtype).kind}
    return bool(kinds) and kinds <= {"i", "u"}


def _integer_pixels_as_uint8(array: np.ndarray) -> np.ndarray:
    """Integer images, after validation made them float32, as the ``uint8`` pixels they are.

    Integer arrays hold 0–255 pixels, as ``uint8`` arrays do; left as float32 0–255 values,
    the network would read them as 0–1 intensities, and the same pixels would get other
    predictions as ``int64`` than as ``uint8``.
    """
    if array.dtype == np.uint8 or array.size == 0:
        return array
    low, high = array.min(), array.max()
    if low < 0 or high > 255:
        raise ValueError(
            f"integer image arrays must hold 0–255 pixel values, got values from {low:.0f} to "
            f"{high:.0f}; scale them to 0–255, or pass floats in [0, 1]"
        )
    return array.astype(np.uint8)


def _warn_if_not_unit_range(array: np.ndarray) -> None:
    """Float images are read as intensities in [0, 1]; say so when the values are far outside.

    The margin leaves room for resampling overshoot; 0–255 floats or standardized values are
    caught, and would otherwise train and predict without any error, only worse.
    """
    if array.dtype == np.uint8 or array.size == 0:
        return
    low, high = float(array.min()), float(array.max())  # validation refused NaN
    if low < -0.5 or high > 1.5:
        warn_user(
            f"float image arrays are read as intensities in [0, 1], but these span "
            f"[{low:.3g}, {high:.3g}]; pass 0–255 pixels as uint8 (or divide them by 255)"
        )


def forget_table_input(estimator) -> None:
    """A fit on images or paths: what an earlier fit on a table recorded no longer holds."""
    for name in ("n_features_in_", "feature_names_in_"):
        if hasattr(estimator, name):
            delattr(estimator, name)


def _stacked(images) -> np.ndarray:
    """A list of images as one array; images of different sizes are refused by name (numpy
    would say "inhomogeneous shape")."""
    try:
        return np.asarray(images)
    except ValueError:
        shapes = [np.shape(image) for image in images]
        sizes = sorted({shape for shape in shapes}, key=str)
        first = {size: shapes.index(size) for size in sizes}
        listed = ", ".join(f"{size} (X[{index}])" for size, index in list(first.items())[:4])
        raise ValueError(
            f"X is a list of images of different sizes: {listed}"
            + (" and more" if len(sizes) > 4 else "")
            + "; resize them to one size first (skinestimator.ImageResizer), or pass their "
            "file paths, which the classifier resizes itself"
        ) from None


def check_images(estimator, X, *, fitting: bool, own: bool = False):
    """Validate ``X`` for ``estimator``; return ``(images, from_paths)``.

    ``images`` is an object array of paths, or an ``(n, H, W, 3)`` uint8/float32 array at
    the network's size (after ``fit`` has set ``image_size_``). It may be the caller's own
    buffer (training and prediction only read it; a whole-set copy of HAM10000 is 0.9 GB
    as uint8, 3.6 GB as float32) unless ``own`` asks for an array of our own. A fit records
    ``n_features_in_`` (tables only) on ``estimator``, as scikit-learn's ``validate_data`` does.
    """
    if isinstance(X, (str, bytes, os.PathLike)):
        raise ValueError(
            f"X must be a sequence of image paths or an image array, got the single path "
            f"{os.fsdecode(X)!r}: pass a list, e.g. [{os.fsdecode(X)!r}]"
        )
    if hasattr(X, "__len__") and getattr(X, "ndim", 1) > 0 and len(X) == 0:
        raise ValueError("X is empty: there are no images to " +
                         ("train on" if fitting else "predict"))
    check_path_items(X, type(estimator).__name__)
    if is_path_sequence(X):
        paths = np.asarray([os.fspath(p) for p in X], dtype=object)
        if fitting:
            forget_table_input(estimator)
        return paths, True
    if not hasattr(X, "dtype") and not hasattr(X, "dtypes"):
        # A list of images becomes one array in its own dtype: check_array would make
        # float32 of uint8 pixels (4x their size) only to have them cast back.
        X = _stacked(X)
    integers = _holds_integers(X)
    ndim = X.ndim if hasattr(X, "ndim") else np.asarray(X).ndim
    if ndim == 2:  # tables (DataFrames included) get scikit-learn's full validation
        array = validate_data(estimator, X, reset=fitting,
                              dtype=(np.float32, np.float64, np.uint8), ensure_min_samples=1)
    else:
        array = check_array(
            X, allow_nd=True, dtype=(np.float32, np.float64, np.uint8), ensure_min_features=1
        )
        if fitting:
            forget_table_input(estimator)
    if integers:
        array = _integer_pixels_as_uint8(array)
    else:
        _warn_if_not_unit_range(array)
    images = as_image_batch(array, estimator.image_shape)
    if not fitting and images.shape[1:3] != tuple(estimator.image_size_):
        images = resize_batch(images, estimator.image_size_, policy=estimator.resize)
    if own and (images is array or np.shares_memory(images, array)):
        images = images.copy()
    return images, False
