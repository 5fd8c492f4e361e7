"""The torch dataset: arrays and paths, the shared decoded-image cache, augmentation."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from skinestimator.data import BatchAugmentation, ImageCache, ImageDataset


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


def test_batch_augmentation_draws_per_image_and_keeps_the_range():
    image = torch.zeros(3, 32, 48, dtype=torch.uint8)
    image[:, 4:12, 4:12] = 200
    batch = image.expand(16, 3, 32, 48).contiguous()
    torch.manual_seed(0)
    out = BatchAugmentation(1.0)(batch)
    assert out.shape == (16, 3, 32, 48) and out.dtype == torch.float32
    assert 0 <= out.min() and out.max() <= 1
    assert len({o.numpy().tobytes() for o in out}) == 16  # every image its own draw
    with pytest.raises(ValueError, match="strength"):
        BatchAugmentation(0.0)


def test_batch_augmentation_geometry_is_a_flip_at_tiny_strength():
    torch.manual_seed(1)
    x = torch.rand(8, 3, 20, 30)
    out = BatchAugmentation(1e-6)(x)
    for original, augmented in zip(x, out):
        flips = (original, original.flip(-1), original.flip(-2), original.flip(-1).flip(-2))
        assert min(float((augmented - f).abs().max()) for f in flips) < 1e-3
