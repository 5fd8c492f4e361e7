"""The skorch callbacks every training run gets: moving average of the weights, early stopping,
learning-rate schedule and the validation score."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import torch
from skorch.callbacks import Callback, EarlyStopping

__all__ = ["EarlyStoppingWhenValidated", "ExponentialMovingAverage", "WarmupCosine",
           "drops_last_batch", "validation_balanced_accuracy", "warmup_cosine"]


def _debiased_ema_update(decay: float) -> Callable:
    """``AveragedModel`` update for a moving average without the start's weight (Adam-style).

    torch's own ``get_ema_multi_avg_fn`` starts the average at the first step's weights, which
    keep a ``decay ** n`` share after ``n`` steps: most of the average in a short fit, the barely
    trained start. Debiasing, as Adam does for its moments, weighs step ``i`` of ``n`` by
    ``decay ** (n - i)`` normalized to sum to 1: identical to the plain average once ``decay ** n``
    is negligible, and for a short fit an average of all its steps that leans to the latest.
    """

    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor],
               n_averaged: torch.Tensor) -> None:
        # The k+1-th step's share of the debiased average is (1 - d) / (1 - d^(k+1)).
        new_share = (1 - decay) / (1 - decay ** (int(n_averaged) + 1))
        for old, new in zip(averaged, current, strict=True):
            if old.is_floating_point():
                old.lerp_(new, new_share)
            else:  # integer buffers (batch-norm step counters) are not averaged
                old.copy_(new)

    return update


class ExponentialMovingAverage(Callback):
    """A debiased moving average of the weights (and batch-norm statistics) over the steps.

    Training steps move the training weights; validation, the epoch-end callbacks after this
    one (early stopping snapshots the best epoch) and the fitted model see the average. Each
    training run (``fit``, ``partial_fit``) starts a new average from the module as it is.

    Parameters
    ----------
    decay : float in (0, 1) or None
        Decay per training step; None switches the average off.
    """

    def __init__(self, decay: float | None = None):
        self.decay = decay

    def initialize(self):
        self.average_ = None
        self.training_weights_ = None
        return self

    def on_train_begin(self, net, **kwargs):
        self.initialize()
        if self.decay is None:
            return
        from torch.optim.swa_utils import AveragedModel

        # Batch-norm statistics are averaged too (use_buffers), so that they match the
        # averaged weights they normalize.
        self.average_ = AveragedModel(net.module_, use_buffers=True,
                                      multi_avg_fn=_debiased_ema_update(self.decay))

    def on_batch_end(self, net, training=False, **kwargs):
        if training and self.average_ is not None:
            self.average_.update_parameters(net.module_)

    def on_epoch_begin(self, net, **kwargs):
        self.use_average(net, False)

    def on_batch_begin(self, net, training=False, **kwargs):
        if not training:
            self.use_average(net, True)

    def on_epoch_end(self, net, **kwargs):
        self.use_average(net, True)  # an epoch without validation batches

    def on_train_end(self, net, **kwargs):
        # The module keeps the averaged weights; the copies must not travel in pickles.
        self.initialize()

    def use_average(self, net, average: bool) -> None:
        """Put the average (or back the training weights) into ``net.module_``."""
        if self.average_ is None:
            return
        holds_average = self.training_weights_ is not None
        if average == holds_average:
            return
        if average:
            self.training_weights_ = {
                key: value.clone() for key, value in net.module_.state_dict().items()
            }
            # load_state_dict copies in place: the optimizer keeps its parameter references.
            net.module_.load_state_dict(self.average_.module.state_dict())
        else:
            net.module_.load_state_dict(self.training_weights_)
            self.training_weights_ = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["average_"] = state["training_weights_"] = None
        return state


class EarlyStoppingWhenValidated(EarlyStopping):
    """skorch's ``EarlyStopping``, sitting out epochs that have no validation score, and
    recording that it stopped the run (``stopped_``).

    ``partial_fit`` trains one epoch without a validation set; skorch's callback would then look
    up the missing score and raise ``KeyError``. Skipping leaves its best weights unset (they
    are reset when training begins), so nothing stale is restored either. skorch stops a run
    by raising ``KeyboardInterrupt``, as Ctrl+C does; ``stopped_`` tells the two apart.
    """

    def on_train_begin(self, net, **kwargs):
        self.stopped_ = False
        return super().on_train_begin(net, **kwargs)

    def on_epoch_end(self, net, **kwargs):
        if self.monitor not in net.history[-1]:
            return
        try:
            super().on_epoch_end(net, **kwargs)
        except KeyboardInterrupt:
            self.stopped_ = True
            raise


def validation_balanced_accuracy(net, X, y) -> float:
    """Balanced accuracy of the epoch's validation predictions (skorch passes cached ones).

    A lesion-grouped validation set can lack a rare class; scikit-learn then warns on every
    epoch that predictions hold classes missing from y_true, which says nothing new.
    """
    from sklearn.metrics import balanced_accuracy_score

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        return balanced_accuracy_score(y, net.predict(X))


class WarmupCosine:
    """Learning-rate factor per batch: linear warm-up, then cosine decay to zero.

    A class rather than a closure so that fitted estimators pickle.
    """

    def __init__(self, total_steps: int, warmup_steps: int):
        self.total_steps = total_steps
        self.warmup_steps = warmup_steps

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        progress = (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def warmup_cosine(n_train: int, batch_size: int, max_epochs: int) -> WarmupCosine:
    """The schedule of a run of ``max_epochs`` over ``n_train`` images: one epoch of warm-up."""
    steps_per_epoch = max(1, math.ceil(n_train / batch_size))
    return WarmupCosine(steps_per_epoch * max_epochs, steps_per_epoch)


def drops_last_batch(n_train: int, batch_size: int) -> bool:
    """Batch norm cannot train on a last batch of one image; drop only that one."""
    return n_train % batch_size == 1
