"""Decode one image file into an RGB ``uint8`` array of a fixed size.

Everything that reads pixels from disk goes through :func:`read_image`, so the loader transformer,
the streaming torch dataset, the command line and the web page share one colour and resize policy.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["ImageReadError", "image_file_size", "read_image", "RESIZE_POLICIES"]

RESIZE_POLICIES = ("crop", "pad", "stretch")

# Pillow's decompression-bomb guard stays on: Image.MAX_IMAGE_PIXELS is never changed here.
_PIL_ERRORS = (
    OSError,
    UnidentifiedImageError,
    Image.DecompressionBombError,
    SyntaxError,
    ValueError,
)


class ImageReadError(ValueError):
    """An image file is missing, unreadable, corrupt or of an unsupported kind.

    The message always names the file.
    """


# EXIF orientations 5-8 rotate the picture by 90 degrees: height and width swap.
_TRANSPOSING_ORIENTATIONS = {5, 6, 7, 8}


@contextmanager
def _opened(name: str) -> Iterator[Image.Image]:
    """``Image.open(name)``, every failure turned into an ``ImageReadError`` naming the file."""
    try:
        with Image.open(name) as image:
            yield image
    except FileNotFoundError:
        raise ImageReadError(f"image file not found: {name!r}") from None
    except IsADirectoryError:
        raise ImageReadError(f"expected an image file but got a directory: {name!r}") from None
    except _PIL_ERRORS as exc:
        raise ImageReadError(f"cannot read image {name!r}: {exc}") from exc


def image_file_size(path: str | os.PathLike) -> tuple[int, int]:
    """The ``(height, width)`` :func:`read_image` would return for ``size=None``.

    Only the file's header is read (no pixel decoding); the EXIF orientation is honoured.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from PIL import Image
    >>> from skinestimator.images import image_file_size
    >>> path = os.path.join(tempfile.mkdtemp(), "wide.png")
    >>> Image.fromarray(np.zeros((40, 60, 3), dtype=np.uint8)).save(path)
    >>> image_file_size(path)
    (40, 60)
    """
    with _opened(os.fspath(path)) as image:
        width, height = image.size
        if _is_transposed(image):
            width, height = height, width
        return int(height), int(width)


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB, compositing transparency over white."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # Pillow's own conversion clips >255 to white. Each range below is fixed, never the
        # image's own maximum: stretching to it made a dark image as bright as a light one.
        values = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0)
        if mode.startswith("I;16"):
            top = 65535.0
        elif mode == "I":
            # 32-bit integers hold 8-bit or 16-bit data; only 0-255 fits the 8-bit range.
            in_8_bit = values.size == 0 or (values.min() >= 0 and values.max() <= 255)
            top = 255.0 if in_8_bit else 65535.0
        else:
            # Floats are either 0-1 (the usual scientific convention) or 0-255.
            top = 1.0 if values.size == 0 or values.max() <= 1.0 else 255.0
        values = np.clip(values, 0.0, top)
        grey = np.clip(values / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _resize(image: Image.Image, size: tuple[int, int] | None, policy: str) -> Image.Image:
    if size is None:
        return image
    height, width = size
    if image.size == (width, height):
        return image
    if policy == "crop":
        return ImageOps.fit(image, (width, height), method=Image.Resampling.BICUBIC)
    if policy == "pad":
        return ImageOps.pad(
            image, (width, height), method=Image.Resampling.BICUBIC, color=(0, 0, 0)
        )
    return image.resize((width, height), resample=Image.Resampling.BICUBIC)


def _draft(image: Image.Image, size: tuple[int, int]) -> None:
    """Let libjpeg decode at 1/2, 1/4 or 1/8 scale when the target ``size`` is much smaller.

    Large clinical photos then cost a fraction of a full decode. ``size`` is the displayed
    ``(height, width)``, but the file's pixels are stored before the EXIF rotation: for the
    transposing orientations 5-8 the stored width must cover the displayed height and vice versa.
    Pillow picks the largest reduction whose result still covers the requested size in both
    dimensions, which is all that every resize policy needs (none of them then upscales).
    """
    height, width = size
    if _is_transposed(image):
        height, width = width, height
    image.draft("RGB", (width, height))


def _is_transposed(image: Image.Image) -> bool:
    """Whether the file's EXIF orientation (tag 0x0112) swaps its stored height and width."""
    return image.getexif().get(0x0112) in _TRANSPOSING_ORIENTATIONS


def read_image(
    path: str | os.PathLike,
    size: Sequence[int] | None = None,
    *,
    resize: str = "crop",
) -> np.ndarray:
    """Read an image file as an RGB ``uint8`` array of shape ``(height, width, 3)``.

    Parameters
    ----------
    path : str or path-like
        The image file (any format Pillow reads: JPEG, PNG, TIFF, BMP, WebP, ...).
    size : (height, width) or None, default=None
        Output size. ``None`` keeps the file's own size.
    resize : {"crop", "pad", "stretch"}, default="crop"
        How to reach ``size`` when the aspect ratio differs: ``"crop"`` scales the image to
        cover the target and cuts the centre (no distortion, borders lost); ``"pad"`` scales it
        to fit inside and pads with black (nothing lost); ``"stretch"`` distorts it.

    Returns
    -------
    image : ndarray of shape (height, width, 3), dtype uint8

    Raises
    ------
    ImageReadError
        If the file is missing, not an image, truncated or corrupt, or larger than Pillow's
        decompression-bomb limit. The message names the file.

    Notes
    -----
    The EXIF orientation tag is honoured (phone photos come out upright). Greyscale, palette,
    CMYK, 16-bit, 32-bit integer and floating-point images become RGB; transparency is
    composited over white. High bit depths map to 0-255 by a fixed range, never by the
    image's own maximum, so a dark image stays dark:

    - 16-bit (``I;16``): 0-65535, divided by 257.
    - 32-bit integer (``I``): kept as is when every value lies in 0-255 (8-bit data), else read
      as 16-bit data, 0-65535 divided by 257 (values outside clipped).
    - floating point (``F``): 0-1 scaled by 255 when no value exceeds 1, else 0-255 as is
      (values outside clipped; NaN becomes 0).

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from PIL import Image
    >>> from skinestimator.images import read_image
    >>> path = os.path.join(tempfile.mkdtemp(), "grey.png")
    >>> Image.fromarray(np.full((40, 60), 128, dtype=np.uint8)).save(path)
    >>> read_image(path, size=(32, 32)).shape
    (32, 32, 3)
    """
    if resize not in RESIZE_POLICIES:
        raise ValueError(f"resize must be one of {RESIZE_POLICIES}, got {resize!r}")
    with _opened(os.fspath(path)) as image:
        if size is not None and image.format == "JPEG":
            _draft(image, (int(size[0]), int(size[1])))
        image.load()
        image = ImageOps.exif_transpose(image)
        image = _to_rgb(image)
        image = _resize(image, None if size is None else (int(size[0]), int(size[1])), resize)
        return np.asarray(image, dtype=np.uint8).copy()
