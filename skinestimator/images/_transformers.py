"""scikit-learn transformers for images: file paths → arrays, resizing, colour constancy."""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np
from joblib import Parallel, delayed
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from ._arrays import (
    CHUNK_ELEMENTS,
    _check_not_one_colour_image,
    check_path_items,
    is_path_sequence,
    resize_batch,
    unflatten_images,
)
from ._io import RESIZE_POLICIES, read_image

__all__ = ["ImageLoader", "ImageResizer", "ColorConstancy"]


def _check_size(size, name: str = "size") -> tuple[int, int]:
    if (
        not isinstance(size, Sequence)
        or isinstance(size, str)
        or len(size) != 2
        or not all(isinstance(v, numbers.Integral) and v >= 1 for v in size)
    ):
        raise ValueError(
            f"{name} must be a pair of positive integers (height, width), got {size!r}"
        )
    return int(size[0]), int(size[1])


def _is_empty(X) -> bool:
    """True when ``X`` is a sized collection holding nothing."""
    try:
        return len(X) == 0
    except TypeError:
        return False


class ImageLoader(TransformerMixin, BaseEstimator):
    """Read image files into an RGB ``uint8`` array ``(n, height, width, 3)`` of one size.

    Drop it first in a :class:`~sklearn.pipeline.Pipeline` so the rest of the pipeline works on
    pixels while cross-validation splits the cheap list of paths.

    Parameters
    ----------
    size : (height, width), default=(224, 224)
        Size of every output image.
    resize : {"crop", "pad", "stretch"}, default="crop"
        Resize policy when a file's aspect ratio differs from ``size``: ``"crop"`` keeps the
        aspect ratio, scales to cover and cuts the centre; ``"pad"`` scales to fit and pads with
        black; ``"stretch"`` distorts.
    n_jobs : int or None, default=None
        Threads decoding files in parallel (Pillow releases the GIL while decoding).

    Attributes
    ----------
    size_ : tuple of int
        The validated ``(height, width)``, set by ``fit``.

    See Also
    --------
    skinestimator.images.read_image : the decoding rules (EXIF orientation, colour modes).

    Examples
    --------
    >>> import numpy as np, tempfile
    >>> from skinestimator import ImageLoader, make_synthetic_lesions, save_image_folder
    >>> X, y = make_synthetic_lesions(n_samples=6, image_size=(40, 40), random_state=0)
    >>> paths = save_image_folder(X, y, tempfile.mkdtemp())
    >>> ImageLoader(size=(32, 48)).fit_transform(paths).shape
    (6, 32, 48, 3)
    """

    def __init__(
        self, *, size: tuple[int, int] = (224, 224), resize: str = "crop", n_jobs: int | None = None
    ):
        self.size = size
        self.resize = resize
        self.n_jobs = n_jobs

    def _validate(self, X):
        size = _check_size(self.size)
        if self.resize not in RESIZE_POLICIES:
            raise ValueError(f"resize must be one of {RESIZE_POLICIES}, got {self.resize!r}")
        if not isinstance(X, (str, bytes)) and getattr(X, "ndim", 1) == 1 and _is_empty(X):
            raise ValueError("ImageLoader got no image paths: X is empty")
        check_path_items(X, "ImageLoader")
        if not is_path_sequence(X):
            raise ValueError(
                "ImageLoader expects a 1-D sequence of image file paths, got "
                f"{type(X).__name__}" + (f" of shape {X.shape}" if hasattr(X, "shape") else "")
            )
        return size

    def fit(self, X, y=None):
        """Check the parameters and that ``X`` holds paths; no file is read.

        Parameters
        ----------
        X : sequence of str or path-like
        y : ignored

        Returns
        -------
        self : ImageLoader

        Raises
        ------
        ValueError
            If a parameter is invalid, or ``X`` is empty or not a 1-D sequence of paths, or an
            item of ``X`` is not a path (``None``, NaN, ...); the message gives its position.
        """
        self.size_ = self._validate(X)
        return self

    def transform(self, X) -> np.ndarray:
        """Read every file of ``X``.

        Parameters
        ----------
        X : sequence of str or path-like of length n

        Returns
        -------
        images : ndarray of shape (n, height, width, 3), dtype uint8

        Raises
        ------
        ValueError
            If a parameter is invalid, or ``X`` is empty or not a 1-D sequence of paths, or an
            item of ``X`` is not a path (``None``, NaN, ...); the message gives its position.
        ImageReadError
            Naming the first file that cannot be read.
        """
        size = self._validate(X)
        paths = list(X)
        out = np.empty((len(paths), *size, 3), dtype=np.uint8)
        if self.n_jobs in (None, 1):
            for i, path in enumerate(paths):
                out[i] = read_image(path, size, resize=self.resize)
        else:
            # Each thread writes its image straight into the output (a list of the decoded
            # images first held the data set twice); "sharedmem" keeps them threads even
            # inside a user's joblib backend of processes.
            def read_into(i: int, path) -> None:
                out[i] = read_image(path, size, resize=self.resize)

            Parallel(n_jobs=self.n_jobs, require="sharedmem")(
                delayed(read_into)(i, path) for i, path in enumerate(paths)
            )
        return out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.one_d_array = True
        tags.input_tags.string = True
        tags.requires_fit = False
        return tags


class _ArrayImageTransformer(TransformerMixin, BaseEstimator):
    """Shared fit/transform plumbing: images in any accepted layout, output in the same layout."""

    def _images_in(self, X, *, reset: bool):
        X_arr = np.asarray(X) if not hasattr(X, "iloc") else X
        if getattr(X_arr, "ndim", 0) == 2 or hasattr(X, "iloc"):
            X_arr = validate_data(self, X, reset=reset, dtype=(np.float64, np.float32, np.uint8))
            return unflatten_images(X_arr, self.image_shape), True
        from sklearn.utils import check_array

        X_arr = check_array(X, allow_nd=True, dtype=(np.float64, np.float32, np.uint8))
        if X_arr.ndim == 3:
            _check_not_one_colour_image(X_arr)
            return X_arr[..., np.newaxis], "grey"
        if X_arr.ndim != 4:
            raise ValueError(f"expected images (n, H, W[, C]) or (n, d), got shape {X_arr.shape}")
        return X_arr, False

    @staticmethod
    def _images_out(images: np.ndarray, layout) -> np.ndarray:
        if layout is True:
            return images.reshape(len(images), -1)
        if layout == "grey":
            return images[..., 0]
        return images

    def fit(self, X, y=None):
        """Validate the parameters and record the input width for 2-D input.

        Parameters
        ----------
        X : array of shape (n, H, W, C), (n, H, W) or (n, d)
            ``(n, H, W)`` is a batch of grey images; grey images 3 or 4 pixels wide must be
            passed as ``(n, H, W, 1)``.
        y : ignored

        Returns
        -------
        self

        Raises
        ------
        ValueError
            If a parameter is invalid, or ``X`` is a 3-D array whose last axis is 3 or 4 (one
            RGB(A) image: pass ``image[None]``).
        """
        self._check_params()
        self._images_in(X, reset=True)
        self.fitted_ = True
        return self

    def transform(self, X) -> np.ndarray:
        """Transform every image; the output keeps the input's layout.

        Parameters
        ----------
        X : array of shape (n, H, W, C), (n, H, W) or (n, d)

        Returns
        -------
        X_out : ndarray

        Raises
        ------
        ValueError
            If ``X`` is a 3-D array whose last axis is 3 or 4 (one RGB(A) image: pass
            ``image[None]``).
        """
        check_is_fitted(self)
        images, layout = self._images_in(X, reset=False)
        return self._images_out(self._transform_images(images), layout)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags


class ImageResizer(_ArrayImageTransformer):
    """Resize image arrays to one size (bilinear, antialiased).

    Parameters
    ----------
    size : (height, width), default=(224, 224)
        Output size.
    resize : {"crop", "pad", "stretch"}, default="stretch"
        Resize policy when an image's aspect ratio differs from ``size``, as in
        :class:`ImageLoader`: ``"crop"`` keeps the aspect ratio, scales to cover and cuts the
        centre; ``"pad"`` scales to fit and pads with black; ``"stretch"`` distorts. The
        default differs from ImageLoader's so that pipelines written before this parameter
        existed keep their output.
    image_shape : tuple or None, default=None
        Only for 2-D input ``(n, d)``: the ``(height, width[, channels])`` each row unflattens
        to. Without it a row of ``s*s`` values is an ``s x s`` grey image, ``3*s*s`` an RGB one
        and anything else a ``1 x d`` strip. 2-D input gives 2-D (flattened) output.

    Examples
    --------
    >>> import numpy as np
    >>> from skinestimator import ImageResizer
    >>> images = np.zeros((2, 28, 28, 3), dtype=np.uint8)
    >>> ImageResizer(size=(64, 64)).fit_transform(images).shape
    (2, 64, 64, 3)
    >>> from sklearn.datasets import load_digits
    >>> X = load_digits().data[:5]  # 8x8 grey images, flattened
    >>> ImageResizer(size=(16, 16), image_shape=(8, 8)).fit_transform(X).shape
    (5, 256)
    """

    def __init__(
        self, *, size: tuple[int, int] = (224, 224), resize: str = "stretch", image_shape=None
    ):
        self.size = size
        self.resize = resize
        self.image_shape = image_shape

    def _check_params(self):
        _check_size(self.size)
        if not isinstance(self.resize, str) or self.resize not in RESIZE_POLICIES:
            raise ValueError(f"resize must be one of {RESIZE_POLICIES}, got {self.resize!r}")

    def _transform_images(self, images):
        # Checked again: set_params after fit must not slip an unknown policy through.
        self._check_params()
        return resize_batch(images, _check_size(self.size), policy=self.resize)


class ColorConstancy(_ArrayImageTransformer):
    """Shades-of-grey colour constancy: remove the colour cast of the light source.

    Dermoscopy and clinical photos differ in illumination between devices; the shades-of-grey
    method (Finlayson & Trezzi, 2004) estimates the illuminant per image as the Minkowski
    ``power``-mean of each channel and rescales the channels so that it becomes neutral grey. It
    was part of the top ISIC 2018/2019 pipelines. Grey (single-channel) images pass unchanged.

    Parameters
    ----------
    power : float >= 1 or ``np.inf``, default=6
        Minkowski norm: 1 is grey-world, large values approach max-RGB and ``np.inf`` is
        max-RGB itself (the illuminant is each channel's brightest value). Any power is computed
        without overflow, also on ``uint8`` input.
    image_shape : tuple or None, default=None
        For 2-D input, as in :class:`ImageResizer`.

    Examples
    --------
    >>> import numpy as np
    >>> from skinestimator import ColorConstancy
    >>> reddish = np.zeros((1, 8, 8, 3), dtype=np.uint8) + np.array([200, 100, 100], np.uint8)
    >>> ColorConstancy().fit_transform(reddish)[0, 0, 0]
    array([141, 141, 141], dtype=uint8)
    >>> ColorConstancy(power=np.inf).fit_transform(reddish)[0, 0, 0]  # max-RGB
    array([141, 141, 141], dtype=uint8)
    """

    def __init__(self, *, power: float = 6.0, image_shape=None):
        self.power = power
        self.image_shape = image_shape

    def _check_params(self):
        power = self.power
        if (
            isinstance(power, (bool, np.bool_))
            or not isinstance(power, numbers.Real)
            or not power >= 1  # also rejects NaN
        ):
            raise ValueError(f"power must be a number >= 1 or np.inf, got {power!r}")

    def _transform_images(self, images):
        self._check_params()
        if images.shape[-1] != 3:
            return images
        # Image by image in chunks: the float64 working copies of a whole data set take 8x
        # its uint8 size several times over (HAM10000 at 150x200 in one go: over 20 GB).
        out = np.empty_like(images)
        per_chunk = max(1, CHUNK_ELEMENTS // max(1, images[0].size)) if len(images) else 1
        for start in range(0, len(images), per_chunk):
            out[start : start + per_chunk] = self._balance(images[start : start + per_chunk])
        return out

    def _balance(self, images):
        work = images.astype(np.float64)
        illuminant = _minkowski_illuminant(work, float(self.power))
        norm = np.linalg.norm(illuminant, axis=1, keepdims=True)
        gain = norm / (np.sqrt(3.0) * np.maximum(illuminant, 1e-12))
        gain[norm[:, 0] == 0] = 1.0
        work *= gain[:, np.newaxis, np.newaxis, :]
        if images.dtype == np.uint8:
            return np.clip(work + 0.5, 0, 255).astype(np.uint8)
        return work.astype(images.dtype, copy=False)


def _minkowski_illuminant(images: np.ndarray, power: float) -> np.ndarray:
    """Per image and channel, the Minkowski ``power``-mean of ``|images|``: (n, H, W, C) → (n, C).

    The values are divided by the channel's maximum before being raised to ``power``, so they lie
    in ``[0, 1]`` and cannot overflow however large ``power`` is; ``power=inf`` is the maximum.
    """
    magnitude = np.abs(images)
    peak = magnitude.max(axis=(1, 2), initial=0.0)
    if np.isinf(power):
        return peak
    scale = np.where(peak > 0, peak, 1.0)
    ratio = magnitude / scale[:, np.newaxis, np.newaxis, :]
    with np.errstate(under="ignore"):
        mean = np.mean(ratio**power, axis=(1, 2))
    return np.where(peak > 0, scale * mean ** (1.0 / power), 0.0)
