"""Progress for the command line: training epochs and batches, and batched prediction.

On a terminal, training shows tqdm bars: one over the epochs and one within each epoch over its
training images. Anywhere else (``nohup``, CI, a pipe into a log file) a bar either prints
nothing or fills the log with carriage-return redraws, so training prints one plain line per
epoch instead.

This module imports skorch (and so torch) on import; the commands import it only when they run,
which keeps ``--help`` instant.
"""

from __future__ import annotations

import math
import sys
import time

import numpy as np
from skorch.callbacks import Callback
from skorch.dataset import get_len
from tqdm.auto import tqdm

# The history's scores that the epoch bar and the epoch lines show, under the names shown
# (``valid_bacc`` reads as balanced accuracy only to someone who knows the code).
_SCORES = (
    ("train_loss", "train_loss"),
    ("valid_loss", "valid_loss"),
    ("valid_bacc", "valid_bal_acc"),
)


class EpochProgress(Callback):
    """A skorch callback reporting training progress on a stream (standard error by default).

    With bars (on a terminal): one tqdm bar over the epochs, with the latest scores, and below
    it one bar per epoch over that epoch's training images, with images per second, time left
    and the batch number. Without (standard error is not a terminal): one line per finished
    epoch, flushed at once, such as (one line, wrapped here)::

        epoch 3/15  train_loss 0.812  valid_loss 0.790  valid_bal_acc 0.655
        412 img/s  41 s  (eta 8 min)

    The fields are separated by two spaces and always come in this order; the scores an epoch
    does not have (no validation: no ``valid_loss`` or ``valid_bal_acc``) are left out. ``img/s``
    counts training images over the training part of the epoch, the seconds are the whole
    epoch's (validation included) and ``eta`` is the mean epoch so far times the epochs left
    of ``total_epochs`` (an upper bound when early stopping ends training sooner).

    Parameters
    ----------
    total_epochs : int
        The epochs training will run at most (the ``N`` of ``epoch k/N`` and of the eta).
    disable : bool or None, default=None
        ``True``: no output at all. ``None``: bars when the stream is a terminal, epoch lines
        otherwise. ``False``: bars even when the stream is not a terminal (as tqdm's
        ``disable=False``).
    stream : file-like or None, default=None
        Where to write; ``None`` is ``sys.stderr`` as it is when training starts. A given
        stream is a parameter of the callback: it is copied when the estimator is cloned and
        must pickle when the estimator is pickled with this callback.

    Attributes
    ----------
    bar_ : tqdm or None
        The epoch bar while training with bars, else ``None``.
    batch_bar_ : tqdm or None
        The current epoch's bar over its training images, else ``None``.
    epochs_done_ : int
        Epochs finished in the current (or last) training run.
    """

    def __init__(self, total_epochs: int, *, disable: bool | None = None, stream=None):
        self.total_epochs = total_epochs
        self.disable = disable
        self.stream = stream

    # Every piece of state ends in "_": skorch's get_params takes the other attributes for
    # constructor parameters, and sklearn's clone rebuilds the callback from them.
    def initialize(self):
        """Reset the state of a training run.

        Returns
        -------
        self : EpochProgress
        """
        self.bar_ = None
        self.batch_bar_ = None
        self.mode_ = "off"
        self.epochs_done_ = 0
        self.train_started_ = None
        self.epoch_started_ = None
        self.train_images_ = 0
        self.train_seconds_ = 0.0
        self.batches_ = None
        self.batches_done_ = 0
        self.validating_ = False
        return self

    def on_train_begin(self, net, **kwargs):
        """Choose bars, lines or nothing, and open the epoch bar."""
        # A run that failed with an exception never reached on_train_end: drop its bars.
        self._close_bars()
        self.initialize()
        stream = self._stream()
        self.mode_ = self._mode(stream)
        self.train_started_ = time.perf_counter()
        if self.mode_ == "bars":
            self.bar_ = tqdm(total=self.total_epochs, desc="training", unit="epoch",
                             file=stream, dynamic_ncols=True, position=0)

    def on_epoch_begin(self, net, dataset_train=None, dataset_valid=None, **kwargs):
        """Start the epoch's clock and, with bars, its bar over the training images."""
        self.epoch_started_ = time.perf_counter()
        self.train_images_ = 0
        self.train_seconds_ = 0.0
        self.batches_done_ = 0
        self.validating_ = False
        if self.mode_ != "bars":
            return
        images, self.batches_ = _training_size(net, dataset_train)
        # Counted in images, not batches, so that tqdm's own rate reads in images per second
        # and its time left accounts for a short last batch.
        self.batch_bar_ = tqdm(total=images, desc=self._epoch_name(), unit="img",
                               file=self._stream(), dynamic_ncols=True, position=1,
                               leave=False)

    def on_batch_end(self, net, batch=None, training=None, **kwargs):
        """Count a training batch's images; with bars, advance the epoch's bar."""
        if self.mode_ == "off":
            return
        if not training:
            # Validation comes after the last training batch: say so, or a long validation
            # looks like a bar stuck at 100 %.
            if self.batch_bar_ is not None and not self.validating_:
                self.batch_bar_.set_description(f"{self._epoch_name()} validating")
            self.validating_ = True
            return
        images = _batch_images(batch)
        self.train_images_ += images
        self.train_seconds_ = time.perf_counter() - self.epoch_started_
        self.batches_done_ += 1
        if self.batch_bar_ is not None:
            of = f"/{self.batches_}" if self.batches_ is not None else ""
            self.batch_bar_.set_postfix_str(f"batch {self.batches_done_}{of}", refresh=False)
            self.batch_bar_.update(images)

    def on_epoch_end(self, net, dataset_train=None, dataset_valid=None, **kwargs):
        """Show the epoch's scores: on the epoch bar, or as one line."""
        if self.mode_ == "off":
            return
        self.epochs_done_ += 1
        row = net.history[-1]
        scores = {shown: float(row[key]) for key, shown in _SCORES if key in row}
        if self.mode_ == "bars":
            if self.batch_bar_ is not None:
                self.batch_bar_.close()
                self.batch_bar_ = None
            self.bar_.set_postfix({k: f"{v:.3f}" for k, v in scores.items()}, refresh=False)
            self.bar_.update(1)
        else:
            print(self._line(scores), file=self._stream(), flush=True)

    def on_train_end(self, net, **kwargs):
        """Close the bars (also after early stopping or Ctrl+C, where the epochs stopped)."""
        self._close_bars()

    def __getstate__(self):
        state = dict(self.__dict__)
        # A live bar holds its stream (sys.stderr does not pickle); never pickle one.
        state["bar_"] = None
        state["batch_bar_"] = None
        return state

    # ------------------------------------------------------------------------------------------

    def _stream(self):
        # Looked up when used, not stored: sys.stderr is replaced by pytest's capture, by
        # contextlib.redirect_stderr, and it pickles as nothing.
        return self.stream if self.stream is not None else sys.stderr

    def _mode(self, stream) -> str:
        if self.disable:
            return "off"
        if self.disable is not None:  # False: bars, as tqdm's disable=False forces them
            return "bars"
        try:
            tty = bool(stream.isatty())
        except (AttributeError, ValueError):  # no isatty, or a closed stream
            tty = False
        return "bars" if tty else "lines"

    def _epoch_name(self) -> str:
        return f"epoch {self.epochs_done_ + 1}/{self.total_epochs}"

    def _line(self, scores: dict) -> str:
        now = time.perf_counter()
        epoch_seconds = now - self.epoch_started_
        rate = self.train_images_ / self.train_seconds_ if self.train_seconds_ > 0 else 0.0
        # No tqdm bar runs in this mode, so nothing else measures the rate or the eta.
        left = max(0, self.total_epochs - self.epochs_done_)
        eta = (now - self.train_started_) / self.epochs_done_ * left
        fields = [f"epoch {self.epochs_done_}/{self.total_epochs}"]
        fields += [f"{name} {value:.3f}" for name, value in scores.items()]
        fields += [f"{rate:.0f} img/s", _seconds(epoch_seconds), f"(eta {_duration(eta)})"]
        return "  ".join(fields)

    def _close_bars(self) -> None:
        # The inner bar first: tqdm redraws the bars below a closing one.
        for name in ("batch_bar_", "bar_"):
            bar = getattr(self, name, None)
            if bar is not None:
                bar.close()
            setattr(self, name, None)


def epoch_progress(total_epochs: int, *, disable: bool | None = None,
                   stream=None) -> EpochProgress:
    """A skorch callback showing training progress: bars on a terminal, else a line per epoch.

    Parameters
    ----------
    total_epochs : int
        The epochs training will run at most.
    disable : bool or None, default=None
        ``True``: no output. ``None``: bars when the stream is a terminal, one plain line per
        epoch otherwise. ``False``: bars even when it is not a terminal.
    stream : file-like or None, default=None
        Where to write; ``None`` is ``sys.stderr`` at the time training starts.

    Returns
    -------
    EpochProgress
        The callback, for ``SkinLesionClassifier(callbacks=[...])``.
    """
    return EpochProgress(total_epochs, disable=disable, stream=stream)


def _training_size(net, dataset) -> tuple[int | None, int | None]:
    """``(images, batches)`` one training epoch over ``dataset`` takes, or ``None`` unknown."""
    try:
        n = len(dataset)
    except TypeError:  # an iterable dataset: tqdm shows counts without a total
        return None, None
    # As skorch's get_iterator builds the training loader: its own batch_size if given,
    # -1 for the whole dataset in one batch.
    loader = net.get_params_for("iterator_train")
    size = loader.get("batch_size", net.batch_size)
    if size is None or size < 1:
        size = max(n, 1)
    # The classifier drops a last batch of one image (batch norm cannot train on it).
    if loader.get("drop_last", False):
        batches = n // size
        return batches * size, batches
    return n, math.ceil(n / size)


def _batch_images(batch) -> int:
    """The images in a skorch batch ``(X, y)``: the targets' length, else the inputs'."""
    if isinstance(batch, (tuple, list)) and len(batch) == 2 and batch[1] is not None:
        return len(batch[1])
    # No targets (or not a pair): count the inputs, as skorch's history does.
    return get_len(batch[0] if isinstance(batch, (tuple, list)) else batch)


def _seconds(seconds: float) -> str:
    # One decimal for short epochs, where "0 s" would say nothing.
    return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def predict_proba_batched(clf, paths, *, desc: str, batch_size: int = 256,
                          disable: bool | None = None) -> np.ndarray:
    """``clf.predict_proba`` over many files in chunks so that a progress bar can advance.

    Parameters
    ----------
    clf : SkinLesionClassifier
        A fitted classifier.
    paths : sequence of str or path-like
        The image files.
    desc : str
        The bar's label.
    batch_size : int, default=256
        Files per ``predict_proba`` call.
    disable : bool or None, default=None
        As tqdm's: ``None`` shows the bar only on a terminal.

    Returns
    -------
    ndarray of shape (n_files, n_classes)
        The probabilities, in the order of ``paths``.
    """
    paths = list(paths)
    if not paths:
        return np.zeros((0, len(clf.classes_)))
    out = []
    with tqdm(total=len(paths), desc=desc, unit="img", disable=disable,
              dynamic_ncols=True) as bar:
        for start in range(0, len(paths), batch_size):
            chunk = paths[start : start + batch_size]
            out.append(np.asarray(clf.predict_proba(chunk)))
            bar.update(len(chunk))
    return np.concatenate(out)
