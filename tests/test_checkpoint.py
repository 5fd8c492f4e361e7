"""Checkpoints and resume (training/_checkpoint.py): in process, and killed for real."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
import torch
from skorch.callbacks import Callback

from skinestimator import SkinLesionClassifier, load_image_folder, load_model
from tests.conftest import REPO_ROOT

FAST = dict(backbone="seed_cnn", max_epochs=6, batch_size=16, random_state=0,
            validation_fraction=0.2, patience=3, num_workers=0)


class CrashAtEpoch(Callback):
    """Raises at the end of an epoch, before the checkpoint of that epoch is written: what a
    kill during the next epoch leaves behind."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_epoch_end(self, net, **kwargs):
        if len(net.history) == self.epoch:
            raise RuntimeError("simulated crash")


def checkpoint_files(folder):
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("params", [{}, {"ema_decay": 0.9, "augment": True}],
                         ids=["plain", "ema_augment"])
def test_a_resumed_fit_ends_bit_identical_to_an_uninterrupted_one(lesions_train, tmp_path,
                                                                  params):
    X, y = lesions_train
    params = {**FAST, **params}
    uninterrupted = SkinLesionClassifier(**params).fit(X, y)
    crashed = SkinLesionClassifier(**params, checkpoint_dir=tmp_path,
                                   callbacks=[CrashAtEpoch(3)])
    with pytest.raises(RuntimeError, match="simulated crash"):
        crashed.fit(X, y)
    files = checkpoint_files(tmp_path)
    assert len(files) == 1 and files[0].endswith(".ckpt")  # no temporary file left behind
    saved = torch.load(tmp_path / files[0], weights_only=True)
    assert saved["epochs"] == 2 and not saved["finished"]
    resumed = SkinLesionClassifier(**params, checkpoint_dir=tmp_path).fit(X, y)
    assert [row["epoch"] for row in resumed.history_] == [row["epoch"]
                                                          for row in uninterrupted.history_]
    np.testing.assert_array_equal(resumed.predict_proba(X), uninterrupted.predict_proba(X))
    for key, value in uninterrupted.net_.module_.state_dict().items():
        assert torch.equal(value, resumed.net_.module_.state_dict()[key]), key


def test_a_finished_fit_is_not_trained_again(lesions_train, tmp_path):
    X, y = lesions_train
    first = SkinLesionClassifier(**FAST, checkpoint_dir=tmp_path).fit(X, y)

    class MustNotTrain(Callback):
        def on_epoch_begin(self, net, **kwargs):
            raise AssertionError("a finished fit trained again")

    again = SkinLesionClassifier(**FAST, checkpoint_dir=tmp_path, callbacks=[MustNotTrain()])
    again.fit(X, y)
    assert again.history_ == first.history_
    np.testing.assert_array_equal(again.predict_proba(X), first.predict_proba(X))


def test_other_parameters_or_data_start_afresh_and_say_what_differs(lesions_train, tmp_path):
    X, y = lesions_train
    SkinLesionClassifier(**FAST, checkpoint_dir=tmp_path).fit(X, y)
    with pytest.warns(UserWarning, match=r"newest differs in lr=0\.001 -> 0\.01.*starts afresh"):
        SkinLesionClassifier(**dict(FAST, lr=0.01), checkpoint_dir=tmp_path).fit(X, y)
    with pytest.warns(UserWarning, match="differs in the training data"):
        SkinLesionClassifier(**dict(FAST, lr=0.01), checkpoint_dir=tmp_path).fit(X[:-1], y[:-1])
    assert len(checkpoint_files(tmp_path)) == 3  # every fit keeps its own
    # Settings that do not change training (verbosity, workers) share the checkpoint.
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        SkinLesionClassifier(**dict(FAST, verbose=0, num_workers=1),
                             checkpoint_dir=tmp_path).fit(X, y)
    assert len(checkpoint_files(tmp_path)) == 3


def test_ctrl_c_keeps_the_last_finished_epoch_to_resume_from(lesions_train, tmp_path):
    X, y = lesions_train

    class CtrlCAtEpoch3(Callback):
        def on_epoch_end(self, net, **kwargs):
            if len(net.history) == 3:
                raise KeyboardInterrupt

    # The checkpoint callback comes after the user's: epoch 3 ended by Ctrl+C is not saved.
    clf = SkinLesionClassifier(**FAST, checkpoint_dir=tmp_path, callbacks=[CtrlCAtEpoch3()])
    with pytest.warns(UserWarning, match="interrupted by the user"):
        clf.fit(X, y)
    saved = torch.load(tmp_path / checkpoint_files(tmp_path)[0], weights_only=True)
    assert saved["epochs"] == 2 and not saved["finished"]


def test_checkpoint_dir_is_validated(lesions_train):
    X, y = lesions_train
    with pytest.raises(ValueError, match="checkpoint_dir must be None or a folder, got 3"):
        SkinLesionClassifier(**FAST, checkpoint_dir=3).fit(X, y)


def _train_command(folder, output, checkpoint_dir=None):
    command = [sys.executable, "-m", "skinestimator", "train", str(folder), "-o", str(output),
               "--backbone", "seed_cnn", "--image-size", "96", "--epochs", "6",
               "--batch-size", "16", "--patience", "0", "--seed", "0", "--quiet"]
    if checkpoint_dir is not None:
        command += ["--checkpoint-dir", str(checkpoint_dir)]
    return command


def _saved_epochs(checkpoint_dir) -> int:
    files = list(checkpoint_dir.glob("fit-*.ckpt"))
    if not files:
        return 0
    try:
        return torch.load(files[0], weights_only=True)["epochs"]
    except Exception:  # noqa: BLE001 - replaced between glob and read: look again
        return 0


def test_train_killed_with_sigkill_in_its_third_epoch_resumes_to_the_same_model(lesion_folder,
                                                                               tmp_path):
    root, _, _ = lesion_folder
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    checkpoints = tmp_path / "checkpoints"
    killed = subprocess.Popen(_train_command(root, tmp_path / "a.skin", checkpoints), env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while _saved_epochs(checkpoints) < 2 and killed.poll() is None:
        assert time.monotonic() < deadline, "no second epoch within 2 minutes"
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=30)
    assert killed.returncode == -signal.SIGKILL
    done = _saved_epochs(checkpoints)
    assert 2 <= done < 6 and not (tmp_path / "a.skin").exists()

    resumed = subprocess.run(_train_command(root, tmp_path / "a.skin", checkpoints), env=env,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    whole = subprocess.run(_train_command(root, tmp_path / "b.skin"), env=env,
                           capture_output=True, text=True, timeout=300)
    assert whole.returncode == 0, whole.stderr

    paths, _ = load_image_folder(root)
    resumed_model, whole_model = load_model(tmp_path / "a.skin"), load_model(tmp_path / "b.skin")
    assert len(resumed_model.history_) == len(whole_model.history_) == 6
    np.testing.assert_allclose(resumed_model.predict_proba(paths),
                               whole_model.predict_proba(paths), rtol=0, atol=1e-5)
