"""cross_validated_report, its metrics, renderings and plot displays."""

import base64
import io
import re
import warnings

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from PIL import Image  # noqa: E402
from sklearn.base import BaseEstimator, TransformerMixin  # noqa: E402
from sklearn.exceptions import UndefinedMetricWarning  # noqa: E402
from sklearn.metrics import roc_auc_score, top_k_accuracy_score  # noqa: E402
from sklearn.model_selection import GridSearchCV, StratifiedKFold  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402

from skinestimator import load_ham10000, make_synthetic_lesions  # noqa: E402
from skinestimator.reports import (  # noqa: E402
    OneVsRestRocDisplay,
    ReliabilityDisplay,
    TrainingCurvesDisplay,
    classification_metrics,
    cross_validated_report,
    expected_calibration_error,
    per_class_metrics,
    reliability_curve,
)
from tests.conftest import HAM10000_DIR, tiny_classifier  # noqa: E402

HAM = HAM10000_DIR




@pytest.fixture(scope="module")
def report():
    X, y = make_synthetic_lesions(n_samples=60, image_size=(32, 32), n_classes=3, random_state=0)
    rng = np.random.RandomState(0)
    subgroups = pd.DataFrame(
        {
            "sex": rng.choice(["female", "male"], len(y)),
            "site": rng.choice(["back", "face", "hand", None], len(y)),
        }
    )
    groups = np.arange(len(y)) // 2
    return (
        cross_validated_report(
            tiny_classifier(), X, y, groups=groups, cv=3, subgroups=subgroups, min_subgroup_size=5
        ),
        subgroups,
        groups,
    )


# ------------------------------------------------------------------ metrics
def test_ece_and_reliability_curve_match_hand_computation():
    proba = np.array([[0.9, 0.1], [0.9, 0.1], [0.25, 0.75], [0.35, 0.65]])
    y = ["a", "b", "b", "a"]
    conf, acc, counts, edges = reliability_curve(y, proba, n_bins=5)
    # bins: (0.6, 0.8] holds 0.75 right and 0.65 wrong, (0.8, 1] 0.9 right and 0.9 wrong
    assert counts.tolist() == [0, 0, 0, 2, 2]
    np.testing.assert_allclose(acc[3:], [0.5, 0.5])
    np.testing.assert_allclose(conf[3:], [0.7, 0.9])
    assert expected_calibration_error(y, proba, n_bins=5) == pytest.approx((2 * 0.2 + 2 * 0.4) / 4)
    perfect = np.eye(2)[[0, 1, 1, 0]]
    assert expected_calibration_error(y, perfect) == 0.0


def test_classification_metrics_agree_with_scikit_learn():
    rng = np.random.RandomState(0)
    classes = np.array(["bcc", "mel", "nv", "vasc"])
    y = rng.choice(classes, 200)
    proba = rng.dirichlet(np.ones(4), 200)
    proba[np.arange(200), np.searchsorted(classes, y)] += 0.5
    proba /= proba.sum(axis=1, keepdims=True)
    m = classification_metrics(y, proba, classes=classes, top_k=2)
    assert m["roc_auc_ovr_macro"] == pytest.approx(
        roc_auc_score(y, proba, multi_class="ovr", average="macro", labels=classes)
    )
    assert 0 < m["ece"] < 1 and m["accuracy"] <= m["top_2_accuracy"] <= 1
    with pytest.warns(UndefinedMetricWarning, match=r"'k' \(4\) greater than or equal"):
        assert classification_metrics(y, proba, classes=classes, top_k=4)["top_4_accuracy"] == 1.0
    table = per_class_metrics(y, proba, classes=classes)
    assert table["support"].sum() == 200
    assert list(table.index) == list(classes)
    with pytest.raises(ValueError, match="shape"):
        classification_metrics(y, proba[:, :3], classes=classes)


def test_n_bins_must_be_a_positive_integer():
    from sklearn.dummy import DummyClassifier

    y = np.array(["a", "b", "b", "a"])
    proba = np.array([[0.9, 0.1], [0.4, 0.6], [0.3, 0.7], [0.6, 0.4]])

    class NeverPredicts(DummyClassifier):
        def predict_proba(self, X):
            raise AssertionError("n_bins must be checked before predicting")

    fitted = NeverPredicts().fit(np.zeros((4, 1)), y)
    calls = [
        (reliability_curve, (y, proba)),
        (expected_calibration_error, (y, proba)),
        (classification_metrics, (y, proba)),
        (ReliabilityDisplay.from_predictions, (y, proba)),
        (ReliabilityDisplay.from_estimator, (fitted, np.zeros((4, 1)), y)),
    ]
    for bad in (0, -3, 2.5, True, None):
        for function, args in calls:
            with pytest.raises(ValueError, match="n_bins must be a positive integer"):
                function(*args, n_bins=bad)
    assert reliability_curve(y, proba, n_bins=np.int64(1))[2].tolist() == [4]


def test_top_k_at_or_above_the_number_of_classes_matches_scikit_learn():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.RandomState(0)
    y = rng.choice([0, 1, 2], 60)
    proba = rng.dirichlet(np.ones(3), 60)
    for k in (3, 5):
        with pytest.warns(UndefinedMetricWarning) as ours:
            value = classification_metrics(y, proba, top_k=k)[f"top_{k}_accuracy"]
        with pytest.warns(UndefinedMetricWarning) as theirs:
            expected = top_k_accuracy_score(y, proba, k=k, labels=[0, 1, 2])
        assert value == expected == 1.0
        assert str(ours[0].message) == str(theirs[0].message)
    # Two classes: top-1 by default, which is the accuracy (and no warning).
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        binary = classification_metrics(y % 2, np.c_[proba[:, 0], 1 - proba[:, 0]])
    assert binary["top_1_accuracy"] == binary["accuracy"]
    assert "top_2_accuracy" not in binary

    X = np.eye(3)[y] * 4 + rng.normal(0, 1, (60, 3))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = cross_validated_report(LogisticRegression(), X, y, cv=3, top_k=5,
                                        subgroups={"sex": np.arange(60) % 2})
    top_k_warnings = [w for w in caught if issubclass(w.category, UndefinedMetricWarning)
                      and "'k' (5)" in str(w.message)]
    assert len(top_k_warnings) == 1, "one warning per report, not per fold and subgroup"
    assert "top_k smaller than the number of classes" in str(top_k_warnings[0].message)
    assert report.pooled_metrics["top_5_accuracy"] == 1.0
    assert (report.fold_metrics["top_5_accuracy"] == 1.0).all()
    assert not report.summary.isna().any().any()


def test_metric_helpers_refuse_scores_and_warn_about_rows_off_one():
    from sklearn.metrics import log_loss

    y = np.array([0, 0, 1, 1])
    helpers = [
        classification_metrics,
        expected_calibration_error,
        reliability_curve,
        per_class_metrics,
        OneVsRestRocDisplay.from_predictions,
        ReliabilityDisplay.from_predictions,
    ]
    logits = np.array([[5.0, -3], [4, -2], [-1, 2], [3, 1]])
    for helper in helpers:
        # Scores used to give an "ECE" of 3.25 and a silently renormalized log loss.
        with pytest.raises(ValueError, match="values greater than 1: 5.0"):
            helper(y, logits)
        with pytest.raises(ValueError, match="values lower than 0"):
            helper(y, np.array([[1.1, -0.1], [1, 0], [0, 1], [0, 1]]) / 1.1)
        with pytest.raises(ValueError, match="NaN"):
            helper(y, np.array([[np.nan, 1], [1, 0], [0, 1], [0, 1]]))

    # Rows off 1 warn once, as scikit-learn's log_loss does, and are scored as given.
    off = np.array([[0.2, 0.2], [0.3, 0.1], [0.1, 0.3], [0.2, 0.2]])
    with pytest.warns(UserWarning, match=r"do not sum to one: 4 of 4 rows \(row 0 sums to 0.4\)"
                      ) as caught:
        m = classification_metrics(y, off)
    assert len([w for w in caught if "sum to one" in str(w.message)]) == 1
    with pytest.warns(UserWarning, match="do not sum to one"):
        expected = log_loss(y, off)
    assert m["log_loss"] == pytest.approx(expected)
    assert 0 <= m["ece"] <= 1

    # float32 softmax rows miss 1 by rounding only: no warning, also once cast to float64.
    rng = np.random.RandomState(0)
    z = rng.normal(0, 3, (200, 7)).astype(np.float32)
    proba = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    y7 = rng.randint(0, 7, 200)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for p in (proba, proba.astype(np.float64)):
            classification_metrics(y7, p, classes=np.arange(7))
            per_class_metrics(y7, p, classes=np.arange(7))


def test_subgroup_gap_names_two_different_groups_when_all_tie():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.RandomState(0)
    y = np.repeat([0, 1, 2], 20)
    X = np.eye(3)[y] * 10 + rng.normal(0, 0.1, (60, 3))  # every fold right everywhere
    sex = np.where(np.arange(60) % 2, "male", "female")
    report = cross_validated_report(LogisticRegression(), X, y, cv=3,
                                    subgroups={"sex": sex, "site": np.arange(60) % 3},
                                    min_subgroup_size=1)
    for metric in ["accuracy", "balanced_accuracy", "f1_macro", "roc_auc_ovr_macro"]:
        gap = report.subgroup_gaps.loc[("sex", metric)]
        assert report.subgroup_metrics["sex"][metric].tolist() == [1.0, 1.0]
        assert (gap["best_group"], gap["worst_group"], gap["gap"]) == ("female", "male", 0.0)
        site = report.subgroup_gaps.loc[("site", metric)]
        assert (site["best_group"], site["worst_group"]) == ("0", "2")
    assert "female" in str(report) and "male" in str(report)


# ------------------------------------------------------------------- report
def test_report_holds_out_of_fold_predictions_and_fold_metrics(report):
    report, _, groups = report
    n = len(report.y_true)
    assert report.y_proba.shape == (n, 3)
    np.testing.assert_allclose(report.y_proba.sum(axis=1), 1, rtol=1e-5)
    assert sorted(np.concatenate([test for _, test in report.folds]).tolist()) == list(range(n))
    for train, test in report.folds:
        assert not set(groups[train]) & set(groups[test])
    assert list(report.fold_metrics.index) == [0, 1, 2]
    assert report.fold_metrics["n_test"].sum() == n
    for name in [
        "accuracy",
        "balanced_accuracy",
        "f1_macro",
        "f1_weighted",
        "roc_auc_ovr_macro",
        "top_2_accuracy",
        "ece",
    ]:
        assert 0 <= report.pooled_metrics[name] <= 1, name
        assert report.summary.loc[name, "fold_mean"] == pytest.approx(
            report.fold_metrics[name].mean()
        )
    assert report.per_class["support"].sum() == n
    assert len(report.histories) == 3 and all(len(h) == 2 for h in report.histories)


def test_report_subgroups_and_gap(report):
    report, subgroups, _ = report
    sex = report.subgroup_metrics["sex"]
    assert set(sex.index) == {"female", "male"}
    assert sex["n_samples"].sum() == len(report.y_true)
    assert "missing" in report.subgroup_metrics["site"].index
    female = subgroups["sex"].to_numpy() == "female"
    assert sex.loc["female", "accuracy"] == pytest.approx(
        np.mean(report.y_pred[female] == report.y_true[female])
    )
    gap = report.subgroup_gaps.loc[("sex", "balanced_accuracy")]
    assert gap["gap"] == pytest.approx(
        sex["balanced_accuracy"].max() - sex["balanced_accuracy"].min()
    )
    assert gap["best"] >= gap["worst"]
    ece_gap = report.subgroup_gaps.loc[("site", "ece")]
    assert ece_gap["best"] <= ece_gap["worst"]  # lower ECE is better


def test_report_lists_subgroup_levels_in_natural_order():
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    X, y = load_digits(n_class=3, return_X_y=True)
    i = np.arange(len(y))
    # Ages as a CSV gives them (strings), numbers, pandas.cut bins and text with a missing value.
    age = np.array(["45.0", "2.0", "13.0", "22.0", "20.0", "unknown", "23.0", "21.0"])[i % 8]
    subgroups = {
        "age": age,
        "skin_type": (i % 6 + 1).astype(float),
        "age_band": pd.cut(i % 90, [-1, 9, 29, 89]),
        "site": np.array(["face", "back", None, "arm"], dtype=object)[i % 4],
    }
    report = cross_validated_report(
        LogisticRegression(max_iter=200), X / 16, y, cv=3, subgroups=subgroups
    )
    tables = report.subgroup_metrics
    assert list(tables["age"].index) == [
        "2.0", "13.0", "20.0", "21.0", "22.0", "23.0", "45.0", "unknown"
    ]
    assert list(tables["skin_type"].index) == ["1.0", "2.0", "3.0", "4.0", "5.0", "6.0"]
    assert list(tables["age_band"].index) == ["(-1, 9]", "(9, 29]", "(29, 89]"]
    assert list(tables["site"].index) == ["arm", "back", "face", "missing"]
    assert tables["site"].loc["missing", "n_samples"] == np.sum(i % 4 == 2)


def test_report_renders_as_text_markdown_and_self_contained_html(report, tmp_path):
    report, _, _ = report
    text = str(report)
    for section in ["Summary", "Per fold", "Per class", "Subgroup: sex", "Subgroup gaps"]:
        assert section in text
    assert "StratifiedGroupKFold" in text
    markdown = report.to_markdown()
    assert markdown.startswith("# Cross-validated report")
    assert re.search(r"^\| metric \| pooled \| fold_mean \| fold_std \|$", markdown, re.M)
    assert "| balanced_accuracy |" in markdown

    n_female = int(report.subgroup_metrics["sex"].loc["female", "n_samples"])
    assert f"| female | {n_female} | " in markdown  # counts whole, metrics with decimals
    page = report.to_html(tmp_path / "report.html")
    assert f"<th>female</th>\n      <td>{n_female}</td>" in page
    assert (tmp_path / "report.html").read_text(encoding="utf-8") == page
    images = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,([^"]+)"', page)
    assert [alt for alt, _ in images] == [
        "Confusion matrix",
        "One-vs-rest ROC curves",
        "Reliability diagram",
        "Training curves",
        "Prediction sets: coverage against size",  # the classifier keeps calibration scores
    ]
    for _, data in images:
        image = Image.open(io.BytesIO(base64.b64decode(data)))
        assert image.format == "PNG" and min(image.size) > 200
        # A drawn plot, not a blank canvas.
        assert len(np.unique(np.asarray(image.convert("L")))) > 10
    assert not re.search(r"(src|href)=\"(https?:|//|file:)", page)  # nothing loaded from elsewhere


def _three_classes(n_per_class=20, seed=0):
    rng = np.random.RandomState(seed)
    y = np.repeat([0, 1, 2], n_per_class)  # sorted: KFold(3) leaves one class out of each fold
    return np.eye(3)[y] * 3 + rng.normal(0, 1, (len(y), 3)), y


def test_report_warns_and_notes_a_class_missing_from_a_training_fold():
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import KFold

    X, y = _three_classes()
    with pytest.warns(RuntimeWarning, match="trained without class") as caught:
        report = cross_validated_report(LogisticRegression(), X, y, cv=KFold(3))
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert [m.split(" (")[0] for m in messages] == [
        f"Fold {k} trained without class {k}" for k in range(3)
    ]
    assert all("stratified" in m for m in messages)
    assert caught[0].filename == __file__  # the user's line, not the library's
    assert len(report.notes) == 3 and "fold 1 trained without class 1" in report.notes[1]
    # A saved report says so too.
    assert "Warning: fold 2 trained without class 2 (2 of 3 classes)" in report.to_text()
    assert "- Warning: fold 0 trained without class 0" in report.to_markdown()
    # Stratified folds train on every class: no warning, no note.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cross_validated_report(LogisticRegression(), X, y, cv=3).notes == []


class _ProbaAs(BaseEstimator):
    """Wrap LogisticRegression; ``transform`` turns its probabilities into what is tested."""

    def __init__(self, transform=None):
        self.transform = transform

    def fit(self, X, y):
        from sklearn.linear_model import LogisticRegression

        self.model_ = LogisticRegression().fit(X, y)
        self.classes_ = self.model_.classes_
        return self

    def predict_proba(self, X):
        return self.transform(self.model_.predict_proba(X))


def _float32_softmax(proba):
    z = np.log(proba).astype(np.float32) * np.float32(1.3)
    return np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)


def test_report_checks_the_estimators_probabilities():
    X, y = _three_classes()
    # float32 outputs (rows off 1 by rounding) pass without a word.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = cross_validated_report(_ProbaAs(_float32_softmax), X, y, cv=3)
    assert report.notes == [] and 0 <= report.pooled_metrics["ece"] <= 1
    # Rows off 1 warn once per report, not per fold, subgroup and plot, and are noted.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = cross_validated_report(_ProbaAs(lambda p: p * 0.5), X, y, cv=3,
                                        subgroups={"sex": np.arange(60) % 2})
        report.to_html()
    off = [w for w in caught if "do not sum to one" in str(w.message)]
    assert len(off) == 1 and issubclass(off[0].category, UserWarning)
    assert "60 of 60 rows from _ProbaAs.predict_proba" in str(off[0].message)
    assert "Warning: y_proba rows do not sum to one" in report.to_text()
    # Scores are not probabilities: refused, naming the folds.
    with pytest.raises(ValueError, match=r"returned values greater than 1 \(fold 0, 1, 2\)"):
        cross_validated_report(_ProbaAs(lambda p: p * 5), X, y, cv=3)
    with pytest.raises(ValueError, match=r"returned NaN or infinity \(fold 0, 1, 2\)"):
        cross_validated_report(_ProbaAs(lambda p: p * np.nan), X, y, cv=3)


class _NeverFitted(BaseEstimator):
    def fit(self, X, y):
        raise AssertionError("y must be checked before any fit")


def test_report_checks_y_before_any_warning_or_fit():
    X = np.zeros((60, 2))
    cases = [
        (np.array([0, "mel"] * 30, dtype=object), r"Mix of label input types \(string and "
                                                  r"number\)"),
        (np.zeros(60), r"at least 2 classes for a report, got 1 class \(0.0\)"),
        (np.array(["mel"] * 60), r"got 1 class \('mel'\)"),
        (np.array(["mel", None] * 30, dtype=object), "30 missing labels"),
        (np.linspace(0, 1, 60), "Unknown label type"),
    ]
    for y, message in cases:
        with warnings.catch_warnings():
            # A single class used to warn about top_k first, then fail in the solver.
            warnings.simplefilter("error")
            with pytest.raises(ValueError, match=message):
                cross_validated_report(_NeverFitted(), X, y, cv=3)


def test_report_takes_subgroup_columns_of_shape_n_by_1():
    from sklearn.linear_model import LogisticRegression

    X, y = _three_classes()
    sex = np.where(np.arange(60) % 2, "male", "female")
    flat = cross_validated_report(LogisticRegression(), X, y, cv=3, subgroups={"sex": sex})
    column = cross_validated_report(LogisticRegression(), X, y, cv=3,
                                    subgroups={"sex": sex[:, None]})
    pd.testing.assert_frame_equal(column.subgroup_metrics["sex"], flat.subgroup_metrics["sex"])
    frame = cross_validated_report(LogisticRegression(), X, y, cv=3,
                                   subgroups={"sex": pd.DataFrame({"s": sex})})
    pd.testing.assert_frame_equal(frame.subgroup_metrics["sex"], flat.subgroup_metrics["sex"])
    with pytest.raises(ValueError, match=r"subgroup 'site' must have one value per sample.*"
                                         r"got shape \(60, 2\)"):
        cross_validated_report(_NeverFitted(), X, y, cv=3, subgroups={"site": np.zeros((60, 2))})


@pytest.mark.filterwarnings("ignore:The groups parameter is ignored")
def test_groups_must_stay_on_one_side():
    X, y = make_synthetic_lesions(n_samples=24, image_size=(16, 16), n_classes=2, random_state=0)
    groups = np.arange(len(y)) // 4
    with pytest.raises(ValueError, match="both its training and its test part"):
        cross_validated_report(
            tiny_classifier(),
            X,
            y,
            groups=groups,
            cv=StratifiedKFold(2, shuffle=True, random_state=0),
        )


# ------------------------------------------------------------------ displays
def test_displays_follow_scikit_learn_conventions(report):
    report, _, _ = report
    fig = Figure()
    ax = fig.add_subplot()
    roc = OneVsRestRocDisplay.from_predictions(report.y_true, report.y_proba, ax=ax)
    assert roc.ax_ is ax and roc.figure_ is fig and len(roc.lines_) == 3
    np.testing.assert_allclose(np.nanmean(roc.roc_auc), report.pooled_metrics["roc_auc_ovr_macro"])
    rel = ReliabilityDisplay.from_predictions(report.y_true, report.y_proba, n_bins=10)
    assert rel.ece == pytest.approx(report.pooled_metrics["ece"])
    assert rel.counts.sum() == len(report.y_true)

    clf = tiny_classifier(max_epochs=3)
    X, y = make_synthetic_lesions(n_samples=30, image_size=(32, 32), n_classes=3, random_state=2)
    clf.fit(X, y)
    curves = TrainingCurvesDisplay.from_estimator(Pipeline([("clf", clf)]))
    assert set(curves.lines_) == {"train_loss", "valid_loss", "valid_bacc"}
    np.testing.assert_allclose(
        curves.lines_["valid_bacc"][0].get_ydata(), [row["valid_bacc"] for row in clf.history_]
    )
    roc2 = OneVsRestRocDisplay.from_estimator(clf, X, y)
    assert roc2.estimator_name == "SkinLesionClassifier"
    with pytest.raises(ValueError, match="history"):
        TrainingCurvesDisplay.from_estimator(object())


def test_training_curves_of_a_fitted_search_show_its_best_estimator():
    # As the ROC and reliability displays take a fitted search, so do the training curves:
    # the history is that of best_estimator_ (here a Pipeline), the model the search predicts with.
    X, y = make_synthetic_lesions(n_samples=24, image_size=(32, 32), n_classes=2, random_state=3)
    pipe = Pipeline([("id", "passthrough"), ("clf", tiny_classifier(max_epochs=2))])
    search = GridSearchCV(pipe, {"clf__lr": [1e-3]}, cv=2).fit(X, y)
    curves = TrainingCurvesDisplay.from_estimator(search)
    np.testing.assert_allclose(
        curves.lines_["valid_bacc"][0].get_ydata(),
        [row["valid_bacc"] for row in search.best_estimator_[-1].history_],
    )
    assert curves.ax_.get_title() == "GridSearchCV: training curves"
    assert OneVsRestRocDisplay.from_estimator(search, X, y).estimator_name == "GridSearchCV"
    # Refitted with refit=False, the search keeps the earlier best_estimator_, stale.
    search.set_params(refit=False).fit(X, y)
    with pytest.raises(ValueError, match=r"GridSearchCV has no best_estimator_ \(fitted with "
                       r"refit=False\)"):
        TrainingCurvesDisplay.from_estimator(search)


# ------------------------------------------------------------- HAM10000
_FITTED_ON: list[np.ndarray] = []


class _RecordTrainingPaths(TransformerMixin, BaseEstimator):
    """Pass-through step that records which files each fold's model was fitted on."""

    def fit(self, X, y=None):
        _FITTED_ON.append(np.asarray(X).copy())
        return self

    def transform(self, X):
        return X


@pytest.mark.realdata
@pytest.mark.filterwarnings("ignore:The groups parameter is ignored")
@pytest.mark.skipif(
    not (HAM / "HAM10000_metadata.csv").exists(), reason=f"HAM10000 not found in {HAM}"
)
def test_ham10000_report_never_splits_a_lesion():
    paths, labels, lesion_ids = load_ham10000(HAM)
    paths, labels, lesion_ids = map(np.asarray, (paths, labels, lesion_ids))
    rng = np.random.RandomState(0)
    # Lesions with several images make the check bite; singles fill the classes.
    counts = pd.Series(lesion_ids).value_counts()
    multi = rng.choice(counts.index[counts >= 2], 60, replace=False)
    single = rng.choice(counts.index[counts == 1], 60, replace=False)
    keep = np.isin(lesion_ids, np.concatenate([multi, single]))
    paths, labels, lesion_ids = paths[keep], labels[keep], lesion_ids[keep]

    _FITTED_ON.clear()
    pipe = Pipeline([("record", _RecordTrainingPaths()), ("clf", tiny_classifier(max_epochs=1))])
    report = cross_validated_report(pipe, paths, labels, groups=lesion_ids, cv=3)

    assert len(_FITTED_ON) == 3
    for trained_on, (_, test) in zip(_FITTED_ON, report.folds, strict=True):
        train_lesions = set(lesion_ids[np.isin(paths, trained_on)])
        assert len(trained_on) == len(paths) - len(test)
        assert not train_lesions & set(lesion_ids[test])
    assert report.y_proba.shape == (len(paths), len(np.unique(labels)))
    # The same split without groups would put lesions on both sides, and is refused.
    with pytest.raises(ValueError, match="both its training and its test part"):
        cross_validated_report(
            pipe,
            paths,
            labels,
            groups=lesion_ids,
            cv=StratifiedKFold(3, shuffle=True, random_state=0),
        )
