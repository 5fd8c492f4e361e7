"""Temperature calibration, conformal prediction sets and referral (skinestimator/uncertainty,
the classifier's calibration / predict_set / fit_conformal, model files, CLI, web page)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.calibration import CalibratedClassifierCV

from skinestimator import SkinLesionClassifier, make_synthetic_lesions
from skinestimator.deploy import load_model, save_model
from skinestimator.uncertainty import (
    ConformalScores,
    Referral,
    apply_temperature,
    conformal_thresholds,
    fit_temperature,
    prediction_sets,
    refer,
)


def _calibrated_world(rng, n, n_classes=4, sharpness=2.0):
    """Probabilities that are calibrated by construction: the label is drawn from them."""
    logits = sharpness * rng.normal(size=(n, n_classes))
    proba = apply_temperature(logits, 1.0)
    labels = np.array([rng.choice(n_classes, p=row) for row in proba])
    return logits, proba, labels


def test_the_temperature_of_overconfident_logits_is_found_and_never_changes_the_ranking():
    rng = np.random.default_rng(0)
    logits, _, labels = _calibrated_world(rng, 4000)
    assert fit_temperature(3 * logits, labels) == pytest.approx(3.0, rel=0.1)
    assert fit_temperature(logits / 2, labels) == pytest.approx(0.5, rel=0.1)
    for temperature in (0.3, 1.0, 7.0):
        np.testing.assert_array_equal(apply_temperature(logits, temperature).argmax(1),
                                      logits.argmax(1))


@pytest.mark.parametrize("by_class", [False, True])
def test_split_conformal_sets_hold_the_true_class_at_the_coverage_asked(by_class):
    rng = np.random.default_rng(1)
    coverages = []
    per_class = []
    for _ in range(100):
        _, cal_proba, cal_labels = _calibrated_world(rng, 300)
        _, test_proba, test_labels = _calibrated_world(rng, 500)
        thresholds = conformal_thresholds(ConformalScores.from_proba(cal_proba, cal_labels),
                                          0.9, by_class=by_class)
        covered = prediction_sets(test_proba, thresholds)[np.arange(500), test_labels]
        coverages.append(covered.mean())
        per_class.append([covered[test_labels == k].mean() for k in range(4)])
    # The guarantee is on average over calibration sets: at least 0.9, and not much more.
    assert 0.9 - 0.005 <= np.mean(coverages) <= 0.93
    if by_class:
        assert np.min(np.mean(per_class, axis=0)) >= 0.9 - 0.01


def test_a_class_with_too_few_calibration_images_is_put_in_every_set_with_a_warning():
    proba = np.array([[0.8, 0.1, 0.1]] * 20 + [[0.1, 0.1, 0.8]] * 3)
    labels = np.array([0] * 20 + [2] * 3)
    scores = ConformalScores.from_proba(proba, labels)
    with pytest.warns(UserWarning, match=r"at least 9 calibration images.*'b' \(0\), 'c' \(3\)"):
        thresholds = conformal_thresholds(scores, 0.9, by_class=True,
                                          class_names=np.array(["a", "b", "c"], dtype=object))
    assert np.isinf(thresholds[1:]).all()
    assert prediction_sets(proba[:1], thresholds).tolist() == [[True, True, True]]


@pytest.mark.parametrize("coverage", [0, 1, 1.5, -0.1, "0.9", True, None])
def test_coverage_outside_zero_one_is_refused(coverage):
    scores = ConformalScores.from_proba(np.array([[0.6, 0.4]]), np.array([0]))
    with pytest.raises(ValueError, match="coverage must be a number strictly between 0 and 1"):
        conformal_thresholds(scores, coverage)


def test_referral_rule_and_its_parameters():
    proba = np.array([[0.9, 0.1], [0.45, 0.55]])
    sets = np.array([[True, False], [False, True]])
    assert refer(proba, sets).tolist() == [False, False]
    assert refer(proba, sets, Referral(min_probability=0.6)).tolist() == [False, True]
    with pytest.raises(ValueError, match="max_set_size must be a positive integer"):
        Referral(max_set_size=0)
    with pytest.raises(ValueError, match="min_probability must be between 0 and 1"):
        Referral(min_probability=2)


@pytest.fixture(scope="module")
def calibrated_model():
    X, y = make_synthetic_lesions(n_samples=300, image_size=(32, 32), random_state=0)
    clf = SkinLesionClassifier(backbone="seed_cnn", max_epochs=4, batch_size=16,
                               random_state=0, validation_fraction=0.3, num_workers=0,
                               calibration="temperature")
    return clf.fit(X, y)


@pytest.fixture(scope="module")
def held_out():
    return make_synthetic_lesions(n_samples=600, image_size=(32, 32), random_state=1)


def test_predict_set_covers_held_out_images_overall_and_per_class(calibrated_model, held_out):
    X, y = held_out
    index = np.searchsorted(calibrated_model.classes_, y)
    sets = calibrated_model.predict_set(X, coverage=0.9)
    assert sets.shape == (len(y), 3) and sets.dtype == bool
    assert sets[np.arange(len(y)), index].mean() >= 0.88
    by_class = calibrated_model.predict_set(X, coverage=0.9, by_class=True)
    covered = by_class[np.arange(len(y)), index]
    for k in range(3):
        assert covered[index == k].mean() >= 0.85


def test_temperature_changes_the_probabilities_never_the_predictions(calibrated_model,
                                                                     held_out):
    X, _ = held_out
    raw = SkinLesionClassifier(**{**calibrated_model.get_params(), "calibration": None})
    raw.fit(*make_synthetic_lesions(n_samples=300, image_size=(32, 32), random_state=0))
    assert raw.temperature_ == 1.0 and calibrated_model.temperature_ != 1.0
    np.testing.assert_array_equal(raw.predict(X), calibrated_model.predict(X))
    assert np.abs(raw.predict_proba(X) - calibrated_model.predict_proba(X)).max() > 1e-3


def test_a_model_file_keeps_the_temperature_and_the_calibration_scores(calibrated_model,
                                                                        held_out, tmp_path):
    X, _ = held_out
    save_model(calibrated_model, tmp_path / "m.skin")
    loaded = load_model(tmp_path / "m.skin")
    assert loaded.temperature_ == calibrated_model.temperature_
    np.testing.assert_array_equal(loaded.predict_proba(X), calibrated_model.predict_proba(X))
    np.testing.assert_array_equal(loaded.predict_set(X, 0.8, by_class=True),
                                  calibrated_model.predict_set(X, 0.8, by_class=True))


def test_fit_conformal_replaces_the_scores_and_checks_its_input(calibrated_model, held_out):
    import copy

    X, y = held_out
    clf = copy.deepcopy(calibrated_model)
    clf.fit_conformal(X[:300], y[:300])
    assert len(clf.conformal_scores_.scores) == 300
    with pytest.raises(ValueError, match="classes \\['nevus'\\] that the classifier"):
        clf.fit_conformal(X[:2], ["nevus", y[0]])
    with pytest.raises(ValueError, match="X has 3 samples but y has 2"):
        clf.fit_conformal(X[:3], y[:2])


def test_predict_set_without_a_validation_split_says_what_to_do(held_out):
    X, y = held_out
    clf = SkinLesionClassifier(backbone="seed_cnn", max_epochs=1, random_state=0,
                               validation_fraction=None, num_workers=0).fit(X[:60], y[:60])
    assert clf.temperature_ == 1.0
    with pytest.raises(ValueError, match="call fit_conformal"):
        clf.predict_set(X[:2])


def test_scikit_learns_calibratedclassifiercv_wraps_the_classifier(held_out):
    X, y = held_out
    clf = SkinLesionClassifier(backbone="seed_cnn", max_epochs=2, random_state=0,
                               num_workers=0)
    calibrated = CalibratedClassifierCV(clf, cv=2, method="sigmoid").fit(X[:200], y[:200])
    proba = calibrated.predict_proba(X[200:260])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert (calibrated.predict(X[200:260]) == y[200:260]).mean() > 0.6


def test_predict_coverage_prints_the_set_and_the_referral(calibrated_model, held_out, tmp_path,
                                                          capsys):
    from skinestimator import save_image_folder
    from skinestimator.cli import main

    X, y = held_out
    save_model(calibrated_model, tmp_path / "m.skin")
    paths = save_image_folder(X[:6], y[:6], tmp_path / "photos")
    assert main(["predict", str(tmp_path / "m.skin"), *paths, "--coverage", "0.9",
                 "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    expected = calibrated_model.predict_set(paths, 0.9)
    for row, members in zip(rows, expected, strict=True):
        assert set(row["prediction_set"]) == set(calibrated_model.classes_[members])
        assert row["refer"] == (len(row["prediction_set"]) > 1
                                or row["predictions"][0]["probability"] < 0.5)
    assert main(["predict", str(tmp_path / "m.skin"), paths[0], "--coverage", "0.99",
                 "--max-set-size", "1", "--min-probability", "1"]) == 0
    table = capsys.readouterr().out
    assert "prediction set" in table and "uncertain: refer" in table


def test_the_web_page_shows_the_prediction_set(calibrated_model, held_out, tmp_path):
    from starlette.testclient import TestClient

    from skinestimator import save_image_folder
    from skinestimator.web import create_app

    X, y = held_out
    path = save_image_folder(X[:1], y[:1], tmp_path / "photo")[0]
    client = TestClient(create_app(calibrated_model, coverage=0.95))
    with open(path, "rb") as image:
        answer = client.post("/api/predict", files={"image": ("lesion.png", image, "image/png")})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["coverage"] == 0.95 and body["prediction_set"]
    with open(path, "rb") as image:
        page = client.post("/", files={"image": ("lesion.png", image, "image/png")}).text
    assert "id='prediction-set'" in page and "95 % coverage" in page


def test_cross_validated_report_shows_calibration_and_prediction_sets():
    import matplotlib

    matplotlib.use("Agg")
    import pandas as pd

    from skinestimator.reports import cross_validated_report

    X, y = make_synthetic_lesions(n_samples=240, image_size=(32, 32), random_state=2)
    site = pd.DataFrame({"site": np.where(np.arange(240) % 3 == 0, "clinic A", "clinic B")})
    clf = SkinLesionClassifier(backbone="seed_cnn", max_epochs=3, batch_size=16,
                               random_state=0, validation_fraction=0.3, num_workers=0,
                               calibration="temperature")
    report = cross_validated_report(clf, X, y, cv=3, subgroups=site, coverage=0.9)
    summary = report.uncertainty
    assert summary is not None
    assert np.isfinite(summary.calibration[["ece_before", "ece_after"]].to_numpy()).all()
    assert summary.sets.loc["marginal", "coverage"] >= 0.8
    assert list(summary.per_class.index) == list(report.classes)
    assert summary.per_class["n_samples"].sum() == 240
    assert list(summary.per_subgroup["site"].index) == ["clinic A", "clinic B"]
    assert set(summary.subgroup_gaps.index.get_level_values("sets")) == {"marginal",
                                                                         "by_class"}
    html = report.to_html()
    assert "Prediction sets at coverage 0.9" in html
    assert "Prediction sets: coverage against size" in html
    display = summary.plot()
    assert len(display.ax_.get_lines()) >= 2
    assert cross_validated_report(clf, X, y, cv=3, coverage=None).uncertainty is None
