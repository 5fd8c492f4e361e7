"""``skinestimator tune`` (cli/_tune.py): real worker processes sharing one Optuna study on a real
PostgreSQL server (tests/_postgres.py) and on a journal file, one of them killed with SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
from optuna.trial import TrialState

from skinestimator import load_image_folder, load_model
from skinestimator.cli import main
from skinestimator.model_selection._storage import open_storage
from tests.conftest import REPO_ROOT


@pytest.fixture
def space_file(tmp_path):
    path = tmp_path / "space.json"
    path.write_text(json.dumps({"lr": {"low": 1e-3, "high": 3e-2, "log": True}}))
    return path


def _tune(folder, storage, study, space, *extra, epochs=2):
    return [sys.executable, "-m", "skinestimator", "tune", str(folder), "--storage", storage,
            "--study-name", study, "--space", str(space), "--cv", "2", "--backbone", "seed_cnn",
            "--image-size", "32", "--epochs", str(epochs), "--batch-size", "16",
            "--num-workers", "0", "--heartbeat", "1", *extra]


def _start(command) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _finish(process: subprocess.Popen, timeout=300) -> str:
    stdout, stderr = process.communicate(timeout=timeout)
    assert process.returncode == 0, stderr
    return stdout + stderr


@pytest.fixture(params=["postgresql", "journal"])
def shared_storage(request, tmp_path):
    if request.param == "journal":
        return f"journal:{tmp_path / 'study.log'}"
    return request.getfixturevalue("postgres_url")


def test_two_workers_share_one_study_and_refit_its_best_trial(shared_storage, lesion_folder,
                                                              space_file, tmp_path):
    root, _, _ = lesion_folder
    study_name = f"shared-{time.time_ns()}"
    workers = [_start(_tune(root, shared_storage, study_name, space_file, "--n-trials",
                            str(n), "-o", str(tmp_path / f"best{i}.skin")))
               for i, n in enumerate((2, 3))]
    outputs = [_finish(worker) for worker in workers]

    study = optuna.load_study(study_name=study_name, storage=open_storage(shared_storage))
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 5  # the sum of both workers' --n-trials
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    by_worker = {}
    for trial in trials:
        by_worker.setdefault(trial.user_attrs["worker"], []).append(trial.number)
    assert sorted(len(numbers) for numbers in by_worker.values()) == [2, 3]
    # One progress line per trial of its own, and the final table of the whole study.
    for output, n in zip(outputs, (2, 3), strict=True):
        assert len([line for line in output.splitlines() if line.startswith("trial ")]) == n
    # The last worker to finish shows and refits the best trial of all five.
    paths, labels = load_image_folder(root)
    last = max(range(2), key=lambda i: (tmp_path / f"best{i}.skin").stat().st_mtime)
    assert f"study '{study_name}': 5 trials" in outputs[last]
    model = load_model(tmp_path / f"best{last}.skin")
    assert model.lr == pytest.approx(study.best_trial.params["lr"])
    assert model.score(paths, labels) >= 0.8


def test_a_worker_killed_mid_trial_leaves_no_trial_running(postgres_url, lesion_folder,
                                                           space_file, tmp_path):
    root, _, _ = lesion_folder
    study_name = f"killed-{time.time_ns()}"
    storage = open_storage(postgres_url)
    slow = _start(_tune(root, postgres_url, study_name, space_file, "--n-trials", "1",
                        "--patience", "0", epochs=40))
    deadline = time.monotonic() + 120
    while True:
        assert time.monotonic() < deadline, "the worker started no trial within 2 minutes"
        assert slow.poll() is None, slow.communicate()[1]
        try:
            running = optuna.load_study(study_name=study_name, storage=storage).get_trials(
                states=(TrialState.RUNNING,))
        except KeyError:  # the study does not exist yet
            running = []
        if running:
            break
        time.sleep(0.2)
    time.sleep(2)  # mid-trial: it has sent heartbeats
    slow.send_signal(signal.SIGKILL)
    slow.wait(timeout=30)
    killed = running[0].number
    time.sleep(3)  # longer than the grace period (twice the 1 s heartbeat)

    _finish(_start(_tune(root, postgres_url, study_name, space_file, "--n-trials", "2")))
    trials = optuna.load_study(study_name=study_name, storage=storage).get_trials()
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    assert trials[killed].state == TrialState.FAIL
    # Its parameters were queued once more and run by the surviving worker.
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == killed]
    assert len(retried) == 1 and retried[0].state == TrialState.COMPLETE
    assert retried[0].params == trials[killed].params


def test_tune_in_memory_prints_one_line_per_trial_and_the_best(lesion_folder, space_file,
                                                               tmp_path, capsys):
    root, _, _ = lesion_folder
    code = main(["tune", str(root), "--space", str(space_file), "--n-trials", "2", "--cv", "2",
                 "--backbone", "seed_cnn", "--image-size", "32", "--epochs", "1",
                 "--num-workers", "0", "-o", str(tmp_path / "best.skin")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.err.count("trial 0 complete balanced_accuracy") == 1
    assert "study 'skinestimator-search': 2 trials (2 complete) from 1 worker(s)" in captured.out
    assert "saved" in captured.out and (tmp_path / "best.skin").is_file()


@pytest.mark.parametrize("space, message", [
    ("{not json", "is not a readable JSON file"),
    ('{"learning_rate": [0.1]}', "names ['learning_rate'], which are not parameters"),
    ('{"lr": "fast"}', "'lr' must be a non-empty list of choices"),
    ('{"lr": {"low": 1.0, "high": 0.1}}', "'lr'"),
    ("[]", "must hold a non-empty JSON object"),
])
def test_a_bad_space_file_is_refused_before_any_trial(lesion_folder, tmp_path, capsys, space,
                                                      message):
    root, _, _ = lesion_folder
    path = tmp_path / "space.json"
    path.write_text(space)
    assert main(["tune", str(root), "--space", str(path), "--backbone", "seed_cnn"]) == 2
    error = capsys.readouterr().err
    assert message in error and str(path) in error


def test_an_unreachable_or_driverless_storage_is_one_clear_error(lesion_folder, space_file,
                                                                 capsys):
    root, _, _ = lesion_folder
    code = main(["tune", str(root), "--space", str(space_file), "--backbone", "seed_cnn",
                 "--storage", "mysql://user:secret@127.0.0.1/none"])
    error = capsys.readouterr().err
    assert code == 2
    assert "no database driver for mysql://" in error and "secret" not in error
