"""OptunaLesionSearchCV: tags, search space, pruning, persistent studies, groups."""

import subprocess
import sys
import textwrap

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState
from sklearn import config_context
from sklearn.base import is_classifier
from sklearn.exceptions import FitFailedWarning
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, check_cv
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from skinestimator import ImageLoader, make_synthetic_lesions
from skinestimator.model_selection import (
    OptunaLesionSearchCV,
    check_group_cv,
    default_search_space,
    fit_grouped,
)
from tests.conftest import tiny_classifier as base_tiny_classifier

LR_ONLY = {"lr": FloatDistribution(1e-8, 1e-1, log=True)}


@pytest.fixture(scope="module")
def lesions():
    return make_synthetic_lesions(n_samples=60, image_size=(32, 32), n_classes=3, random_state=0)


def tiny_classifier(**params):
    return base_tiny_classifier(**{"max_epochs": 3, **params})


def test_search_is_a_classifier_so_cv_around_it_stratifies():
    search = OptunaLesionSearchCV(tiny_classifier())
    assert is_classifier(search)
    assert is_classifier(OptunaLesionSearchCV(Pipeline([("clf", tiny_classifier())])))
    y = np.array(["a", "b"] * 10)
    assert isinstance(check_cv(5, y, classifier=is_classifier(search)), StratifiedKFold)


def test_default_space_covers_classifier_and_pipeline_and_can_be_edited():
    clf = tiny_classifier()
    space = default_search_space(clf)
    # No finetune for seed_cnn: freezing random convolutions makes no sense.
    assert set(space) == {"lr", "weight_decay", "batch_size", "augment", "image_size"}
    assert space["lr"].log and space["weight_decay"].log
    assert 32 in space["image_size"].choices  # squares as ints, as older studies hold them

    pipe = Pipeline([("load", ImageLoader(size=(32, 32))), ("clf", clf)])
    assert set(default_search_space(pipe)) == {f"clf__{name}" for name in space}

    search = OptunaLesionSearchCV(
        clf,
        {
            "lr": FloatDistribution(1e-3, 1e-2, log=True),  # override
            "max_epochs": [1, 2],  # extend, a list becomes a categorical
            "image_size": None,  # remove
        },
    )
    from skinestimator.model_selection._space import merge_search_space

    merged = merge_search_space(clf, search.param_distributions, search.default_space)
    assert merged["lr"].low == 1e-3
    assert merged["max_epochs"] == CategoricalDistribution([1, 2])
    assert "image_size" not in merged
    with pytest.raises(ValueError, match="Invalid parameter"):
        merge_search_space(clf, {"no_such_param": [1]}, True)

    from skinestimator.model_selection._optuna import _epoch_stride

    # Fold k's epochs are steps k*stride...: one stride even when max_epochs is searched.
    assert _epoch_stride(clf, merged) == 2
    assert _epoch_stride(clf, space) == clf.max_epochs


def test_pruning_stops_a_deliberately_bad_trial(lesions):
    X, y = lesions
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage, study_name="prune", direction="maximize")
    for _ in range(2):
        study.enqueue_trial({"lr": 1e-2})
    study.enqueue_trial({"lr": 1e-8})  # cannot learn anything in 3 epochs
    search = OptunaLesionSearchCV(
        tiny_classifier(),
        LR_ONLY,
        default_space=False,
        n_trials=3,
        cv=2,
        storage=storage,
        study_name="prune",
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0),
        random_state=0,
    ).fit(X, y)

    states = {t.params["lr"]: t.state for t in search.study_.trials}
    assert states[1e-8] == TrialState.PRUNED
    assert states[1e-2] == TrialState.COMPLETE
    bad = next(t for t in search.study_.trials if t.params["lr"] == 1e-8)
    good = next(t for t in search.study_.trials if t.params["lr"] == 1e-2)
    # Stopped per epoch: fewer epochs reported than a full trial (2 folds x 3 epochs).
    assert len(bad.intermediate_values) < len(good.intermediate_values) == 6
    # Each fold has its own step range, so the second fold's epochs were reported too.
    assert sorted(good.intermediate_values)[3:] == [3, 4, 5]

    results = search.cv_results_
    pruned = results["state"] == "PRUNED"
    assert pruned.sum() == 1
    assert np.isnan(results["mean_test_score"][pruned]).all()
    assert results["rank_test_score"][pruned][0] == len(pruned)
    assert search.best_params_ == {"lr": 1e-2}
    assert search.predict(X[:5]).shape == (5,)
    assert set(search.classes_) == set(y)


RESUME_SCRIPT = """
import sys
from optuna.distributions import FloatDistribution
from skinestimator import SkinLesionClassifier, make_synthetic_lesions
from skinestimator.model_selection import OptunaLesionSearchCV

X, y = make_synthetic_lesions(n_samples=60, image_size=(32, 32), n_classes=3, random_state=0)
clf = SkinLesionClassifier(backbone="seed_cnn", image_size=(32, 32), max_epochs=1, batch_size=16,
                           validation_fraction=0.25, patience=None, augment=0.0, num_workers=0,
                           random_state=0)
search = OptunaLesionSearchCV(clf, {{"lr": FloatDistribution(1e-4, 1e-1, log=True)}},
                              default_space=False, n_trials=2, cv=2, refit=False,
                              storage=sys.argv[1], study_name="resume", verbose=1,
                              random_state=0)
search.fit(X, y)
print("trials", len(search.study_.trials))
"""


def test_sqlite_study_resumes_in_a_second_process(lesions, tmp_path):
    X, y = lesions
    db = tmp_path / "search.db"
    script = tmp_path / "first.py"
    script.write_text(textwrap.dedent(RESUME_SCRIPT.format()))
    first = subprocess.run(
        [sys.executable, str(script), f"sqlite:///{db}"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert first.returncode == 0, first.stderr
    assert "trials 2" in first.stdout
    assert "2/2" in first.stderr  # verbose=1 shows a progress bar over trials

    # A plain file path means the same SQLite file; two trials run in parallel threads.
    search = OptunaLesionSearchCV(
        tiny_classifier(max_epochs=1),
        {"lr": FloatDistribution(1e-4, 1e-1, log=True)},
        default_space=False,
        n_trials=2,
        n_jobs=2,
        cv=2,
        storage=str(db),
        study_name="resume",
        random_state=1,
    ).fit(X, y)

    assert len(search.study_.trials) == 4
    results = search.cv_results_
    assert sorted(results["number"]) == [0, 1, 2, 3]
    assert len(set(results["worker"])) == 2  # trials of both processes
    # The first process's per-fold scores survived in the database.
    assert np.isfinite(results["split0_test_score"]).all()
    assert np.isfinite(results["split1_test_score"]).all()
    assert search.best_score_ == np.nanmax(results["mean_test_score"])
    # Resuming again in this process sees all four trials as well.
    again = optuna.load_study(study_name="resume", storage=f"sqlite:///{db}")
    assert len(again.trials) == 4


def test_groups_keep_lesions_on_one_side(lesions):
    X, y = lesions
    groups = np.arange(len(y)) // 3
    assert isinstance(check_group_cv(3, y, groups), StratifiedGroupKFold)
    overlapping = [(np.arange(0, 40), np.arange(38, 60))]  # group 12 on both sides
    search = OptunaLesionSearchCV(tiny_classifier(), LR_ONLY, default_space=False, cv=overlapping)
    with pytest.raises(ValueError, match="both its training and its test part"):
        search.fit(X, y, groups=groups)


def test_search_on_a_pipeline_reports_epochs_through_the_step_callbacks(lesions):
    X, y = lesions
    pipe = Pipeline([("clf", tiny_classifier(max_epochs=2))])
    search = OptunaLesionSearchCV(
        pipe,
        {"clf__lr": FloatDistribution(1e-3, 1e-2, log=True), "clf__image_size": [24, 32]},
        default_space=False,
        n_trials=2,
        cv=2,
        random_state=0,
    ).fit(X, y)
    assert set(search.best_params_) == {"clf__lr", "clf__image_size"}
    assert search.best_params_["clf__image_size"] in ((24, 24), (32, 32))
    assert (
        search.best_estimator_.named_steps["clf"].image_size_
        == (search.best_params_["clf__image_size"])
    )
    # 2 folds x 2 epochs reported per trial through clf__callbacks.
    assert all(len(t.intermediate_values) == 4 for t in search.study_.trials)
    assert search.predict_proba(X[:3]).shape == (3, 3)


def test_inner_validation_split_is_grouped_too(lesions):
    # fit(groups=) itself holds out whole groups (tested in test_classifier.py); fit_grouped
    # must make exactly that fit, not an ungrouped one.
    X, y = lesions
    groups = np.arange(len(y)) // 3
    clf = tiny_classifier(max_epochs=1)
    assert fit_grouped(clf, X, y, groups) is clf
    assert "valid_bacc" in clf.history_[0]
    direct = tiny_classifier(max_epochs=1).fit(X, y, groups=groups)
    np.testing.assert_allclose(clf.predict_proba(X[:4]), direct.predict_proba(X[:4]), atol=1e-6)
    ungrouped = tiny_classifier(max_epochs=1).fit(X, y)
    assert not np.allclose(clf.predict_proba(X[:4]), ungrouped.predict_proba(X[:4]), atol=1e-6)


def test_fit_grouped_reaches_the_last_step_of_a_pipeline(lesions):
    X, y = lesions
    groups = np.arange(len(y)) // 3
    pipe = Pipeline([("scale", FunctionTransformer()), ("clf", tiny_classifier(max_epochs=1))])
    fit_grouped(pipe, X, y, groups)
    direct = tiny_classifier(max_epochs=1).fit(X, y, groups=groups)
    np.testing.assert_allclose(pipe.predict_proba(X[:4]), direct.predict_proba(X[:4]), atol=1e-6)


def test_fit_grouped_follows_metadata_routing(lesions):
    import warnings

    X, y = lesions
    groups = np.arange(len(y)) // 3
    direct = tiny_classifier(max_epochs=1).fit(X, y, groups=groups)

    def unrouted_warnings(record):
        return [w for w in record if "set_fit_request(groups=True)" in str(w.message)]

    with config_context(enable_metadata_routing=True):
        requested = tiny_classifier(max_epochs=1).set_fit_request(groups=True)
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            pipe = fit_grouped(Pipeline([("clf", requested)]), X, y, groups)
            declined = tiny_classifier(max_epochs=1).set_fit_request(groups=False)
            fit_grouped(Pipeline([("clf", declined)]), X, y, groups)
        assert not unrouted_warnings(record)
        # Without the request a routed Pipeline must not be handed groups (it would raise),
        # and the step's early stopping would silently score on lesions it trained on: warn.
        with pytest.warns(UserWarning, match=r"'clf'.*set_fit_request\(groups=True\)"):
            fit_grouped(Pipeline([("clf", tiny_classifier(max_epochs=1))]), X, y, groups)
    # The requested step got the groups: the same model as a direct grouped fit.
    np.testing.assert_allclose(pipe.predict_proba(X[:4]), direct.predict_proba(X[:4]), atol=1e-6)


def test_pruning_needs_the_inner_validation_split(lesions):
    X, y = lesions
    search = OptunaLesionSearchCV(
        tiny_classifier(validation_fraction=None), LR_ONLY, default_space=False, n_trials=1
    )
    with pytest.raises(ValueError, match="validation_fraction"):
        search.fit(X, y)


@pytest.mark.parametrize(
    "params, message",
    [
        ({"n_trials": 0}, "n_trials"),
        ({"n_trials": None, "timeout": None}, "never ends"),
        ({"n_jobs": 0}, "n_jobs"),
        ({"storage": 3}, "storage"),
        # Refused before any trial is fitted, not after every trial failed.
        ({"scoring": ["accuracy", "balanced_accuracy"]}, "multi-metric scoring"),
        ({"scoring": ("accuracy",)}, "multi-metric scoring"),
        ({"scoring": {"acc": "accuracy"}}, "multi-metric scoring"),
        ({"refit": "balanced_accuracy"}, "refit must be True, False or a callable"),
    ],
)
def test_invalid_parameters_are_rejected_in_fit(lesions, params, message):
    X, y = lesions
    search = OptunaLesionSearchCV(tiny_classifier(), LR_ONLY, default_space=False, **params)
    with pytest.raises((ValueError, TypeError), match=message):
        search.fit(X, y)


def test_refit_false_leaves_no_estimator(lesions):
    X, y = lesions
    search = OptunaLesionSearchCV(
        tiny_classifier(max_epochs=1),
        LR_ONLY,
        default_space=False,
        n_trials=1,
        cv=2,
        refit=False,
        pruner=optuna.pruners.NopPruner(),
    ).fit(X, y)
    assert not hasattr(search, "best_estimator_")
    with pytest.raises(AttributeError, match="refit"):
        search.predict(X)


def test_default_space_keeps_the_aspect_ratio_and_skips_finetune_without_pretraining():
    clf = base_tiny_classifier(backbone="efficientnet_lite0", image_size=(150, 200))
    space = default_search_space(clf)
    sizes = space["image_size"].choices
    assert (150, 200) in sizes  # the classifier's own size
    assert all(abs(h / w - 0.75) < 0.02 for h, w in sizes)
    assert all(h % 8 == 0 and w % 8 == 0 for h, w in sizes if (h, w) != (150, 200))
    assert "finetune" in space
    assert "finetune" not in default_search_space(base_tiny_classifier())  # seed_cnn
    assert "finetune" not in default_search_space(base_tiny_classifier(backbone=lambda n: None))
    assert "finetune" not in default_search_space(
        Pipeline([("clf", base_tiny_classifier(backbone="resnet18", pretrained=False))])
    )
    assert "clf__finetune" in default_search_space(
        Pipeline([("clf", base_tiny_classifier(backbone="resnet18"))])
    )


def _lr_trials(search):
    return [t.params["lr"] for t in search.study_.trials]


def test_resumed_study_samples_new_parameters_but_fresh_search_is_reproducible(lesions):
    X, y = lesions

    def search(storage, **params):
        return OptunaLesionSearchCV(
            tiny_classifier(max_epochs=1),
            LR_ONLY,
            default_space=False,
            n_trials=2,
            cv=2,
            refit=False,
            storage=storage,
            study_name="resume",
            pruner=optuna.pruners.NopPruner(),
            random_state=0,
            **params,
        ).fit(X, y)

    storage = optuna.storages.InMemoryStorage()
    first = _lr_trials(search(storage))
    resumed = _lr_trials(search(storage))
    assert resumed[:2] == first
    # Rebuilding TPESampler(seed=0) would draw the same two start-up values again.
    assert not set(resumed[2:]) & set(first)
    # A fresh study with the same random_state gives the same trials, resumed ones too.
    other = optuna.storages.InMemoryStorage()
    assert _lr_trials(search(other)) == first
    assert _lr_trials(search(other)) == resumed


def test_a_random_state_instance_seeds_the_sampler(lesions):
    # scikit-learn's convention: a RandomState gives a seed drawn from it. TPESampler itself only
    # takes ints, so passing the instance through used to end in a TypeError before any trial.
    X, y = lesions

    def trials(random_state):
        return _lr_trials(OptunaLesionSearchCV(
            tiny_classifier(max_epochs=1), LR_ONLY, default_space=False, n_trials=2, cv=2,
            refit=False, pruner=optuna.pruners.NopPruner(), random_state=random_state,
        ).fit(X, y))

    assert trials(np.random.RandomState(3)) == trials(np.random.RandomState(3))


def test_resuming_with_other_cv_or_scoring_is_refused(lesions):
    X, y = lesions
    storage = optuna.storages.InMemoryStorage()

    def search(**params):
        return OptunaLesionSearchCV(
            tiny_classifier(max_epochs=1),
            LR_ONLY,
            **{
                "default_space": False,
                "n_trials": 1,
                "cv": 2,
                "refit": False,
                "storage": storage,
                "study_name": "settings",
                "pruner": optuna.pruners.NopPruner(),
                "random_state": 0,
                **params,
            },
        )

    search().fit(X, y)
    with pytest.raises(ValueError, match=r"n_splits=2 there, 3 here.*another study_name"):
        search(cv=3).fit(X, y)
    with pytest.raises(ValueError, match="scoring='balanced_accuracy' there, 'accuracy' here"):
        search(scoring="accuracy").fit(X, y)
    with pytest.raises(ValueError, match="n_samples=60 there, 45 here"):
        search().fit(X[:45], y[:45])
    # Nothing was mixed in; the same settings resume, another study_name starts afresh.
    assert len(search().fit(X, y).study_.trials) == 2
    fresh = search(cv=3, study_name="settings-3fold").fit(X, y)
    assert fresh.n_splits_ == 3 and len(fresh.study_.trials) == 1


def test_a_failing_trial_is_marked_failed_and_the_search_goes_on(lesions):
    X, y = lesions
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage, study_name="fail", direction="maximize")
    study.enqueue_trial({"batch_size": "a"})
    study.enqueue_trial({"batch_size": 16})
    search = OptunaLesionSearchCV(
        tiny_classifier(max_epochs=1),
        {"batch_size": [16, "a"]},
        default_space=False,
        n_trials=2,
        cv=2,
        storage=storage,
        study_name="fail",
        pruner=optuna.pruners.NopPruner(),
    )
    with pytest.warns(FitFailedWarning, match=r"'batch_size': 'a'.*error_score=nan.*batch_size"):
        search.fit(X, y)
    assert list(search.cv_results_["state"]) == ["FAIL", "COMPLETE"]
    assert np.isnan(search.cv_results_["mean_test_score"][0])
    assert "batch_size" in search.study_.trials[0].user_attrs["error"]
    assert search.best_params_ == {"batch_size": 16}
    assert search.predict(X[:2]).shape == (2,)

    # A number completes the trial with that score.
    optuna.create_study(
        storage=storage, study_name="fail-number", direction="maximize"
    ).enqueue_trial({"batch_size": "a"})
    search.set_params(error_score=-1.0, n_trials=1, study_name="fail-number", refit=False)
    with pytest.warns(FitFailedWarning):
        search.fit(X, y)
    assert search.cv_results_["mean_test_score"][0] == -1.0
    assert search.cv_results_["state"][0] == "COMPLETE"


def test_error_score_raise_and_all_trials_failing(lesions):
    X, y = lesions
    params = dict(default_space=False, n_trials=2, cv=2, pruner=optuna.pruners.NopPruner())
    clf = tiny_classifier(max_epochs=1)
    search = OptunaLesionSearchCV(clf, {"batch_size": ["a"]}, error_score="raise", **params)
    with pytest.raises(ValueError, match="batch_size"):
        search.fit(X, y)
    search = OptunaLesionSearchCV(clf, {"batch_size": ["a"]}, **params)
    with pytest.warns(FitFailedWarning):
        with pytest.raises(ValueError, match=r"(?s)No trial completed: 2 trial\(s\).*batch_size"):
            search.fit(X, y)
    with pytest.raises(ValueError, match="error_score"):
        OptunaLesionSearchCV(clf, {"batch_size": [16]}, error_score="nan", **params).fit(X, y)


def test_tuple_choices_come_back_as_tuples_without_warnings(lesions, tmp_path):
    X, y = lesions
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        search = OptunaLesionSearchCV(
            tiny_classifier(max_epochs=1),
            {"image_size": [(24, 24), (32, 32)], "lr": [1e-2]},
            default_space=False,
            n_trials=2,
            cv=2,
            storage=str(tmp_path / "tuples.db"),
            pruner=optuna.pruners.NopPruner(),
            random_state=0,
        ).fit(X, y)
    assert search.best_params_["image_size"] in ((24, 24), (32, 32))
    assert type(search.best_params_["image_size"]) is tuple
    results = search.cv_results_
    assert results["param_image_size"].shape == (2,)
    assert list(results["param_image_size"]) == [p["image_size"] for p in results["params"]]
    assert all(type(v) is tuple for v in results["param_image_size"])
    assert search.best_estimator_.image_size_ == search.best_params_["image_size"]
    # The study stores readable labels.
    assert {t.params["image_size"] for t in search.study_.trials} <= {"(24, 24)", "(32, 32)"}


def test_a_pipeline_in_the_search_gets_groups_and_the_docstrings_say_so(lesions):
    from skinestimator import SkinLesionClassifier
    from skinestimator.reports import cross_validated_report

    seen = []

    class SpyClassifier(SkinLesionClassifier):
        def fit(self, X, y, groups=None):
            seen.append(groups)
            return super().fit(X, y, groups=groups)

    X, y = lesions
    groups = np.arange(len(y)) // 3
    spy = SpyClassifier(**tiny_classifier(max_epochs=1).get_params())
    OptunaLesionSearchCV(
        Pipeline([("clf", spy)]),
        {"clf__lr": [1e-2]},
        default_space=False,
        n_trials=1,
        cv=2,
        pruner=optuna.pruners.NopPruner(),
    ).fit(X, y, groups=groups)
    assert len(seen) == 3 and all(g is not None for g in seen)  # 2 folds + refit
    for doc in (OptunaLesionSearchCV.fit.__doc__, cross_validated_report.__doc__):
        assert "not a Pipeline" not in doc
        assert "Pipeline ending in one" in doc


# ------------------------------------------------------------------ reviewed bugs
def _linear_data(n=60):
    rng = np.random.RandomState(0)
    X, y = rng.rand(n, 3), np.arange(n) % 2
    X[:, 0] += 0.5 * y
    return X, y


def _linear_search(param_distributions, **params):
    from sklearn.linear_model import LogisticRegression

    return OptunaLesionSearchCV(
        LogisticRegression(),
        param_distributions,
        **{"default_space": False, "n_trials": 2, "cv": 2, "random_state": 0, **params},
    )


def test_resuming_with_scoring_none_after_a_named_scoring_is_refused():
    # None used to be recorded as "unknown" and skipped, so accuracy-like scores were ranked
    # together with the stored balanced accuracies.
    X, y = _linear_data()
    storage = optuna.storages.InMemoryStorage()
    params = dict(storage=storage, study_name="scoring-none")
    _linear_search({"C": [0.1, 1.0]}, scoring="balanced_accuracy", **params).fit(X, y)
    with pytest.raises(
        ValueError, match="scoring='balanced_accuracy' there, \"the estimator's score method\""
    ):
        _linear_search({"C": [0.1, 1.0]}, scoring=None, **params).fit(X, y)
    # The other way round too, while the same None resumes.
    params["study_name"] = "scoring-none-first"
    _linear_search({"C": [0.1, 1.0]}, scoring=None, **params).fit(X, y)
    with pytest.raises(ValueError, match="score method\" there, 'balanced_accuracy' here"):
        _linear_search({"C": [0.1, 1.0]}, scoring="balanced_accuracy", **params).fit(X, y)
    resumed = _linear_search({"C": [0.1, 1.0]}, scoring=None, **params).fit(X, y)
    assert len(resumed.study_.trials) == 4


def test_a_callable_refit_picks_the_row_as_in_grid_search():
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV

    X, y = _linear_data(80)
    grid = {"C": [1e-3, 1e-2, 1.0, 100.0]}

    def smallest_c(results):
        return int(np.argmin([p["C"] for p in results["params"]]))

    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage, study_name="grid", direction="maximize")
    for c in grid["C"]:
        study.enqueue_trial({"C": c})
    search = _linear_search(
        grid, n_trials=4, storage=storage, study_name="grid", refit=smallest_c
    ).fit(X, y)
    gs = GridSearchCV(LogisticRegression(), grid, cv=2, refit=smallest_c).fit(X, y)

    assert search.best_params_ == gs.best_params_ == {"C": 1e-3}
    assert search.best_estimator_.C == 1e-3
    # The smallest C is not the best scoring: the callable, not the score, chose.
    assert search.cv_results_["rank_test_score"][search.best_index_] > 1
    assert search.cv_results_["params"][search.best_index_] == {"C": 1e-3}
    assert search.best_trial_.number == search.cv_results_["number"][search.best_index_]
    assert not hasattr(search, "best_score_") and not hasattr(gs, "best_score_")

    with pytest.raises(IndexError, match="out of range"):
        _linear_search(grid, refit=lambda results: 99).fit(X, y)
    with pytest.raises(TypeError, match="not an integer"):
        _linear_search(grid, refit=lambda results: "0").fit(X, y)
    with pytest.raises(ValueError, match="refit must be True, False or a callable"):
        _linear_search(grid, refit="balanced_accuracy").fit(X, y)


def test_tied_scores_share_a_rank_and_nan_ranks_last():
    study = optuna.create_study(direction="maximize")
    dist = {"C": CategoricalDistribution([1, 2, 3])}
    for value in (0.5, 0.7, 0.7, None, 0.5):
        state = TrialState.FAIL if value is None else TrialState.COMPLETE
        study.add_trial(
            optuna.trial.create_trial(
                params={"C": 1}, distributions=dist, value=value, state=state,
                user_attrs={"split_test_scores": [value or np.nan] * 2},
            )
        )
    results = OptunaLesionSearchCV._make_cv_results(study)
    # scipy.stats.rankdata(-scores, method="min") with NaN last, as GridSearchCV ranks.
    assert list(results["rank_test_score"]) == [3, 1, 1, 5, 3]

    # Through a search: equal scores, equal ranks.
    X, y = _linear_data()
    search = _linear_search({"C": [1.0, 1.0 + 1e-12]}, n_trials=4).fit(X, y)
    scores = search.cv_results_["mean_test_score"]
    assert np.all(scores == scores[0])
    assert list(search.cv_results_["rank_test_score"]) == [1, 1, 1, 1]


def test_pruning_skips_epochs_without_the_monitored_score(lesions):
    # Too few lesions per class to hold whole ones out: the classifier trains without its
    # validation split, and the default pruner used to fail every trial with a KeyError.
    X, y = lesions[0][:48], lesions[1][:48]
    groups = np.arange(len(y)) // 2
    search = OptunaLesionSearchCV(
        tiny_classifier(max_epochs=1, validation_fraction=0.1),
        {"lr": [1e-2]},
        default_space=False,
        n_trials=1,
        cv=2,
        random_state=0,
    )
    with pytest.warns(UserWarning, match="training without validation"):
        search.fit(X, y, groups=groups)
    trial = search.study_.trials[0]
    assert trial.state == TrialState.COMPLETE
    # A fold that trained without validation reported nothing (2 folds x 1 epoch otherwise).
    assert len(trial.intermediate_values) < 2
    assert np.isfinite(search.best_score_)


def test_an_interrupted_search_keeps_its_finished_trials():
    from sklearn.linear_model import LogisticRegression

    class Interrupting(LogisticRegression):
        calls = 0

        def fit(self, X, y):
            type(self).calls += 1
            if type(self).calls == 7:  # Ctrl-C during the 4th trial (2 folds each)
                raise KeyboardInterrupt
            return super().fit(X, y)

    X, y = _linear_data()
    search = OptunaLesionSearchCV(
        Interrupting(), {"C": [0.1, 1.0, 10.0]}, default_space=False, n_trials=10, cv=2,
        random_state=0,
    )
    with pytest.raises(KeyboardInterrupt):
        search.fit(X, y)
    complete = [t for t in search.study_.trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 3
    assert all(len(t.user_attrs["split_test_scores"]) == 2 for t in complete)


def test_ndarray_choices_and_numpy_scalars_become_python_choices():
    X, y = _linear_data()
    search = _linear_search(
        {"C": np.logspace(-2, 2, 5), "max_iter": list(np.arange(100, 300, 100))}, n_trials=3
    ).fit(X, y)
    assert search.search_space_["C"].choices == (0.01, 0.1, 1.0, 10.0, 100.0)
    assert type(search.best_params_["C"]) is float
    assert type(search.best_params_["max_iter"]) is int
    # Stored as numbers, not as the repr "np.int64(100)".
    for trial in search.study_.trials:
        assert type(trial.params["max_iter"]) is int
        assert type(trial.params["C"]) is float
    with pytest.raises(TypeError, match="1-D array"):
        _linear_search({"C": np.ones((2, 2))}).fit(X, y)


def test_n_jobs_docs_say_threaded_trial_scores_are_not_reproducible():
    from tests.conftest import REPO_ROOT

    doc = OptunaLesionSearchCV.__doc__
    n_jobs = doc[doc.index("n_jobs : int") : doc.index("verbose : int")]
    assert "not\n        reproducible" in n_jobs or "not reproducible" in n_jobs
    assert "n_jobs=1" in n_jobs and "storage" in n_jobs
    guide = (REPO_ROOT / "docs" / "tuning_and_reports.md").read_text()
    assert "torch's global random number generator" in guide
