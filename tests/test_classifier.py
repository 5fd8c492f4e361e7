"""SkinLesionClassifier: it learns, it is a proper scikit-learn estimator, it fails clearly."""

from __future__ import annotations

import pickle
import warnings

import joblib
import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.metrics import accuracy_score
from sklearn.model_selection import GridSearchCV, GroupKFold, cross_val_score
from sklearn.pipeline import Pipeline, make_pipeline
from skorch.callbacks import Callback

from skinestimator import (
    ColorConstancy,
    ImageLoader,
    ImageReadError,
    SkinLesionClassifier,
    load_ham10000,
    make_synthetic_lesions,
    read_image,
    save_image_folder,
)
from skinestimator.training._fit import holdout
from skinestimator.training._head import trains_on_cached_features
from skinestimator.training._weights import sample_weights
from tests.conftest import peak_memory, require_ham10000, tiny_classifier

SEED_CNN = {"backbone": "seed_cnn", "max_epochs": 6, "batch_size": 16, "augment": False,
            "validation_fraction": None, "random_state": 0}


# ---------------------------------------------------------------- it learns
def test_seed_cnn_learns_the_synthetic_task(lesions_train, lesions_test):
    X, y = lesions_train
    clf = SkinLesionClassifier(backbone="seed_cnn", max_epochs=10, random_state=0).fit(X, y)
    X_test, y_test = lesions_test
    assert accuracy_score(y_test, clf.predict(X_test)) >= 0.9
    assert [row["epoch"] for row in clf.history_] == list(range(1, len(clf.history_) + 1))
    assert {"train_loss", "valid_loss", "valid_bacc"} <= set(clf.history_[-1])


def test_pretrained_lite0_learns_the_synthetic_task(lesions_train, lesions_test):
    X, y = lesions_train
    clf = SkinLesionClassifier(max_epochs=3, image_size=64, random_state=0).fit(X, y)
    X_test, y_test = lesions_test
    assert accuracy_score(y_test, clf.predict(X_test)) >= 0.9
    assert clf.image_size_ == (64, 64)  # an int image_size means a square


def test_head_only_training_changes_only_the_head(lesions_train):
    from skinestimator.networks import build_network

    X, y = lesions_train
    clf = SkinLesionClassifier(finetune="head", max_epochs=1, validation_fraction=None,
                               random_state=0).fit(X[:40], y[:40])
    reference = build_network("efficientnet_lite0", 3).state_dict()
    trained = clf.net_.module_.state_dict()
    assert torch.equal(trained["body.conv_stem.weight"], reference["body.conv_stem.weight"])
    # Frozen batch-norm layers keep their ImageNet statistics while the head trains.
    assert torch.equal(trained["body.bn2.running_mean"], reference["body.bn2.running_mean"])
    assert not torch.equal(trained["body.classifier.weight"], reference["body.classifier.weight"])


# ---------------------------------------------------------------- inputs
def test_fit_from_paths_equals_fit_from_arrays(lesion_folder):
    _, paths, y = lesion_folder
    params = dict(SEED_CNN, max_epochs=2, num_workers=0)
    from_paths = SkinLesionClassifier(**params, image_size=(32, 32)).fit(paths, y)
    arrays = ImageLoader(size=(32, 32)).transform(paths)
    from_arrays = SkinLesionClassifier(**params).fit(arrays, y)
    np.testing.assert_allclose(from_paths.predict_proba(paths), from_arrays.predict_proba(arrays),
                               atol=1e-6)


def test_file_paths_train_at_their_own_size_capped_at_224(tmp_path):
    """Without image_size, files train at their median size, shorter side at most 224 px."""
    X, y = make_synthetic_lesions(n_samples=12, image_size=(30, 40), n_classes=2, random_state=0)
    small = save_image_folder(X, y, tmp_path / "small")
    clf = SkinLesionClassifier(**dict(SEED_CNN, max_epochs=1, num_workers=0,
                                      validation_fraction=None))
    assert clf.fit(small, y).image_size_ == (30, 40)  # never upscaled
    big = []
    for i, image in enumerate(X):  # 600x800 "photos", same content
        big.append(tmp_path / f"big_{i}.png")
        Image.fromarray(image).resize((800, 600)).save(big[-1])
    assert clf.fit([str(p) for p in big], y).image_size_ == (224, 299)
    assert clf.predict([str(p) for p in big]).shape == (12,)


class _DeleteFilesAfterFirstEpoch(Callback):
    def __init__(self, paths):
        self.paths = paths

    def on_epoch_end(self, net, **kwargs):
        if len(net.history) == 1:
            for path in self.paths:
                path.unlink()


def test_training_from_paths_decodes_each_file_once(lesion_folder, tmp_path):
    """With the image cache, files are not read again after the first epoch."""
    import shutil

    root, paths, y = lesion_folder
    copies = []
    for path in paths[:40]:
        copy = tmp_path / f"{len(copies)}.png"
        shutil.copy(path, copy)
        copies.append(copy)
    clf = SkinLesionClassifier(**dict(SEED_CNN, max_epochs=3, num_workers=1,
                                      validation_fraction=0.25),
                               image_size=(32, 32),
                               callbacks=[_DeleteFilesAfterFirstEpoch(copies)])
    clf.fit([str(c) for c in copies], y[:40])  # epochs 2 and 3 run without the files
    assert len(clf.history_) == 3
    without_cache = clone(clf).set_params(image_cache=False, callbacks=None)
    with pytest.raises(ImageReadError):
        without_cache.fit([str(c) for c in copies], y[:40])


@pytest.mark.parametrize("layout", ["grey", "grey_channel", "float", "flat_with_shape"])
def test_array_layouts(lesions_train, layout):
    X, y = lesions_train
    X = X[:40]
    if layout == "grey":
        X = X.mean(axis=-1).astype(np.uint8)
    elif layout == "grey_channel":
        X = X[..., :1]
    elif layout == "float":
        X = X.astype(np.float32) / 255
    params = dict(SEED_CNN, max_epochs=1)
    if layout == "flat_with_shape":
        X = X.reshape(40, -1)
        params["image_shape"] = (32, 32, 3)
    clf = SkinLesionClassifier(**params).fit(X, y[:40])
    assert clf.predict_proba(X).shape == (40, 3)
    assert clf.image_size_ == (32, 32)


def test_digits_as_8x8_images():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    clf = SkinLesionClassifier(backbone="seed_cnn", image_shape=(8, 8), max_epochs=6,
                               validation_fraction=None, augment=False, random_state=0)
    clf.fit(X[:1200] / 16, y[:1200])
    assert clf.n_features_in_ == 64
    assert clf.score(X[1200:] / 16, y[1200:]) > 0.9


def test_prediction_inputs_are_resized_to_the_training_size(lesions_train):
    X, y = lesions_train
    clf = SkinLesionClassifier(**dict(SEED_CNN, max_epochs=1)).fit(X[:30], y[:30])
    bigger = np.repeat(np.repeat(X[:4], 2, axis=1), 2, axis=2)
    assert clf.predict(bigger).shape == (4,)


def test_string_labels_give_string_predictions(lesions_train):
    X, y = lesions_train
    clf = SkinLesionClassifier(**SEED_CNN).fit(X[:60], y[:60])
    predictions = clf.predict(X[:5])
    assert predictions.dtype == y.dtype and set(predictions) <= set(y)
    integer = SkinLesionClassifier(**SEED_CNN).fit(X[:60], np.arange(60) % 3 + 10)
    assert set(integer.predict(X[:5])) <= {10, 11, 12}


def test_corrupt_file_error_names_the_file(lesion_folder, tmp_path):
    _, paths, y = lesion_folder
    bad = tmp_path / "ISIC_0024306.jpg"
    bad.write_bytes(b"not an image at all")
    paths = [*paths[:20], str(bad)]
    with pytest.raises(ImageReadError, match="ISIC_0024306.jpg"):
        SkinLesionClassifier(**SEED_CNN, image_size=(32, 32)).fit(paths, [*y[:20], y[0]])


@pytest.mark.parametrize(
    "params, message",
    [
        ({"max_epochs": 0}, "max_epochs must be a positive integer"),
        ({"lr": -1}, "lr must be a finite positive number"),
        ({"lr": float("inf")}, "lr must be a finite positive number"),
        ({"device": "tpu"}, "device must be 'auto' or a torch device"),
        # Backends torch knows but this build lacks used to fail deep inside training.
        ({"device": "xla"}, "device='xla' is not usable with this torch installation"),
        ({"device": "meta"}, "device='meta' holds no data"),
        pytest.param({"device": "mps"}, "no Apple MPS GPU",
                     marks=pytest.mark.skipif(torch.backends.mps.is_available(),
                                              reason="this machine has MPS")),
        ({"tta": "yes"}, "tta must be True or False"),
        ({"pretrained": "no"}, "pretrained must be True or False"),
        ({"image_cache": 5}, "image_cache must be True, False or a folder"),
        ({"image_size": (True, 8)}, "image_size must be"),
        ({"callbacks": "x"}, "callbacks must be None or a list of skorch callbacks"),
        ({"backbone": "no_such_net"}, "unknown backbone 'no_such_net'"),
        ({"finetune": "some"}, "finetune must be"),
        ({"image_size": (32,)}, "image_size must be"),
        ({"validation_fraction": 1.5}, "validation_fraction must be"),
        ({"class_weight": "even"}, "class_weight must be"),
        ({"optimizer": "rmsprop"}, "optimizer must be one of"),
        ({"augment": 2.0}, "augment must be"),
        ({"logit_adjustment": -1.0}, "logit_adjustment must be a number >= 0"),
        ({"ema_decay": 1.0}, r"ema_decay must be None or a number in \(0, 1\)"),
        ({"color_constancy": 0.5}, "color_constancy must be None or a finite number >= 1"),
        ({"color_constancy": float("inf")}, "color_constancy must be None or a finite number"),
        ({"color_constancy": "6"}, "color_constancy must be None or a finite number >= 1"),
    ],
)
def test_bad_parameters_are_reported_in_fit(lesions_train, params, message):
    X, y = lesions_train
    clf = SkinLesionClassifier(**dict(SEED_CNN, **params))  # __init__ never validates
    with pytest.raises(ValueError, match=message):
        clf.fit(X[:10], y[:10])


def test_bad_inputs_are_reported(lesions_train):
    X, y = lesions_train
    clf = SkinLesionClassifier(**SEED_CNN)
    with pytest.raises(ValueError, match="1 sample"):
        clf.fit(X[:1], y[:1])
    with pytest.raises(ValueError, match="1 class"):
        clf.fit(X[:10], ["nevus"] * 10)
    with pytest.raises(ValueError, match="channels"):
        clf.fit(np.zeros((4, 8, 8, 4), dtype=np.uint8), [0, 1, 0, 1])
    with pytest.raises(ValueError, match="samples"):
        clf.fit(X[:10], y[:9])
    clf.fit(X[:20], y[:20])
    with pytest.raises(ValueError, match=r"single path 'photo.jpg': pass a list"):
        clf.predict("photo.jpg")
    with pytest.raises(ValueError, match="X is empty: there are no images to predict"):
        clf.predict([])
    # Missing values among paths (a pandas merge) used to end in os.fspath's TypeError.
    with pytest.raises(ValueError, match=r"X\[0\] is None; X\[2\] is NaN \(a missing value\), "
                                         "not an image path"):
        clf.predict([None, "a.jpg", float("nan")])


def test_image_cache_folder_is_created(lesion_folder, tmp_path):
    _, paths, y = lesion_folder
    folder = tmp_path / "new" / "cache"
    clf = SkinLesionClassifier(**dict(SEED_CNN, max_epochs=1), image_size=(32, 32),
                               num_workers=0, image_cache=folder)
    clf.fit(paths[:20], y[:20])
    assert folder.is_dir() and clf.predict(paths[:2]).shape == (2,)


def test_integer_arrays_are_pixels_like_uint8(lesions_train):
    X, y = lesions_train
    clf = SkinLesionClassifier(**dict(SEED_CNN, max_epochs=2)).fit(X[:60], y[:60])
    as_uint8 = clf.predict_proba(X[60:70])
    np.testing.assert_allclose(clf.predict_proba(X[60:70].astype(np.int64)), as_uint8,
                               atol=1e-6)
    np.testing.assert_allclose(clf.predict_proba(X[60:70].tolist()), as_uint8, atol=1e-6)
    with pytest.raises(ValueError, match="0–255 pixel values, got values from -1 to 300"):
        clf.predict(np.where(X[:2] > 128, 300, -1))
    with pytest.warns(UserWarning, match=r"intensities in \[0, 1\], but these span \[17, 255\]"):
        clf.predict(X[:2].astype(np.float32))


def test_warnings_point_at_the_callers_line(lesions_train):
    # fit and predict_proba reach the same input check through different depths of frames;
    # either way the warning must name this file, where the user's call is.
    X, y = lesions_train
    as_floats = X[:60].astype(np.float32)
    with pytest.warns(UserWarning, match="intensities in") as fit_warnings:
        clf = SkinLesionClassifier(**dict(SEED_CNN, max_epochs=1)).fit(as_floats, y[:60])
    with pytest.warns(UserWarning, match="intensities in") as predict_warnings:
        clf.predict_proba(as_floats[:2])
    with pytest.warns(UserWarning, match="too few samples") as split_warnings:
        SkinLesionClassifier(**dict(SEED_CNN, max_epochs=1, validation_fraction=0.1)).fit(
            X[:2], [0, 1])
    for record in (*fit_warnings, *predict_warnings, *split_warnings):
        assert record.filename == __file__, record.filename


def test_a_failed_fit_leaves_the_estimator_as_it_was(lesions_train):
    X, y = lesions_train
    clf = SkinLesionClassifier(**dict(SEED_CNN, max_epochs=1)).fit(X[:60], y[:60])
    before = clf.predict_proba(X[60:70])
    classes, network = clf.classes_, clf.net_
    renamed = np.array(["A", "B", "C"])[np.searchsorted(np.unique(y), y)]
    with pytest.raises(ValueError, match="y_val has classes"):
        clf.fit(X[:60], renamed[:60], X_val=X[60:66], y_val=["A", "B", "Z", "A", "B", "C"])
    assert clf.classes_ is classes and clf.net_ is network
    np.testing.assert_array_equal(clf.predict_proba(X[60:70]), before)
    fresh = SkinLesionClassifier(**SEED_CNN)
    with pytest.raises(ValueError, match="y_val has classes"):
        fresh.fit(X[:60], y[:60], X_val=X[60:62], y_val=["nope", "nope"])
    with pytest.raises(NotFittedError):
        fresh.predict(X[:2])


def test_unreadable_file_in_a_worker_is_reported_in_one_line(lesion_folder, tmp_path):
    _, paths, y = lesion_folder
    bad = tmp_path / "ISIC_0024306.jpg"
    bad.write_bytes(b"not an image at all")
    # The unreadable file is not among those sampled for the size, so a worker meets it.
    clf = SkinLesionClassifier(**SEED_CNN, image_size=(32, 32), num_workers=1)
    with pytest.raises(ImageReadError, match="ISIC_0024306.jpg") as error:
        clf.fit([*paths[:20], str(bad)], [*y[:20], y[0]])
    assert "\n" not in str(error.value) and "Traceback" not in str(error.value)
    clf.fit(paths[:20], y[:20])
    with pytest.raises(ImageReadError, match="ISIC_0024306.jpg") as error:
        clf.predict([paths[0], str(bad)])
    assert "\n" not in str(error.value)


def test_ctrl_c_during_fit_keeps_the_partial_model_and_says_so(lesions_train):
    # skorch swallows KeyboardInterrupt; scikit-learn's MLPClassifier warns in that case.
    X, y = lesions_train

    class CtrlCAtEpoch2(Callback):
        def on_epoch_end(self, net, **kwargs):
            if len(net.history) == 2:
                raise KeyboardInterrupt

    clf = SkinLesionClassifier(**dict(SEED_CNN, max_epochs=5), callbacks=[CtrlCAtEpoch2()])
    with pytest.warns(UserWarning, match=r"interrupted by the user .* after 2 epochs"):
        clf.fit(X, y)
    assert len(clf.history_) == 2
    clf.set_params(callbacks=None)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # a fit to the end says nothing
        clf.fit(X, y)
    assert len(clf.history_) == 5


def test_prediction_starts_workers_only_for_files_and_never_more_than_batches(lesion_folder):
    # A model file restores num_workers; predicting one uploaded array started them all.
    _, paths, y = lesion_folder
    clf = SkinLesionClassifier(**dict(SEED_CNN, max_epochs=1), image_size=(32, 32),
                               num_workers=3)
    clf.fit(paths[:20], y[:20])
    clf.predict_proba(read_image(paths[0], (32, 32))[None])
    assert clf.net_.iterator_valid__num_workers == 0
    clf.predict_proba(paths[:1])
    assert clf.net_.iterator_valid__num_workers == 1
    clf.set_params(predict_batch_size=8).predict_proba(paths[:20])
    assert clf.net_.iterator_valid__num_workers == 3


def test_a_failed_partial_fit_keeps_the_network_as_it_was(lesion_folder, tmp_path):
    _, paths, y = lesion_folder
    clf = SkinLesionClassifier(**dict(SEED_CNN, max_epochs=1, batch_size=4),
                               image_size=(32, 32), num_workers=0)
    clf.fit(paths[:40], y[:40])
    before = clf.predict_proba(paths[40:50])
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    # The unreadable file comes last, after batches that already moved the weights.
    with pytest.raises(ImageReadError, match="broken.png"):
        clf.partial_fit([*paths[:40], str(bad)], [*y[:40], y[0]])
    np.testing.assert_array_equal(clf.predict_proba(paths[40:50]), before)
    epochs = len(clf.history_)
    clf.set_params(warm_start=np.True_)  # a numpy bool, as from a parameter grid
    with pytest.raises(ImageReadError, match="broken.png"):
        clf.fit([*paths[:40], str(bad)], [*y[:40], y[0]])
    np.testing.assert_array_equal(clf.predict_proba(paths[40:50]), before)
    assert len(clf.history_) == len(clf.net_.history) == epochs
    clf.partial_fit(paths[:40], y[:40])  # the restored optimizer state still trains
    assert len(clf.history_) == epochs + 1


def test_partial_fit_continues_an_early_stopped_fit_and_streams_one_class_batches(
        lesions_train):
    X, y = lesions_train
    clf = SkinLesionClassifier(**dict(SEED_CNN, max_epochs=2, validation_fraction=0.2,
                                      patience=3))
    clf.fit(X[:60], y[:60])
    epochs = len(clf.history_)
    clf.partial_fit(X[60:90], y[60:90])  # skorch's early stopping found no score: KeyError
    assert len(clf.history_) == epochs + 1
    # scikit-learn's streaming convention: classes= first, then batches of any classes
    # (here one class each, as when streaming class-sorted folders).
    stream = SkinLesionClassifier(**SEED_CNN)
    for label in np.unique(y):
        batch = np.flatnonzero(y == label)[:16]
        stream.partial_fit(X[batch], y[batch], classes=np.unique(y))
    assert list(stream.classes_) == list(np.unique(y)) and len(stream.history_) == 3


def test_prediction_settings_changed_after_fit_are_checked_or_applied(lesions_train):
    X, y = lesions_train
    clf = SkinLesionClassifier(**dict(SEED_CNN, max_epochs=1)).fit(X[:30], y[:30])
    with pytest.raises(ValueError, match="tta must be True or False, got 'no'"):
        clf.set_params(tta="no").predict(X[:2])  # bool("no") used to switch tta on
    with pytest.raises(ValueError, match="device must be 'auto' or a torch device"):
        clf.set_params(tta=False, device="bogus").predict(X[:2])
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            clf.set_params(device="cuda").predict(X[:2])
    clf.set_params(device="cpu").predict(X[:2])
    assert clf.device_ == "cpu" and next(clf.net_.module_.parameters()).device.type == "cpu"


def test_arrays_and_files_of_another_aspect_ratio_are_framed_alike(lesions_train, tmp_path):
    X, y = lesions_train
    clf = SkinLesionClassifier(**dict(SEED_CNN, max_epochs=2)).fit(X[:60], y[:60])
    wide = np.concatenate([X[60:64], X[64:68]], axis=2)  # 32 x 64: two lesions side by side
    paths = save_image_folder(wide, ["wide"] * 4, tmp_path)
    seen = {}
    for policy in ("crop", "pad", "stretch"):
        clf.set_params(resize=policy)
        seen[policy] = clf.to_image_array(wide).astype(float)
        from_files = clf.to_image_array(list(paths)).astype(float)
        # Pillow's bicubic and torch's bilinear resampling differ by a few levels at most.
        assert np.abs(seen[policy] - from_files).mean() < 4, policy
        np.testing.assert_allclose(clf.predict_proba(wide), clf.predict_proba(list(paths)),
                                   atol=0.05, err_msg=policy)
    # Before, arrays were stretched whatever the policy.
    assert np.abs(seen["crop"] - seen["stretch"]).mean() > 10
    assert (seen["pad"][:, :8] == 0).all()  # black bands above and below


def test_diverged_training_is_refused(lesions_train):
    X, y = lesions_train
    clf = SkinLesionClassifier(**dict(SEED_CNN, max_epochs=2, lr=1e8))
    with pytest.raises(FloatingPointError, match="training diverged.*smaller lr"):
        clf.fit(X[:60], y[:60])
    with pytest.raises(NotFittedError):
        clf.predict(X[:2])


# ---------------------------------------------------------------- training options
def test_sample_weight_and_class_weight(lesions_train):
    X, y = lesions_train
    X, y = X[:60], y[:60]
    favoured = np.where(y == "dark_round", 100.0, 1.0)
    clf = SkinLesionClassifier(**dict(SEED_CNN, max_epochs=2, lr=1e-4, class_weight=None))
    plain = clone(clf).fit(X, y).predict_proba(X)[:, 0]
    weighted = clone(clf).fit(X, y, sample_weight=favoured).predict_proba(X)[:, 0]
    assert weighted.mean() > plain.mean()
    by_class = clone(clf).set_params(class_weight={"dark_round": 100.0}).fit(X, y)
    np.testing.assert_allclose(by_class.predict_proba(X)[:, 0], weighted, atol=1e-5)
    clone(clf).set_params(class_weight="balanced").fit(X, y)


def test_balanced_class_weight_counts_weighted_samples():
    # scikit-learn's convention: a sample of weight 0 is a sample left out, also for the
    # "balanced" class totals (it used to count as a whole sample of its class).
    y = np.repeat([0, 1, 2], 20)
    weights = np.ones(60)
    weights[:10] = 0.0
    classes = np.arange(3)
    effective = sample_weights(y, weights, class_weight="balanced", classes=classes)
    dropped = sample_weights(y[10:], None, class_weight="balanced", classes=classes)
    np.testing.assert_allclose(np.bincount(y, weights=effective),
                               np.bincount(y[10:], weights=dropped))
    np.testing.assert_allclose(effective[10:], dropped)


def test_refit_on_images_forgets_the_tables_feature_names(lesions_train):
    import pandas as pd

    X, y = lesions_train
    X, y = X[:30], y[:30]
    table = pd.DataFrame(X.reshape(len(X), -1), columns=[f"px{i}" for i in range(X[0].size)])
    clf = SkinLesionClassifier(**dict(SEED_CNN, max_epochs=1, image_shape=X.shape[1:]))
    assert list(clf.fit(table, y).feature_names_in_[:2]) == ["px0", "px1"]
    clf.fit(X, y)
    assert not hasattr(clf, "feature_names_in_") and not hasattr(clf, "n_features_in_")
    renamed = table.set_axis([f"c{i}" for i in range(table.shape[1])], axis=1)
    # It used to demand the first fit's column names; now only sklearn's usual warning.
    with pytest.warns(UserWarning, match="fitted without feature names"):
        assert clf.predict(renamed).shape == (30,)


def test_logit_adjustment_offsets_the_training_loss_only(lesions_train):
    X, y = lesions_train
    # Rare "dark_round": 6 of 46 images.
    keep = np.r_[np.where(y == "dark_round")[0][:6], np.where(y != "dark_round")[0][:40]]
    X, y = X[keep], y[keep]
    clf = SkinLesionClassifier(**dict(SEED_CNN, max_epochs=2, lr=1e-4, class_weight=None))
    plain = clone(clf).fit(X, y)
    adjusted = clone(clf).set_params(logit_adjustment=2.0).fit(X, y)
    log_shares = np.log([np.mean(y == c) for c in adjusted.classes_])
    offset = adjusted.net_.logit_offset
    np.testing.assert_allclose(offset.numpy(), 2.0 * (log_shares - log_shares.mean()),
                               rtol=1e-5)
    logits = torch.randn(5, 3)
    target = torch.tensor([0, 1, 2, 0, 1])
    np.testing.assert_allclose(
        adjusted.net_.get_loss(logits, target).item(),
        torch.nn.functional.cross_entropy(logits + offset, target).item(), rtol=1e-6)
    # The loss favours the frequent classes, so the net's own logits, which predict, learn
    # to favour the rare one.
    rare = list(adjusted.classes_).index("dark_round")
    assert adjusted.predict_proba(X)[:, rare].mean() > plain.predict_proba(X)[:, rare].mean()
    assert plain.net_.logit_offset is None
    # Under "balanced" class weights every class has the same weighted share: nothing to adjust.
    balanced = clone(adjusted).set_params(class_weight="balanced", max_epochs=1).fit(X, y)
    np.testing.assert_allclose(balanced.net_.logit_offset.numpy(), 0.0, atol=1e-6)


class AverageByHand(Callback):
    """Averages by hand the weights each training step leaves (on_batch_end sees them): Adam's
    debiased form, a moving average started at zero and divided by ``1 - decay ** steps``."""

    def __init__(self, decay):
        self.decay = decay

    def on_train_begin(self, net, **kwargs):
        self.biased, self.steps = None, 0

    def on_batch_end(self, net, training=False, **kwargs):
        if not training:
            return
        state = {k: v.detach().clone().double() for k, v in net.module_.state_dict().items()}
        if self.biased is None:
            self.biased = {key: torch.zeros_like(value) for key, value in state.items()}
        for key, value in state.items():
            self.biased[key] = self.decay * self.biased[key] + (1 - self.decay) * value
        self.steps += 1

    @property
    def average(self):
        return {key: value / (1 - self.decay ** self.steps) for key, value in self.biased.items()}

    def on_epoch_end(self, net, **kwargs):
        # Between epochs the module holds the average: what validation and early stopping
        # see.
        self.epoch_end_state = {k: v.clone() for k, v in net.module_.state_dict().items()}


def test_ema_decay_fits_the_moving_average_of_the_training_weights(lesions_train):
    X, y = lesions_train
    decay = 0.95  # 0.95 ** 60 = 5 %: the debiasing shows
    by_hand = AverageByHand(decay)
    clf = SkinLesionClassifier(**dict(SEED_CNN, ema_decay=decay,
                                      callbacks=[by_hand])).fit(X, y)
    fitted = clf.net_.module_.state_dict()
    last_step = SkinLesionClassifier(**SEED_CNN).fit(X, y)
    for key, value in fitted.items():
        if value.is_floating_point():
            np.testing.assert_allclose(value.numpy(), by_hand.average[key].numpy(),
                                       rtol=1e-4, atol=1e-5, err_msg=key)
    weight = [key for key, value in fitted.items() if value.ndim == 2][-1]  # last dense layer
    assert not torch.allclose(fitted[weight], last_step.net_.module_.state_dict()[weight])
    torch.testing.assert_close(by_hand.epoch_end_state[weight], fitted[weight])
    assert dict(clf.net_.callbacks_)["ema"].average_ is None  # the copies do not travel
    # Three classes: well above chance, though the 20-step window still lags this fast,
    # from-scratch fit.
    assert accuracy_score(y, clf.predict(X)) > 0.6
    pickle.loads(pickle.dumps(clf))
    # 10 steps an epoch: 60 steps, against a window of 100 for 0.99.
    with pytest.warns(UserWarning, match="last 100 training steps, but this fit has 60: its "
                                         "first half holds 43%"):
        SkinLesionClassifier(**dict(SEED_CNN, ema_decay=0.99)).fit(X, y)
    clf.partial_fit(X, y)  # continues from the average, with a new one
    assert len(clf.history_) == SEED_CNN["max_epochs"] + 1
    assert dict(clf.net_.callbacks_)["ema"].average_ is None
    assert by_hand.epoch_end_state[weight].equal(clf.net_.module_.state_dict()[weight])


def test_early_stopping_restores_the_best_epoch(lesions_train):
    X, y = lesions_train
    clf = SkinLesionClassifier(backbone="seed_cnn", max_epochs=30, patience=2,
                               validation_fraction=0.3, random_state=0).fit(X, y)
    scores = [row["valid_bacc"] for row in clf.history_]
    assert len(scores) < 30  # stopped early
    best = int(np.argmax(scores))
    assert len(scores) - 1 - best == 2  # exactly `patience` epochs without improvement


def test_validation_split_is_stratified_and_reproducible(lesions_train):
    X, y = lesions_train
    clf = SkinLesionClassifier(**dict(SEED_CNN, validation_fraction=0.2))
    y_encoded = np.searchsorted(np.unique(y), y)
    train_a, valid_a = holdout(clf, y_encoded, 7, True)
    train_b, valid_b = holdout(clf, y_encoded, 7, True)
    np.testing.assert_array_equal(valid_a, valid_b)
    assert len(np.intersect1d(train_a, valid_a)) == 0 and len(valid_a) == 30
    assert set(np.bincount(y_encoded[valid_a])) == {10}


@pytest.mark.parametrize("fraction", [0.1, 0.3, 0.4, 0.6, 0.9])
def test_grouped_validation_split_holds_out_the_fraction_asked(fraction):
    y = np.arange(400) % 4
    groups = np.arange(400) // 2  # 200 "lesions" of two images
    clf = SkinLesionClassifier(**dict(SEED_CNN, validation_fraction=fraction))
    train, valid = holdout(clf, y, 0, True, groups)
    assert abs(len(valid) / 400 - fraction) <= 0.02
    assert not set(groups[train]) & set(groups[valid])
    assert len(train) + len(valid) == 400


def test_too_few_images_per_class_for_a_grouped_split_says_so():
    y = np.repeat([0, 1, 2], 6)  # 6 images a class: 10 stratified group folds cannot exist
    clf = SkinLesionClassifier(**dict(SEED_CNN, validation_fraction=0.1))
    with pytest.warns(UserWarning, match="too few images per class to hold out 0.1 of them as "
                                         "whole groups.*largest class has 6 images; training "
                                         "without validation"):
        train, valid = holdout(clf, y, 0, True, np.arange(len(y)))
    assert valid is None and len(train) == len(y)


def _validation_recorder():
    """A callback (and its clones) noting the inputs of the validation set of each fit."""

    class RecordValidationSet(Callback):
        seen = []  # on the class: clone() copies the callback inside cross_validate

        def on_train_begin(self, net, X=None, y=None, **kwargs):
            split = net.train_split
            self.seen.append(None if split is None else split.keywords["valid_ds"].X)

    return RecordValidationSet()


def test_groups_make_the_validation_split_hold_out_whole_groups(lesion_folder):
    _, paths, y = lesion_folder
    groups = np.arange(len(y)) // 3  # three images per "lesion"
    record = _validation_recorder()
    clf = SkinLesionClassifier(**dict(SEED_CNN, max_epochs=1, num_workers=0,
                                      validation_fraction=0.2), image_size=(32, 32),
                               callbacks=[record])
    clf.fit(paths, y, groups=groups)
    held_out = np.isin(paths, record.seen[0])
    assert 0.1 <= held_out.mean() <= 0.3
    assert not set(groups[held_out]) & set(groups[~held_out])  # no lesion on both sides
    assert set(y[held_out]) == set(y)  # still stratified by class
    with pytest.raises(ValueError, match="groups has 5 entries"):
        clf.fit(paths, y, groups=groups[:5])
    with pytest.warns(UserWarning, match="at least 2 groups"):
        clf.fit(paths, y, groups=np.zeros(len(y)))
    assert record.seen[-1] is None  # trained on everything, without validation


def test_groups_reach_fit_through_metadata_routing(lesions_train):
    """cross_validate passes the same groups to the splitter and to the classifier's split."""
    import sklearn
    from sklearn.model_selection import StratifiedGroupKFold, cross_validate

    X, y = lesions_train
    groups = np.arange(len(y)) // 3
    record = _validation_recorder()
    with sklearn.config_context(enable_metadata_routing=True):
        clf = SkinLesionClassifier(**dict(SEED_CNN, max_epochs=1, validation_fraction=0.2),
                                   callbacks=[record])
        clf.set_fit_request(groups=True, sample_weight=False, X_val=False, y_val=False)
        result = cross_validate(clf, X, y, cv=StratifiedGroupKFold(2),
                                params={"groups": groups})
    # Each fold's classifier held out whole groups of its own 75 training images (about 20 %).
    assert len(result["test_score"]) == 2 and len(record.seen) == 2
    for valid_images in record.seen:
        assert 9 <= len(valid_images) <= 21 and len(valid_images) % 3 == 0


def test_same_seed_same_predictions_and_global_rng_untouched(lesions_train):
    X, y = lesions_train
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    params = dict(SEED_CNN, max_epochs=2, augment=True, validation_fraction=0.2)
    first = SkinLesionClassifier(**params).fit(X[:60], y[:60]).predict_proba(X[:20])
    assert torch.equal(torch.rand(1), expected_next)
    second = SkinLesionClassifier(**params).fit(X[:60], y[:60]).predict_proba(X[:20])
    np.testing.assert_array_equal(first, second)
    other = SkinLesionClassifier(**dict(params, random_state=1)).fit(X[:60], y[:60])
    assert not np.array_equal(first, other.predict_proba(X[:20]))


def test_partial_fit_with_logit_adjustment_learns_from_one_class_batches():
    # The offsets follow the class shares of every batch so far: from one batch alone, a
    # one-class batch's offset cancelled its own loss and nothing was learned (0.59 here).
    X, y = make_synthetic_lesions(n_samples=240, image_size=(32, 32), n_classes=2,
                                  random_state=0)
    classes = np.unique(y)
    clf = SkinLesionClassifier(backbone="seed_cnn", class_weight=None, logit_adjustment=1.0,
                               batch_size=8, validation_fraction=None, augment=False,
                               random_state=0, lr=3e-3)
    seen = np.zeros(2)
    for rep in range(8):
        for i, label in enumerate(classes):
            batch = np.flatnonzero(y[:160] == label)[(rep % 4) * 20:(rep % 4 + 1) * 20]
            clf.partial_fit(X[batch], y[batch], classes=classes)
            seen[i] += len(batch)
    np.testing.assert_allclose(clf._class_weight_seen, seen)
    assert accuracy_score(y[160:], clf.predict(X[160:])) >= 0.9


def test_partial_fit_and_warm_start_continue_training(lesions_train):
    X, y = lesions_train
    clf = SkinLesionClassifier(**dict(SEED_CNN, max_epochs=1))
    clf.partial_fit(X[:60], y[:60])
    weights = clf.net_.module_.state_dict()["body.classifier.5.weight"].clone()
    clf.partial_fit(X[:60], y[:60])
    assert len(clf.history_) == 2
    assert not torch.equal(weights, clf.net_.module_.state_dict()["body.classifier.5.weight"])
    with pytest.raises(ValueError, match="unseen"):
        clf.partial_fit(X[:3], ["melanoma"] * 3)
    warm = SkinLesionClassifier(**dict(SEED_CNN, max_epochs=2, warm_start=True))
    warm.fit(X[:60], y[:60]).fit(X[:60], y[:60])
    assert len(warm.history_) == 4
    cold = SkinLesionClassifier(**dict(SEED_CNN, max_epochs=2)).fit(X[:60], y[:60])
    assert len(cold.fit(X[:60], y[:60]).history_) == 2


def test_tta_averages_flips(lesions_train):
    X, y = lesions_train
    clf = SkinLesionClassifier(**SEED_CNN).fit(X[:60], y[:60])
    plain = clf.predict_proba(X[:10])
    clf.set_params(tta=True)
    flipped = clf.predict_proba(X[:10])
    assert not np.allclose(plain, flipped)
    np.testing.assert_allclose(flipped.sum(axis=1), 1.0)
    mirrored = clf.predict_proba(X[:10, :, ::-1].copy())
    np.testing.assert_allclose(flipped, mirrored, atol=1e-5)  # TTA is flip-invariant


def test_verbose_shows_progress_and_callbacks_run(lesions_train, capsys):
    X, y = lesions_train
    seen = []

    class Recorder(Callback):
        def on_epoch_end(self, net, **kwargs):
            seen.append(net.history[-1]["epoch"])

    SkinLesionClassifier(**dict(SEED_CNN, max_epochs=2, verbose=1),
                         callbacks=[Recorder()]).fit(X[:40], y[:40])
    assert seen == [1, 2]
    assert "train_loss" in capsys.readouterr().out


def test_custom_module_factory(lesions_train):
    X, y = lesions_train

    def tiny(n_classes):
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(32 * 32 * 3, n_classes))

    clf = SkinLesionClassifier(**dict(SEED_CNN, backbone=tiny, max_epochs=3)).fit(X, y)
    assert clf.score(X, y) > 0.5


# ---------------------------------------------------------------- scikit-learn tools
def test_pickle_joblib_and_clone(lesions_train, tmp_path):
    X, y = lesions_train
    clf = SkinLesionClassifier(**dict(SEED_CNN, max_epochs=2)).fit(X[:60], y[:60])
    expected = clf.predict_proba(X[:10])
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(clf)).predict_proba(X[:10]),
                                  expected)
    joblib.dump(clf, tmp_path / "model.joblib")
    np.testing.assert_array_equal(joblib.load(tmp_path / "model.joblib").predict_proba(X[:10]),
                                  expected)
    fresh = clone(clf)
    assert not hasattr(fresh, "net_") and fresh.get_params() == clf.get_params()


def test_grid_search_in_parallel_on_paths(lesion_folder):
    _, paths, y = lesion_folder
    search = GridSearchCV(
        SkinLesionClassifier(**dict(SEED_CNN, max_epochs=2), image_size=(32, 32)),
        {"lr": [1e-3, 1e-2]}, cv=2, n_jobs=2,
    )
    search.fit(paths[:60], y[:60])
    assert search.best_params_["lr"] in (1e-3, 1e-2)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()


@pytest.mark.realdata
def test_ham10000_pipeline_grouped_cross_validation():
    paths, labels, groups = load_ham10000(require_ham10000())
    rng = np.random.default_rng(0)
    subset = rng.choice(len(paths), 200, replace=False)
    pipe = Pipeline([("load", ImageLoader(size=(64, 80))),
                     ("clf", SkinLesionClassifier(max_epochs=1, random_state=0))])
    scores = cross_val_score(pipe, paths[subset], labels[subset], groups=groups[subset],
                             cv=GroupKFold(2), scoring="balanced_accuracy")
    assert scores.shape == (2,) and np.isfinite(scores).all()


def test_own_validation_set_drives_early_stopping(lesions_train, lesions_test):
    X, y = lesions_train
    X_val, y_val = lesions_test
    clf = SkinLesionClassifier(**dict(SEED_CNN, max_epochs=3, validation_fraction=0.5))
    clf.fit(X, y, X_val=X_val, y_val=y_val)
    # Trained on all of X (no fraction held out): 150 images in batches of 16 → 10 batches.
    assert clf.history_[0]["train_batch_count"] == 10
    assert clf.history_[0]["valid_batch_count"] == 6  # the 90 given validation images
    with pytest.raises(ValueError, match="together"):
        clf.fit(X, y, X_val=X_val)
    with pytest.raises(ValueError, match="not in y"):
        clf.fit(X, y, X_val=X_val[:2], y_val=["unknown", "unknown"])


def test_head_only_without_augmentation_trains_on_cached_features(lesions_train, lesions_test):
    X, y = lesions_train
    X_test, y_test = lesions_test
    clf = SkinLesionClassifier(finetune="head", augment=False, max_epochs=15, lr=1e-2,
                               image_size=(64, 64), random_state=0).fit(X, y)
    assert trains_on_cached_features(clf, clf.net_.module_)
    assert clf.score(X_test, y_test) >= 0.9  # a linear probe on ImageNet features suffices
    assert len(clf.history_) >= 2 and "valid_bacc" in clf.history_[-1]
    epochs = len(clf.history_)
    clf.partial_fit(X[:40], y[:40])  # continues on images, through the whole network
    assert len(clf.history_) == epochs + 1


def test_arrays_are_read_in_place_not_copied_whole():
    # A whole-set copy of HAM10000 is 0.9 GB as uint8 and 3.6 GB as float32; prediction copied
    # it once and fit twice (once per split part, once defensively).
    X = np.random.RandomState(0).randint(0, 256, (400, 64, 64, 3), dtype=np.uint8)
    y = np.arange(400) % 2
    clf = SkinLesionClassifier(**dict(SEED_CNN, max_epochs=1)).fit(X[:40], y[:40])
    _, fit_peak = peak_memory(clf.fit, X, y)
    proba, predict_peak = peak_memory(clf.predict_proba, X)
    assert fit_peak < 1.5 * X.nbytes, fit_peak / X.nbytes  # the training part, indexed once
    assert predict_peak < 0.5 * X.nbytes, predict_peak / X.nbytes

    # The caller's array may be read-only (a memmap): read as is, without torch's warning.
    X.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_allclose(clf.predict_proba(X), proba)
    # to_image_array hands back an array of its own, never a view of X.
    assert not np.shares_memory(clf.to_image_array(X), X)


def test_to_image_array_of_paths_fills_one_array(lesion_folder):
    _, paths, y = lesion_folder
    clf = SkinLesionClassifier(**dict(SEED_CNN, max_epochs=1), image_size=(64, 64),
                               num_workers=0).fit(paths[:20], y[:20])
    images, peak = peak_memory(clf.to_image_array, paths)
    assert images.shape == (len(paths), 64, 64, 3) and images.dtype == np.uint8
    assert peak < 1.5 * images.nbytes, peak / images.nbytes  # a list, then a stack: 2x


def test_a_list_of_uint8_images_is_not_widened_to_float(lesions_train):
    # check_array made float32 of a list's uint8 pixels (4x their size) and cast them back.
    X, y = lesions_train
    clf = SkinLesionClassifier(**dict(SEED_CNN, max_epochs=1)).fit(X[:40], y[:40])
    images = list(np.repeat(X, 4, axis=0))
    proba, peak = peak_memory(clf.predict_proba, images)
    assert peak < 1.5 * len(images) * images[0].nbytes, peak / (len(images) * images[0].nbytes)
    np.testing.assert_allclose(proba, clf.predict_proba(np.stack(images)), atol=1e-6)


def test_color_constancy_is_the_color_constancy_transformer_inside_the_network(
        lesions_train, lesions_test):
    X, y = lesions_train
    X_test, _ = lesions_test
    # Float pixels and no augmentation, so both routes see the very same numbers.
    images, test_images = X.astype(np.float32) / 255, X_test.astype(np.float32) / 255
    inside = tiny_classifier(color_constancy=6, max_epochs=3).fit(images, y)
    outside = make_pipeline(ColorConstancy(power=6), tiny_classifier(max_epochs=3))
    outside.fit(images, y)
    np.testing.assert_allclose(inside.predict_proba(test_images),
                               outside.predict_proba(test_images), atol=1e-3)
    plain = tiny_classifier(max_epochs=3).fit(images, y)
    assert np.abs(plain.predict_proba(test_images)
                  - inside.predict_proba(test_images)).max() > 0.05
