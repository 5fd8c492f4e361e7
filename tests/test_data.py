"""The torch dataset: arrays and paths, the shared decoded-image cache, augmentation."""

from __future__ import annotations

import pickle

import numpy as np
import torch

from skinestimator.data import ImageCache, ImageDataset, make_augmentation


def test_dataset_from_paths_uses_the_cache(lesion_folder, tmp_path):
    _, paths, _ = lesion_folder
    cache = ImageCache(4, (32, 32, 3), directory=str(tmp_path))
    data = ImageDataset(paths[:4], np.arange(4), image_size=(32, 32), cache=cache)
    first, target = data[2]
    assert first.shape == (3, 32, 32) and first.dtype == torch.uint8 and target == 2
    assert cache.get(2) is not None and cache.get(1) is None
    # A copy of the dataset (as a spawned worker gets) reads the same cache files.
    clone = pickle.loads(pickle.dumps(data))
    np.testing.assert_array_equal(clone.cache.get(2), cache.get(2))
    cache.close()
    assert not any(tmp_path.iterdir())  # the cache files are gone


def test_dataset_items_with_sample_weight():
    images = np.zeros((3, 8, 8, 3), dtype=np.uint8)
    data = ImageDataset(images, np.array([0, 1, 1]), image_size=(8, 8),
                        sample_weight=np.array([1.0, 2.0, 3.0], dtype=np.float32))
    x, y = data[1]
    assert set(x) == {"images", "sample_weight"} and x["sample_weight"] == 2.0 and y == 1


def test_augmentation_keeps_shape_and_dtype_and_varies():
    transform = make_augmentation(1.0, (32, 32))
    assert make_augmentation(0.0, (32, 32)) is None
    image = torch.zeros(3, 32, 32, dtype=torch.uint8)
    image[:, 4:12, 4:12] = 200
    torch.manual_seed(0)
    outputs = [transform(image) for _ in range(8)]
    assert all(o.shape == image.shape and o.dtype == torch.uint8 for o in outputs)
    assert len({o.numpy().tobytes() for o in outputs}) > 1
