"""The torch ``Dataset`` feeding the network from image arrays or from files on disk."""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from skorch.dataset import Dataset as SkorchDataset

from ..images import ImageReadError, read_image
from ._cache import ImageCache

__all__ = ["ImageDataset", "worker_errors_unwrapped", "worker_original_message"]


@contextmanager
def worker_errors_unwrapped() -> Iterator[None]:
    """Re-raise an unreadable image met in a DataLoader worker with its own one-line message.

    torch re-raises a worker's exception with the worker's whole traceback as its message
    ("Caught ImageReadError in DataLoader worker process 0. Original Traceback ..."), which
    buries the file's name in 30 lines; the last line is the original message.
    """
    try:
        yield
    except ImageReadError as exc:
        if "Original Traceback" not in str(exc):
            raise
        # The traceback holds the DataLoader's iterator and so its worker processes: clearing
        # its frames lets the iterator shut them down now, in this process. Left to the
        # garbage collector, it could be finalized in a worker forked by a later prediction,
        # which then prints "AssertionError: can only test a child process" at every call.
        traceback.clear_frames(exc.__traceback__)
        error = ImageReadError(worker_original_message(str(exc)))
    else:
        return
    raise error from None


def worker_original_message(text: str) -> str:
    """The original message inside the text of an exception a DataLoader worker raised:
    the traceback's last line, without the exception's module path and name."""
    last = [line for line in text.strip().splitlines() if line.strip()][-1]
    head, separator, message = last.partition(": ")
    return message if separator and "Error" in head else last


class ImageDataset(SkorchDataset):
    """Images for the network: an in-memory array, or paths decoded lazily (and cached).

    Subclasses skorch's ``Dataset`` so that skorch's scoring callbacks find ``X`` and ``y``.

    Parameters
    ----------
    images : ndarray of shape (n, H, W, 3) or ndarray of str, shape (n,)
        Pixels (uint8 or float32, already at ``image_size``) or image file paths.
    y : ndarray of int, shape (n,), or None
        Encoded class labels (None for prediction).
    image_size : (height, width)
        Size paths are decoded to.
    resize : str
        Resize policy for paths (see :func:`skinestimator.images.read_image`).
    sample_weight : ndarray of float, shape (n,), or None
        When given, items are ``({"images": x, "sample_weight": w}, y)`` so the loss can weight
        them; otherwise ``(x, y)``.
    cache : ImageCache or None
        Where decoded files are kept between epochs.
    """

    def __init__(
        self,
        images,
        y=None,
        *,
        image_size,
        resize="crop",
        sample_weight=None,
        cache: ImageCache | None = None,
    ):
        self.X = images
        self.y = y
        self.image_size = tuple(image_size)
        self.resize = resize
        self.sample_weight = sample_weight
        self.cache = cache
        self.from_paths = images.ndim == 1
        self._len = len(images)

    def __len__(self) -> int:
        return self._len

    def load(self, index: int) -> np.ndarray:
        """The ``(H, W, 3)`` pixels of one item, without augmentation."""
        if not self.from_paths:
            return self.X[index]
        if self.cache is not None:
            image = self.cache.get(index)
            if image is not None:
                return image
        image = read_image(self.X[index], self.image_size, resize=self.resize)
        if self.cache is not None:
            self.cache.put(index, image)
        return image

    def __getitem__(self, index: int):
        # A copy of this item only where torch needs one: the images may be the caller's
        # read-only array (a memmap), which torch.from_numpy warns about.
        image = np.require(self.load(index), requirements=["C", "W"])
        image = torch.from_numpy(image).permute(2, 0, 1)
        target = self.y[index] if self.y is not None else 0
        if self.sample_weight is None:
            return image, target
        return {"images": image, "sample_weight": self.sample_weight[index]}, target
