"""Where a study lives (model_selection/_storage.py) and searches sharing one: the Python API
from two processes on a real PostgreSQL server, journal files, SQLite files, clear errors."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import optuna
import pytest
from optuna.distributions import FloatDistribution

from skinestimator import SkinLesionClassifier
from skinestimator.model_selection import OptunaLesionSearchCV, open_storage
from tests.conftest import REPO_ROOT

SPACE = {"lr": FloatDistribution(1e-3, 3e-2, log=True)}


def _search(storage, study_name, **params):
    clf = SkinLesionClassifier(backbone="seed_cnn", image_size=(32, 32), max_epochs=1,
                               batch_size=16, num_workers=0, random_state=0)
    return OptunaLesionSearchCV(clf, SPACE, default_space=False, n_trials=2, cv=2,
                                refit=False, storage=storage, study_name=study_name, **params)


_OTHER_PROCESS = """
import sys
from tests.test_storage import _search
from skinestimator import make_synthetic_lesions
X, y = make_synthetic_lesions(n_samples=60, image_size=(32, 32), random_state=0)
_search(sys.argv[1], sys.argv[2]).fit(X, y)
"""


def test_searches_in_two_processes_share_one_study_and_tell_their_trials_apart(
        postgres_url, lesions_train):
    X, y = lesions_train
    X, y = X[:60], y[:60]
    study_name = f"api-{time.time_ns()}"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    subprocess.run([sys.executable, "-c", _OTHER_PROCESS, postgres_url, study_name], env=env,
                   check=True, capture_output=True, timeout=300, cwd=REPO_ROOT)
    search = _search(postgres_url, study_name, load_if_exists=True).fit(X, y)
    results = search.cv_results_
    assert len(results["number"]) == 4  # the whole study: the other process's two and ours
    assert results["from_this_fit"].sum() == 2
    ours = set(results["worker"][results["from_this_fit"]])
    theirs = set(results["worker"][~results["from_this_fit"]])
    assert len(ours) == len(theirs) == 1 and ours != theirs
    assert search.best_trial_.value == np.nanmax(results["mean_test_score"])


def test_load_if_exists_false_refuses_an_existing_study(tmp_path, lesions_train):
    X, y = lesions_train
    storage = str(tmp_path / "search.db")
    _search(storage, "taken").fit(X[:60], y[:60])
    with pytest.raises(ValueError, match="already holds a study named 'taken'"):
        _search(storage, "taken", load_if_exists=False).fit(X[:60], y[:60])


def test_a_journal_file_holds_the_study_and_every_trial_calls_back(tmp_path, lesions_train):
    X, y = lesions_train
    seen = []
    storage = f"journal:{tmp_path / 'search.log'}"
    search = _search(storage, "journal", callbacks=[lambda study, trial: seen.append(
        trial.number)]).fit(X[:60], y[:60])
    assert seen == [0, 1]
    loaded = optuna.load_study(study_name="journal", storage=open_storage(storage))
    assert [t.number for t in loaded.trials] == list(search.cv_results_["number"])


def test_storages_are_opened_with_the_heartbeat_on(tmp_path):
    storage = open_storage(str(tmp_path / "search.db"), heartbeat_interval=5)
    assert isinstance(storage, optuna.storages.RDBStorage)
    assert storage.get_heartbeat_interval() == 5
    assert open_storage(str(tmp_path / "a.db"), heartbeat_interval=None) \
        .get_heartbeat_interval() is None
    assert type(open_storage(str(tmp_path / "search.journal"))).__name__ == "JournalStorage"
    assert open_storage(None) is None


@pytest.mark.parametrize("storage, message", [
    ("journal:", "needs a file path"),
    ("journal:/no/such/folder/study.log", "the folder '/no/such/folder' does not exist"),
    ("mysql://user:secret@127.0.0.1/db", r"no database driver for mysql://.*mysqlclient"),
    ("postgresql://nobody@127.0.0.1:1/db", "cannot be opened"),
])
def test_a_storage_that_cannot_work_is_one_clear_error(storage, message):
    with pytest.raises(ValueError, match=message) as raised:
        open_storage(storage)
    assert "secret" not in str(raised.value)


@pytest.mark.parametrize("params, message", [
    ({"heartbeat_interval": 0}, "heartbeat_interval must be a positive integer"),
    ({"heartbeat_interval": 1.5}, "heartbeat_interval must be a positive integer"),
    ({"callbacks": ["print"]}, "callbacks must be a list of callables"),
])
def test_search_storage_parameters_are_validated(params, message, lesions_train):
    X, y = lesions_train
    with pytest.raises((ValueError, TypeError), match=message):
        _search(None, None, **params).fit(X[:60], y[:60])
