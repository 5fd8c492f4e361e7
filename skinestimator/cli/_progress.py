"""tqdm progress bars for the command line: training epochs and batched prediction."""

from __future__ import annotations

import numpy as np


def epoch_progress(total_epochs: int, *, disable: bool | None = None):
    """A skorch callback showing one tqdm bar over the epochs, with the latest scores."""
    from skorch.callbacks import Callback
    from tqdm.auto import tqdm

    class EpochProgress(Callback):
        def on_train_begin(self, net, **kwargs):
            self.bar_ = tqdm(total=total_epochs, desc="training", unit="epoch",
                             disable=disable, dynamic_ncols=True)

        def on_epoch_end(self, net, **kwargs):
            row = net.history[-1]
            shown = {}
            for key in ("train_loss", "valid_loss", "valid_bacc"):
                if key in row:
                    shown[key.replace("valid_bacc", "valid_bal_acc")] = f"{float(row[key]):.3f}"
            self.bar_.set_postfix(shown, refresh=False)
            self.bar_.update(1)

        def on_train_end(self, net, **kwargs):
            # Early stopping ends before max_epochs: close the bar where it stopped.
            self.bar_.close()

        def __getstate__(self):
            state = dict(self.__dict__)
            state.pop("bar_", None)  # a live bar holds a stream; never pickle it
            return state

    return EpochProgress()


def predict_proba_batched(clf, paths, *, desc: str, batch_size: int = 256,
                          disable: bool | None = None) -> np.ndarray:
    """``clf.predict_proba`` over many files in chunks so that a progress bar can advance."""
    from tqdm.auto import tqdm

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
