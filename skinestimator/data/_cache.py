"""A decoded-image cache shared by the DataLoader worker processes."""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref

import numpy as np

__all__ = ["ImageCache"]


class ImageCache:
    """Fixed-size ``uint8`` images, decoded once and then read back for every later epoch.

    The images live in a memory-mapped file in a fresh temporary folder: the operating system's
    page cache keeps it in RAM while memory is free and pages it to disk for data sets larger
    than memory, and every DataLoader worker process (forked or spawned) maps the same file, so a
    JPEG decoded by one worker in epoch 1 is never decoded again. The folder is removed when the
    cache is closed or garbage-collected.

    Parameters
    ----------
    n_images : int
    image_shape : (height, width, 3)
    directory : str or None
        Where to put the temporary folder (default: the system temp dir).
    """

    def __init__(
        self, n_images: int, image_shape: tuple[int, int, int], *, directory: str | None = None
    ):
        self.shape = (int(n_images), *map(int, image_shape))
        self.folder = tempfile.mkdtemp(prefix="skinestimator-cache-", dir=directory)
        self._finalizer = weakref.finalize(self, shutil.rmtree, self.folder, True)
        self._pixels = None
        self._filled = None
        # Create both files at full size up front (sparse on most file systems).
        self._open("w+")

    def _open(self, mode: str) -> None:
        self._pixels = np.memmap(
            os.path.join(self.folder, "pixels.u8"), dtype=np.uint8, mode=mode, shape=self.shape
        )
        self._filled = np.memmap(
            os.path.join(self.folder, "filled.u8"),
            dtype=np.uint8,
            mode=mode,
            shape=(self.shape[0],),
        )

    def __getstate__(self):
        # A spawned worker re-opens the files instead of receiving a private copy of the arrays.
        state = self.__dict__.copy()
        state["_pixels"] = state["_filled"] = None
        state["_finalizer"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)

    def _ensure_open(self) -> None:
        if self._pixels is None:
            self._open("r+")

    def get(self, index: int) -> np.ndarray | None:
        """The cached image, or None if it was not stored yet."""
        self._ensure_open()
        if self._filled[index]:
            return np.array(self._pixels[index])
        return None

    def put(self, index: int, image: np.ndarray) -> None:
        """Store one decoded image (pixels first, then the flag, so readers never see half)."""
        self._ensure_open()
        self._pixels[index] = image
        self._filled[index] = 1

    def close(self) -> None:
        """Delete the cache files."""
        self._pixels = self._filled = None
        if self._finalizer is not None:
            self._finalizer()
