"""scikit-learn's own searches on SkinLesionClassifier and on a Pipeline holding it."""

import numpy as np
import pytest
from scipy.stats import loguniform
from sklearn.experimental import enable_halving_search_cv  # noqa: F401
from sklearn.model_selection import (
    GridSearchCV,
    GroupKFold,
    HalvingGridSearchCV,
    RandomizedSearchCV,
    StratifiedGroupKFold,
)
from sklearn.pipeline import Pipeline

from skinestimator import (
    ImageLoader,
    load_image_folder,
    make_synthetic_lesions,
    save_image_folder,
)
from tests.conftest import tiny_classifier


@pytest.fixture(scope="module")
def lesions():
    X, y = make_synthetic_lesions(n_samples=48, image_size=(32, 32), n_classes=3, random_state=0)
    # Two images per "lesion", as in HAM10000.
    groups = np.repeat(np.arange(len(y) // 2), 2)
    order = np.argsort(groups, kind="stable")
    return X[order], y[order], groups


@pytest.fixture(scope="module")
def lesion_files(tmp_path_factory):
    X, y = make_synthetic_lesions(n_samples=36, image_size=(40, 40), n_classes=3, random_state=1)
    root = tmp_path_factory.mktemp("lesion_files")
    save_image_folder(X, y, root)
    paths, labels = load_image_folder(root)
    return paths, labels, np.arange(len(paths)) // 2


def test_grid_search_on_classifier_in_parallel_with_refit(lesions):
    X, y, _ = lesions
    search = GridSearchCV(
        tiny_classifier(), {"lr": [1e-3, 1e-2]}, cv=2, n_jobs=2, scoring="balanced_accuracy"
    ).fit(X, y)
    assert len(search.cv_results_["params"]) == 2
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    assert search.best_params_["lr"] in (1e-3, 1e-2)
    assert search.best_estimator_.lr == search.best_params_["lr"]
    assert search.predict_proba(X[:4]).shape == (4, 3)
    assert set(search.classes_) == set(y)


def test_grid_search_on_pipeline_with_groups(lesion_files):
    paths, labels, groups = lesion_files
    pipe = Pipeline(
        [("load", ImageLoader(size=(32, 32))), ("clf", tiny_classifier(image_size=None))]
    )
    grid = {"clf__lr": [3e-3], "load__size": [(24, 24), (32, 32)]}
    cv = StratifiedGroupKFold(n_splits=2)
    search = GridSearchCV(pipe, grid, cv=cv, n_jobs=2).fit(paths, labels, groups=groups)
    assert search.best_params_["load__size"] in ((24, 24), (32, 32))
    # The network was trained at the size the loader produced.
    clf = search.best_estimator_.named_steps["clf"]
    assert clf.image_size_ == search.best_params_["load__size"]
    assert search.predict(paths[:3]).shape == (3,)
    for train, test in cv.split(paths, labels, groups):
        assert not set(groups[train]) & set(groups[test])


def test_randomized_search_with_group_kfold_without_refit(lesions):
    X, y, groups = lesions
    search = RandomizedSearchCV(
        tiny_classifier(),
        {"lr": loguniform(1e-4, 1e-2), "weight_decay": [0.0, 1e-2]},
        n_iter=2,
        cv=GroupKFold(n_splits=2),
        refit=False,
        random_state=0,
    ).fit(X, y, groups=groups)
    assert len(search.cv_results_["params"]) == 2
    assert not hasattr(search, "best_estimator_")
    assert 1e-4 <= search.best_params_["lr"] <= 1e-2


def test_halving_grid_search_on_classifier(lesions):
    X, y, groups = lesions
    search = HalvingGridSearchCV(
        tiny_classifier(),
        {"lr": [1e-4, 3e-3, 1e-2]},
        factor=2,
        min_resources=24,
        cv=StratifiedGroupKFold(n_splits=2),
        n_jobs=2,
        random_state=0,
    ).fit(X, y, groups=groups)
    # Successive halving: the second iteration gets more images and fewer candidates.
    assert list(search.n_resources_) == [24, 48]
    assert list(search.n_candidates_) == [3, 2]
    assert search.best_estimator_.predict(X[:2]).shape == (2,)
