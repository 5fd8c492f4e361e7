"""Recognise what a user passed as ``X``: image paths, image arrays or flattened images."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np

__all__ = ["is_path_sequence", "unflatten_images", "as_image_batch", "resize_batch"]


def is_path_sequence(X) -> bool:
    """True when ``X`` is a 1-D sequence of file paths (str or path-like).

    Examples
    --------
    >>> from skinestimator.images import is_path_sequence
    >>> is_path_sequence(["a.jpg", "b.png"]), is_path_sequence([[0.1, 0.2]])
    (True, False)
    """
    if isinstance(X, (str, bytes, os.PathLike)):
        return False
    if hasattr(X, "ndim") and getattr(X, "ndim", 1) != 1:
        return False
    if hasattr(X, "dtype") and X.dtype.kind in "US":
        return True
    try:
        items = list(X[:1]) if hasattr(X, "__getitem__") and not hasattr(X, "iloc") else None
        if items is None:
            items = list(X)[:1]
    except TypeError:
        return False
    return len(items) == 1 and isinstance(items[0], (str, os.PathLike))


def unflatten_images(X: np.ndarray, image_shape: Sequence[int] | None) -> np.ndarray:
    """Reshape ``(n, d)`` rows into images ``(n, H, W, C)``.

    With ``image_shape`` given, ``(H, W)`` or ``(H, W, C)``. Without it: ``d = s*s`` reads as an
    ``s x s`` grey image, ``d = 3*s*s`` as an ``s x s`` RGB image, anything else as a
    ``1 x d`` grey strip (so tabular data still flows through, as scikit-learn's checks need).
    """
    n, d = X.shape
    if image_shape is not None:
        shape = tuple(int(v) for v in image_shape)
        if len(shape) == 2:
            shape = (*shape, 1)
        if len(shape) != 3 or shape[2] not in (1, 3):
            raise ValueError(
                "image_shape must be (height, width) or (height, width, 1 or 3), "
                f"got {image_shape!r}"
            )
        if math.prod(shape) != d:
            raise ValueError(
                f"image_shape {tuple(image_shape)} holds {math.prod(shape)} values but X has "
                f"{d} features per row"
            )
        return X.reshape(n, *shape)
    side = math.isqrt(d)
    if side * side == d:
        return X.reshape(n, side, side, 1)
    side = math.isqrt(d // 3)
    if d % 3 == 0 and side * side * 3 == d:
        return X.reshape(n, side, side, 3)
    return X.reshape(n, 1, d, 1)


def as_image_batch(X: np.ndarray, image_shape: Sequence[int] | None = None) -> np.ndarray:
    """Bring a numeric array to ``(n, H, W, 3)``, keeping ``uint8`` as is and others as float32.

    Accepts ``(n, H, W, 3)``, ``(n, H, W, 1)``, ``(n, H, W)`` (grey) and flattened ``(n, d)``.
    Grey images are repeated over three channels because every network takes RGB.
    """
    if X.ndim == 2:
        X = unflatten_images(X, image_shape)
    elif X.ndim == 3:
        X = X[..., np.newaxis]
    elif X.ndim != 4:
        raise ValueError(
            "X must be image paths, an array of images (n, height, width[, 3]) or flattened "
            f"images (n, features); got an array of shape {X.shape}"
        )
    if X.shape[-1] not in (1, 3):
        raise ValueError(
            f"image arrays must have 1 (grey) or 3 (RGB) channels, got {X.shape[-1]} in shape "
            f"{X.shape}; convert RGBA or other modes with ImageLoader or drop the extra channels"
        )
    if X.dtype != np.uint8:
        X = X.astype(np.float32, copy=False)
    if X.shape[-1] == 1:
        X = np.repeat(X, 3, axis=-1)
    return np.ascontiguousarray(X)


def resize_batch(X: np.ndarray, size: Sequence[int], *, chunk: int = 256) -> np.ndarray:
    """Resize ``(n, H, W, C)`` images to ``size = (height, width)`` (bilinear, antialiased).

    ``uint8`` stays ``uint8`` (rounded); floating point keeps its dtype. Works through ``chunk``
    images at a time so that large data sets never exist as one float copy.
    """
    import torch
    import torch.nn.functional as F

    height, width = int(size[0]), int(size[1])
    if X.shape[1:3] == (height, width):
        return X
    out = np.empty((len(X), height, width, X.shape[3]), dtype=X.dtype)
    for start in range(0, len(X), chunk):
        # A writable C-contiguous view (a copy only for read-only input such as a memmap).
        part = np.require(X[start:start + chunk], requirements=["C", "W"])
        part = torch.from_numpy(part).permute(0, 3, 1, 2)
        work = part.float() if X.dtype in (np.uint8, np.float16) else part
        resized = F.interpolate(work, size=(height, width), mode="bilinear", antialias=True,
                                align_corners=False).permute(0, 2, 3, 1)
        if X.dtype == np.uint8:
            resized = resized.round_().clamp_(0, 255).to(torch.uint8)
        out[start:start + chunk] = resized.numpy()
    return out
