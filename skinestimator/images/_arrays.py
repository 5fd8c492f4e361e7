"""Recognise what a user passed as ``X``: image paths, image arrays or flattened images."""

from __future__ import annotations

import math
import numbers
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


def check_path_items(X, owner: str) -> None:
    """Raise a ``ValueError`` naming every item of a sequence of paths that is not a path.

    A ``None`` or NaN (a missing value from a pandas merge) among paths would otherwise fail
    inside ``os.fspath`` with a ``TypeError`` that says neither which item nor that it is
    missing, or, first in line, make the paths look like an array. Anything that holds no path
    at all (image arrays) passes unchecked. ``owner`` names who needs the paths.
    """
    if isinstance(X, (str, bytes, os.PathLike)) or getattr(X, "ndim", 1) != 1:
        return
    try:
        items = list(X)
    except TypeError:
        return
    if not any(isinstance(item, (str, bytes, os.PathLike)) for item in items):
        return
    bad = [(i, item) for i, item in enumerate(items)
           if not isinstance(item, (str, bytes, os.PathLike))]
    if not bad:
        return
    shown = "; ".join(f"X[{i}] is {_describe_non_path(item)}" for i, item in bad[:5])
    more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
    raise ValueError(f"{shown}{more}, not an image path; {owner} needs a file path (str or "
                     "path-like) for every image")


def _describe_non_path(item) -> str:
    if item is None:
        return "None"
    if isinstance(item, numbers.Real) and math.isnan(item):
        return "NaN (a missing value)"
    return f"{item!r} of type {type(item).__name__}"


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

    Raises
    ------
    ValueError
        If ``X`` has another number of dimensions or channels, or is a 3-D array whose last
        axis is 3 or 4: that is one RGB(A) image ``(H, W, C)``, not ``H`` grey images (grey
        images 3 or 4 pixels wide pass as ``(n, H, W, 1)``).
    """
    if X.ndim == 2:
        X = unflatten_images(X, image_shape)
    elif X.ndim == 3:
        _check_not_one_colour_image(X)
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


def _check_not_one_colour_image(X) -> None:
    """Refuse a 3-D array whose last axis is 3 or 4: one RGB(A) image, not a grey batch.

    ``(n, H, W)`` is the layout of a batch of grey images, so one photo ``(H, W, 3)`` would
    otherwise be read silently as ``H`` grey images of width 3 (and a prediction would have
    ``H`` rows). Grey images that really are 3 or 4 pixels wide pass with a channel axis,
    ``(n, H, W, 1)``.

    Raises
    ------
    ValueError
        If ``X`` has three dimensions and its last axis is 3 or 4.
    """
    shape = tuple(int(v) for v in np.shape(X))
    if len(shape) == 3 and shape[-1] in (3, 4):
        kind = "RGB" if shape[-1] == 3 else "RGBA"
        raise ValueError(
            f"got an array of shape {shape}, which looks like one {kind} image (height, width, "
            f"{shape[-1]}); pass a batch of one, image[None] of shape {(1, *shape)}. A 3-D "
            "array would be read as a batch of grey images (n, height, width); to pass grey "
            f"images {shape[-1]} pixels wide add a channel axis, images[..., None] of shape "
            f"{(*shape, 1)}."
        )


# Pixel values per chunk when a batch of images is worked on in floating point: 32 MB per
# float64 copy, whatever the images' size (256 photos of 600x450 at a time took 1.1 GB).
CHUNK_ELEMENTS = 1 << 22


def resize_batch(X: np.ndarray, size: Sequence[int], *, policy: str = "stretch",
                 chunk: int | None = None) -> np.ndarray:
    """Resize ``(n, H, W, C)`` images to ``size = (height, width)`` (bilinear, antialiased).

    ``policy`` handles another aspect ratio as :func:`read_image` does for files: ``"crop"``
    keeps the centre at the target's aspect ratio, ``"pad"`` fits the whole image and fills the
    rest with black, ``"stretch"`` resizes as is. ``uint8`` stays ``uint8`` (rounded); floating
    point keeps its dtype. Works through ``chunk`` images at a time (by default as many as
    hold about four million pixel values) so that large data sets never exist as one float
    copy.

    Examples
    --------
    >>> import numpy as np
    >>> from skinestimator.images import resize_batch
    >>> wide = np.zeros((1, 10, 20, 3), dtype=np.uint8)
    >>> wide[:, :, 5:15] = 200  # a 10 x 10 lesion in the middle
    >>> resize_batch(wide, (10, 10), policy="crop")[0, :, :, 0].min()  # only the middle kept
    np.uint8(200)
    >>> resize_batch(wide, (10, 10), policy="pad")[0, :, 5, 0]  # black bands above and below
    array([  0,   0, 200, 200, 200, 200, 200,   0,   0,   0], dtype=uint8)
    """
    import torch
    import torch.nn.functional as F

    if policy not in ("crop", "pad", "stretch"):
        raise ValueError(f"policy must be 'crop', 'pad' or 'stretch', got {policy!r}")
    height, width = int(size[0]), int(size[1])
    if X.shape[1:3] == (height, width):
        return X
    source_height, source_width = X.shape[1:3]
    rows, columns = slice(None), slice(None)
    inner = (height, width)
    if policy == "crop":
        # The centre at the target's aspect ratio, as PIL's ImageOps.fit takes it from files.
        if source_width * height > width * source_height:
            keep = max(1, round(source_height * width / height))
            columns = slice((source_width - keep) // 2, (source_width - keep) // 2 + keep)
        else:
            keep = max(1, round(source_width * height / width))
            rows = slice((source_height - keep) // 2, (source_height - keep) // 2 + keep)
    elif policy == "pad":
        scale = min(height / source_height, width / source_width)
        inner = (max(1, round(source_height * scale)), max(1, round(source_width * scale)))
    # Rounded as Pillow's ImageOps.pad places files (half to even), so the bands match.
    top, left = round((height - inner[0]) * 0.5), round((width - inner[1]) * 0.5)
    out = np.zeros((len(X), height, width, X.shape[3]), dtype=X.dtype)
    if chunk is None:
        per_image = len(range(source_height)[rows]) * len(range(source_width)[columns]) * X.shape[3]
        chunk = max(1, CHUNK_ELEMENTS // max(1, per_image))
    for start in range(0, len(X), chunk):
        # A writable C-contiguous view (a copy only for read-only input such as a memmap).
        part = np.require(X[start:start + chunk, rows, columns], requirements=["C", "W"])
        part = torch.from_numpy(part).permute(0, 3, 1, 2)
        work = part.float() if X.dtype in (np.uint8, np.float16) else part
        resized = F.interpolate(work, size=inner, mode="bilinear", antialias=True,
                                align_corners=False).permute(0, 2, 3, 1)
        if X.dtype == np.uint8:
            resized = resized.round_().clamp_(0, 255).to(torch.uint8)
        out[start:start + chunk, top:top + inner[0], left:left + inner[1]] = resized.numpy()
    return out
