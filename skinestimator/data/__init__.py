"""Step 2 of the data's path: the torch dataset (streaming from disk, cache, augmentation)."""

from ._cache import ImageCache
from ._dataset import ImageDataset, make_augmentation

__all__ = ["ImageCache", "ImageDataset", "make_augmentation"]
