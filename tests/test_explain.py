"""Grad-CAM: the heatmap points at the evidence, agrees with captum, and overlays render."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from skinestimator import SkinLesionClassifier, make_synthetic_lesions
from skinestimator.explain import explain, gradcam, overlay_heatmap
from skinestimator.networks import LesionNet, SeedCNN

SIZE, RADIUS = 48, 5


def spot_images(n, *, seed):
    """Skin-coloured noise; class "spot" has one dark spot at a random, recorded place."""
    rng = np.random.RandomState(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    images = np.empty((n, SIZE, SIZE, 3), dtype=np.uint8)
    centres = np.zeros((n, 2))
    labels = np.empty(n, dtype=object)
    for i in range(n):
        skin = np.array([220, 175, 150]) + rng.uniform(-20, 20, 3)
        image = skin + rng.normal(0, 10, (SIZE, SIZE, 3))
        centres[i] = rng.uniform(RADIUS + 2, SIZE - RADIUS - 2, size=2)
        if i % 2 == 0:
            labels[i] = "spot"
            mask = (yy - centres[i, 0]) ** 2 + (xx - centres[i, 1]) ** 2 <= RADIUS**2
            image[mask] = np.array([70, 45, 35]) + rng.normal(0, 10, (mask.sum(), 3))
        else:
            labels[i] = "clear"
        images[i] = np.clip(image, 0, 255)
    return images, labels, centres


@pytest.fixture(scope="module")
def spot_model():
    X, y, _ = spot_images(120, seed=0)
    return SkinLesionClassifier(backbone="seed_cnn", max_epochs=6, batch_size=16, lr=3e-3,
                                random_state=0, validation_fraction=None,
                                augment=False).fit(X, y)


def test_heatmap_peak_falls_on_the_spot(spot_model):
    X, y, centres = spot_images(30, seed=1)
    assert (spot_model.predict(X) == y).mean() >= 0.8, "the model must have learned the task"
    has_spot = y == "spot"
    heatmaps = explain(spot_model, X[has_spot])
    assert heatmaps.shape == (has_spot.sum(), SIZE, SIZE)
    peaks = np.array([np.unravel_index(h.argmax(), h.shape) for h in heatmaps])
    distance = np.linalg.norm(peaks - centres[has_spot], axis=1)
    # The feature map has 8-pixel cells, so "on the spot" is within its radius plus a cell's
    # half-diagonal; a random point lies about 20 pixels away on average.
    assert np.median(distance) <= RADIUS
    assert np.mean(distance <= RADIUS + 6) >= 0.9, np.round(distance, 1)


def test_targets_and_values(spot_model):
    X, y, _ = spot_images(6, seed=2)
    default = explain(spot_model, X)
    predicted = spot_model.predict(X)
    np.testing.assert_allclose(default, explain(spot_model, X, target=predicted))
    assert default.dtype == np.float32 and default.min() >= 0 and default.max() <= 1
    assert np.allclose(default.reshape(len(X), -1).max(axis=1)[default.reshape(len(X), -1)
                                                                .max(axis=1) > 0], 1.0)
    spot = explain(spot_model, X, target="spot")
    clear = explain(spot_model, X, target="clear")
    assert not np.allclose(spot, clear), "different classes must give different maps"
    with pytest.raises(ValueError, match="unknown class 'mole'"):
        explain(spot_model, X, target="mole")
    with pytest.raises(ValueError, match="2 labels for 6 images"):
        explain(spot_model, X, target=["spot", "clear"])
    with pytest.raises(ValueError, match="not fitted"):
        explain(SkinLesionClassifier(), X)


def test_input_checks_batch_size_one_image_and_empty(spot_model):
    X, _, _ = spot_images(5, seed=3)
    reference = explain(spot_model, X)
    # Any positive batch size gives the same maps; others are refused up front.
    np.testing.assert_allclose(explain(spot_model, X, batch_size=np.int64(2)), reference,
                               atol=1e-6)
    for bad in (0, -1, 1.5, True, None):
        with pytest.raises(ValueError, match="batch_size must be a positive integer"):
            explain(spot_model, X, batch_size=bad)
    # One RGB image is not read as SIZE grey images 3 pixels wide.
    with pytest.raises(ValueError, match=r"shape \(48, 48, 3\).*image\[None\]"):
        explain(spot_model, X[0])
    with pytest.raises(ValueError, match=r"looks like one RGB image.*image\[None\]"):
        explain(spot_model, X[0].tolist())
    np.testing.assert_allclose(explain(spot_model, X[0][None]), reference[:1], atol=1e-6)
    # A 3-D array is a batch of grey images, as for predict_proba.
    grey = X[:2, :, :, 0]
    assert explain(spot_model, grey).shape == (2, SIZE, SIZE)
    # Empty input is refused as predict_proba refuses it.
    with pytest.raises(ValueError, match="X is empty"):
        explain(spot_model, X[:0])


def test_matches_captum_layer_gradcam():
    captum_attr = pytest.importorskip("captum.attr")
    torch.manual_seed(0)
    module = LesionNet(SeedCNN(3, width=8), mean=[0.5] * 3, std=[0.25] * 3).eval()
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    ours, logits = gradcam(module, images)

    class Normalized(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net.head(self.net.features(x))

    cam = captum_attr.LayerGradCam(Normalized(module), module.body.blocks)
    attribution = cam.attribute(module.normalize(images), target=torch.as_tensor(
        logits.argmax(axis=1)), relu_attributions=True)
    theirs = captum_attr.LayerAttribution.interpolate(attribution, (32, 32),
                                                      interpolate_mode="bilinear")[:, 0]
    theirs = theirs / theirs.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1)
    np.testing.assert_allclose(ours, theirs.detach().numpy(), atol=1e-5)


def test_overlay_heatmap():
    image = np.full((32, 32, 3), 128, dtype=np.uint8)
    heat = np.zeros((4, 4), dtype=np.float32)
    heat[0, 0] = 1.0
    out = overlay_heatmap(image, heat, alpha=0.5, size=(64, 64))
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    hot, cold = out[2, 2].astype(int), out[60, 60].astype(int)
    assert hot[0] > hot[2] and cold[2] > cold[0], "jet: red where hot, blue where cold"
    np.testing.assert_array_equal(overlay_heatmap(image, heat, alpha=0.0), image)
    np.testing.assert_array_equal(overlay_heatmap(image / 255.0, heat, alpha=0.0), image)
    with pytest.raises(ValueError, match="alpha"):
        overlay_heatmap(image, heat, alpha=2)
    with pytest.raises(ValueError, match="heatmap"):
        overlay_heatmap(image, heat[None])


def test_target_is_a_label_and_an_integer_for_text_labels_is_explained(spot_model):
    X, _, _ = spot_images(2, seed=4)
    message = (r"unknown class 1; the model knows: 'clear', 'spot'\. target takes class "
               r"labels, not column indices: column 1 is 'spot'")
    with pytest.raises(ValueError, match=message):
        explain(spot_model, X, target=1)
    with pytest.raises(ValueError, match=r"unknown class 7; the model knows: 'clear', 'spot'$"):
        explain(spot_model, X, target=7)  # not a column either: no hint
    np.testing.assert_allclose(explain(spot_model, X, target="spot"),
                               explain(spot_model, X, target=["spot", "spot"]))


class _OneChannelNet(torch.nn.Module):
    """A feature map that is positive everywhere and a head where class 1 only counts against."""

    def normalize(self, images):
        return images.float() / 255.0

    def features(self, x):
        return x.mean(dim=1, keepdim=True) + 0.1

    def head(self, feature_map):
        pooled = feature_map.mean(dim=(2, 3))
        return torch.cat([pooled, -pooled], dim=1)


def test_heatmap_is_all_zero_without_positive_evidence_as_documented():
    images = torch.randint(0, 256, (3, 3, 16, 16), dtype=torch.uint8)
    for_class, _ = gradcam(_OneChannelNet(), images, [0, 0, 0])
    against, _ = gradcam(_OneChannelNet(), images, [1, 1, 1])
    np.testing.assert_allclose(for_class.reshape(3, -1).max(axis=1), 1.0)
    # Grad-CAM keeps positive evidence only (ReLU): nothing speaks for class 1.
    assert not against.any()
    doc = " ".join(explain.__doc__.split())
    assert "all zeros where the image holds no positive evidence" in doc
    assert "not a column index" in doc


def quadrant_images(n, *, seed, size=16):
    """Class "top_left" has a dark spot in the top-left quadrant, "elsewhere" in another one."""
    rng = np.random.RandomState(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    labels = np.where(np.arange(n) % 2 == 0, "top_left", "elsewhere").astype(object)
    for i in range(n):
        image = np.array([220, 175, 150]) + rng.normal(0, 10, (size, size, 3))
        top, left = (1, 1) if labels[i] == "top_left" else [(1, 0), (0, 1), (0, 0)][rng.randint(3)]
        cy = rng.uniform(2, size / 2 - 2) + (0 if top else size / 2)
        cx = rng.uniform(2, size / 2 - 2) + (0 if left else size / 2)
        image[(yy - cy) ** 2 + (xx - cx) ** 2 <= 4] = (60, 40, 30)
        images[i] = np.clip(image, 0, 255)
    return images, labels


def test_default_target_is_the_class_predict_gives_with_tta(monkeypatch):
    # Of the four flipped views tta averages, three put a top-left spot elsewhere: predict
    # says "elsewhere" where the single unflipped pass Grad-CAM runs says "top_left".
    X, y = quadrant_images(80, seed=0)
    clf = SkinLesionClassifier(backbone="seed_cnn", max_epochs=4, batch_size=16, lr=3e-3,
                               augment=False, validation_fraction=None, random_state=0,
                               tta=True).fit(X, y)
    X_test = quadrant_images(12, seed=1)[0][::2]
    predicted = clf.predict(X_test)
    _, logits = gradcam(clf.net_.module_, torch.from_numpy(X_test.transpose(0, 3, 1, 2).copy()))
    single_pass = clf.classes_[logits.argmax(axis=1)]
    assert (single_pass != predicted).any(), "the test needs images where the two disagree"
    np.testing.assert_allclose(explain(clf, X_test), explain(clf, X_test, target=predicted))
    # Without tta the single pass is predict's own: no second prediction pass is run.
    clf.set_params(tta=False)
    predicted = clf.predict(X_test)
    monkeypatch.setattr(clf, "predict_proba", lambda X: pytest.fail("predicted twice"))
    np.testing.assert_allclose(explain(clf, X_test), explain(clf, X_test, target=predicted))


def test_explains_a_fitted_pipeline_or_search_and_names_what_to_pass():
    X, y = make_synthetic_lesions(n_samples=24, image_size=(32, 32), n_classes=2, random_state=0)
    crop = FunctionTransformer(lambda images: images[:, 4:-4, 4:-4])

    def classifier():
        return SkinLesionClassifier(backbone="seed_cnn", image_size=(24, 24), max_epochs=1,
                                    random_state=0)

    pipe = Pipeline([("crop", crop), ("id", "passthrough"), ("clf", classifier())]).fit(X, y)
    # The maps are those of the cropped images the classifier sees.
    heatmaps = explain(pipe, X[:3])
    assert heatmaps.shape == (3, 24, 24)
    np.testing.assert_allclose(heatmaps, explain(pipe[-1], X[:3, 4:-4, 4:-4]))
    np.testing.assert_allclose(explain(pipe, X[:3], target=pipe.predict(X[:3])), heatmaps)

    search = GridSearchCV(Pipeline([("crop", crop), ("clf", classifier())]),
                          {"clf__lr": [1e-3]}, cv=2).fit(X, y)
    np.testing.assert_allclose(explain(search, X[:3]),
                               explain(search.best_estimator_[-1], X[:3, 4:-4, 4:-4]))

    with pytest.raises(ValueError, match=r"^Pipeline \(final estimator SkinLesionClassifier\) "
                       r"is not fitted"):
        explain(Pipeline([("clf", classifier())]), X[:1])
    takes = "explain takes a fitted SkinLesionClassifier, a fitted Pipeline whose last step"
    with pytest.raises(ValueError, match=takes + r".*got GridSearchCV, which is not fitted"):
        explain(GridSearchCV(classifier(), {"lr": [1e-3]}), X[:1])
    with pytest.raises(ValueError, match=takes + r".*GridSearchCV was fitted with refit=False"):
        explain(search.set_params(refit=False).fit(X, y), X[:1])
    with pytest.raises(ValueError, match=takes + r".*got LogisticRegression$"):
        explain(LogisticRegression().fit(X.reshape(len(X), -1), y), X[:1])
    with pytest.raises(ValueError, match=takes + r".*got Pipeline \(final estimator "
                       r"'passthrough'\)$"):
        explain(Pipeline([("clf", "passthrough")]), X[:1])


def _flat_network(n_classes):
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, n_classes))


def test_a_network_without_a_feature_map_warns_that_the_map_is_not_gradcam(spot_model):
    X, y = make_synthetic_lesions(n_samples=12, image_size=(16, 16), n_classes=2,
                                  random_state=0)
    flat = SkinLesionClassifier(backbone=_flat_network, max_epochs=1, batch_size=4,
                                validation_fraction=None, random_state=0).fit(X, y)
    with pytest.warns(UserWarning, match="no convolutional feature map .* rather than Grad-CAM"):
        heatmaps = explain(flat, X[:2])
    assert heatmaps.shape == (2, 16, 16)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a real feature map: Grad-CAM, no warning
        explain(spot_model, spot_images(2, seed=5)[0])
