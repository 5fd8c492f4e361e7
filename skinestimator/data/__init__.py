"""Step 2 of the data's path: the torch dataset (streaming from disk, cache, augmentation)."""

from ._augment import BatchAugmentation
from ._cache import ImageCache
from ._dataset import ImageDataset, worker_errors_unwrapped, worker_original_message

__all__ = [
    "BatchAugmentation",
    "ImageCache",
    "ImageDataset",
    "worker_errors_unwrapped",
    "worker_original_message",
]
