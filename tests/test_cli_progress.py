"""Training progress: tqdm bars on a terminal, one plain line per epoch anywhere else."""

from __future__ import annotations

import io
import pickle
import re
import subprocess
import sys

import pytest
from skorch.callbacks import Callback

from skinestimator import SkinLesionClassifier, make_synthetic_lesions, save_image_folder
from skinestimator.cli._progress import EpochProgress, epoch_progress
from skinestimator.deploy import read_model_card

EPOCH_LINE = re.compile(
    r"epoch (?P<epoch>\d+)/(?P<total>\d+)"
    r"  train_loss (?P<train_loss>[\d.]+)"
    r"  valid_loss (?P<valid_loss>[\d.]+)"
    r"  valid_bal_acc (?P<valid_bal_acc>[\d.]+)"
    r"  (?P<rate>\d+) img/s"
    r"  (?P<seconds>[\d.]+) s"
    r"  \(eta (?P<eta>[\d.]+) (?P<eta_unit>s|min|h)\)"
)


class FakeTerminal(io.StringIO):
    """A stream that says it is a terminal, so that the callback draws its bars into it."""

    def isatty(self):
        return True


class PickleMidEpoch(Callback):
    """Pickles ``progress`` at the first training batch, while both of its bars are live."""

    def __init__(self, progress):
        self.progress = progress

    def on_batch_end(self, net, training=None, **kwargs):
        if training and not hasattr(self, "copy_"):
            assert self.progress.bar_ is not None and self.progress.batch_bar_ is not None
            self.copy_ = pickle.loads(pickle.dumps(self.progress))


@pytest.fixture(scope="module")
def lesions():
    return make_synthetic_lesions(n_samples=60, image_size=(32, 32), random_state=0)


def fit_tiny(X, y, *callbacks):
    # 60 images in batches of 16: 4 training batches of 16, 16, 16 and 12 images per epoch.
    clf = SkinLesionClassifier(backbone="seed_cnn", max_epochs=2, batch_size=16, augment=False,
                               validation_fraction=None, random_state=0, num_workers=0,
                               callbacks=list(callbacks))
    return clf.fit(X, y)


def test_train_without_a_terminal_prints_one_line_per_epoch(lesions, tmp_path):
    X, y = lesions
    folder, model = tmp_path / "images", tmp_path / "model.skin"
    save_image_folder(X, y, folder)
    result = subprocess.run(
        [sys.executable, "-m", "skinestimator.cli", "train", str(folder), "-o", str(model),
         "--backbone", "seed_cnn", "--epochs", "3", "--batch-size", "16", "--patience", "0",
         "--num-workers", "0"],
        capture_output=True, text=True, timeout=300, check=False,  # stderr is a pipe
    )
    assert result.returncode == 0, result.stderr
    err = result.stderr
    assert "\r" not in err and "|" not in err, err  # no bar, not even a first frame
    lines = [line for line in err.splitlines() if line.startswith("epoch ")]
    assert len(lines) == 3, err
    matches = [EPOCH_LINE.fullmatch(line) for line in lines]
    assert all(matches), lines
    history = read_model_card(model)["history"]
    assert len(history) == 3
    for i, (match, row) in enumerate(zip(matches, history), start=1):
        assert (int(match["epoch"]), int(match["total"])) == (i, 3)
        # The line shows the scores the saved model's history holds.
        assert float(match["train_loss"]) == pytest.approx(row["train_loss"], abs=5e-4)
        assert float(match["valid_loss"]) == pytest.approx(row["valid_loss"], abs=5e-4)
        assert float(match["valid_bal_acc"]) == pytest.approx(row["valid_bacc"], abs=5e-4)
        assert int(match["rate"]) > 0 and float(match["seconds"]) >= 0
    assert matches[-1]["eta"] == "0"  # nothing left after the last epoch
    # The lines come between the header and the summary, which stay as they were.
    assert err.index("60 images in") < err.index(lines[0])


def test_quiet_train_prints_no_epoch_lines(lesions):
    X, y = lesions
    out = io.StringIO()
    fit_tiny(X[:20], y[:20], epoch_progress(2, disable=True, stream=out))
    assert out.getvalue() == ""


def test_on_a_terminal_bars_count_the_images_of_each_epoch(lesions):
    X, y = lesions
    terminal = FakeTerminal()
    progress = epoch_progress(2, stream=terminal)
    seen = []

    class AtEpochEnd(Callback):  # listed first: looks at the batch bar before it closes
        def on_epoch_end(self, net, **kwargs):
            bar = progress.batch_bar_
            seen.append((bar.desc, bar.n, bar.total, progress.batches_done_, progress.batches_,
                         bar.format_dict["elapsed"] > 0))

    fit_tiny(X, y, AtEpochEnd(), progress)
    assert seen == [("epoch 1/2", 60, 60, 4, 4, True), ("epoch 2/2", 60, 60, 4, 4, True)]
    drawn = terminal.getvalue()
    assert "img/s" in drawn and "epoch 1/2" in drawn and "epoch 2/2" in drawn
    assert "training: 100%" in drawn and "train_loss=" in drawn  # the epoch bar's last frame
    assert not re.search(r"^epoch \d+/\d+  train_loss", drawn, re.MULTILINE)  # no lines
    assert progress.bar_ is None and progress.batch_bar_ is None  # closed at the end


def test_a_plain_stream_gets_lines_without_validation_scores(lesions):
    X, y = lesions
    out = io.StringIO()
    fit_tiny(X[:32], y[:32], epoch_progress(2, stream=out))
    lines = out.getvalue().splitlines()
    assert len(lines) == 2, lines
    for i, line in enumerate(lines, start=1):
        assert re.fullmatch(rf"epoch {i}/2  train_loss [\d.]+  \d+ img/s  [\d.]+ s  "
                            r"\(eta [\d.]+ (s|min|h)\)", line), line


def test_the_callback_pickles_and_clones_without_its_bars(lesions):
    from sklearn.base import clone

    X, y = lesions
    progress = epoch_progress(2, stream=FakeTerminal())
    probe = PickleMidEpoch(progress)
    clf = fit_tiny(X[:20], y[:20], progress, probe)
    copy = probe.copy_
    assert isinstance(copy, EpochProgress)
    assert copy.bar_ is None and copy.batch_bar_ is None
    assert copy.total_epochs == 2 and copy.disable is None
    assert clone(clf).callbacks[0].get_params()["total_epochs"] == 2
    # The fitted estimator pickles with the callback (its network holds it too).
    assert pickle.loads(pickle.dumps(clf)).callbacks[0].bar_ is None
