"""The training engine's own options (skinestimator/training/): precision and epoch order."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from skinestimator import SkinLesionClassifier, make_synthetic_lesions
from skinestimator.training._net import EpochSampler

FAST = dict(backbone="seed_cnn", max_epochs=6, batch_size=16, augment=False,
            validation_fraction=None, random_state=0)


def test_bf16_learns_the_synthetic_task_on_the_cpu(lesions_train, lesions_test):
    X, y = lesions_train
    X_test, y_test = lesions_test
    clf = SkinLesionClassifier(**FAST, precision="bf16", device="cpu").fit(X, y)
    assert clf.score(X_test, y_test) >= 0.9
    proba = clf.predict_proba(X_test)
    assert proba.dtype == np.float64 and np.allclose(proba.sum(axis=1), 1.0)
    # The weights stay float32: bf16 is the arithmetic of the forward pass only.
    assert all(p.dtype == torch.float32 for p in clf.net_.module_.parameters())
    full = SkinLesionClassifier(**FAST, device="cpu").fit(X, y)
    assert not np.array_equal(proba, full.predict_proba(X_test))  # it really ran in bf16
    np.testing.assert_allclose(proba, full.predict_proba(X_test), atol=0.25)


def test_float16_needs_a_cuda_gpu(lesions_train):
    X, y = lesions_train
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    with pytest.raises(ValueError, match="precision='16-mixed' needs a CUDA GPU.*'bf16'"):
        SkinLesionClassifier(**FAST, precision="16-mixed").fit(X, y)
    with pytest.raises(ValueError, match="precision must be '32', 'bf16' or '16-mixed'"):
        SkinLesionClassifier(**FAST, precision="fp8").fit(X, y)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["bf16", "16-mixed"])
def test_reduced_precision_learns_on_a_gpu(lesions_train, lesions_test, precision):
    X, y = lesions_train
    X_test, y_test = lesions_test
    clf = SkinLesionClassifier(**FAST, precision=precision, device="cuda").fit(X, y)
    assert clf.score(X_test, y_test) >= 0.9


def test_the_epoch_order_depends_only_on_seed_and_epoch():
    data = list(range(50))
    first = EpochSampler(data, seed=3)
    orders = [list(first) for _ in range(3)]
    assert orders[0] != orders[1] and sorted(orders[2]) == data
    resumed = EpochSampler(data, seed=3, first_epoch=2)  # a run resumed before epoch 3
    assert list(resumed) == orders[2]
    shards = [list(EpochSampler(data, seed=3, num_replicas=2, rank=r)) for r in (0, 1)]
    assert sorted(shards[0] + shards[1]) == data and not set(shards[0]) & set(shards[1])


def test_warm_start_trains_with_the_hyperparameters_set_since(lesions_train, tmp_path):
    X, y = lesions_train
    clf = SkinLesionClassifier(**dict(FAST, max_epochs=2)).fit(X, y)
    before = {k: v.clone() for k, v in clf.net_.module_.state_dict().items()}
    clf.set_params(warm_start=True, lr=1e-9).fit(X, y)  # used to train on at lr 1e-3
    moved = max(float((before[k] - v).abs().max())
                for k, v in clf.net_.module_.state_dict().items()
                if v.is_floating_point() and "running" not in k)
    assert moved < 1e-6
    assert [row["epoch"] for row in clf.history_] == [1, 2, 3, 4]  # the history goes on
    assert all(group["lr"] <= 1e-9 for group in clf.net_.optimizer_.param_groups)
    with pytest.raises(ValueError, match="changed backbone from 'seed_cnn' to "
                                         "'efficientnet_lite0'; fit with warm_start=False"):
        clf.set_params(backbone="efficientnet_lite0").fit(X, y)
    assert clf.backbone == "efficientnet_lite0" and len(clf.history_) == 4  # model kept


def test_a_loaded_model_continues_its_history(lesions_train, tmp_path):
    from skinestimator import load_model, save_model

    X, y = lesions_train
    clf = SkinLesionClassifier(**dict(FAST, max_epochs=2)).fit(X, y)
    save_model(clf, tmp_path / "m.skin")
    loaded = load_model(tmp_path / "m.skin").set_params(warm_start=True)
    loaded.fit(X, y)
    assert [row["epoch"] for row in loaded.history_] == [1, 2, 3, 4]


def test_labels_of_mixed_types_are_refused_by_name():
    X, _ = make_synthetic_lesions(n_samples=20, image_size=(16, 16), random_state=0)
    y = np.array(["nevus", 1] * 10, dtype=object)
    with pytest.raises(ValueError, match=r"y mixes string labels with int labels \(y\[0\] is "
                                         r"'nevus', y\[1\] is 1\)"):
        SkinLesionClassifier(backbone="seed_cnn", max_epochs=1).fit(X, y)


def test_a_list_of_images_of_different_sizes_names_the_sizes():
    images = [np.zeros((10, 10, 3)), np.zeros((12, 14, 3)), np.zeros((10, 10, 3))]
    with pytest.raises(ValueError, match=r"different sizes: \(10, 10, 3\) \(X\[0\]\), "
                                         r"\(12, 14, 3\) \(X\[1\]\); resize them"):
        SkinLesionClassifier(backbone="seed_cnn", max_epochs=1).fit(images, ["a", "b", "a"])
