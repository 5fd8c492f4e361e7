"""The skorch net: per-sample weighted loss, logit offsets, batch augmentation, test-time flips."""

from __future__ import annotations

import torch
from skorch import NeuralNetClassifier

__all__ = ["LesionNeuralNet"]


class LesionNeuralNet(NeuralNetClassifier):
    """skorch classifier with per-sample weighted loss, augmentation and test-time flips.

    Parameters
    ----------
    *args, **kwargs
        As skorch's ``NeuralNetClassifier``.
    tta : bool, default=False
        Average the predicted probabilities over the four flips.
    augmentation : callable or None, default=None
        Applied to every training batch on the training device (``BatchAugmentation``).
    logit_offset : torch.Tensor or None, default=None
        Added to the logits inside the loss only (logit adjustment); predictions never see it.
    """

    def __init__(self, *args, tta: bool = False, augmentation=None, logit_offset=None,
                 **kwargs):
        super().__init__(*args, **kwargs)
        self.tta = tta
        self.augmentation = augmentation
        self.logit_offset = logit_offset

    def fit_loop(self, X, y=None, epochs=None, **fit_params):
        # skorch's fit swallows KeyboardInterrupt (Ctrl+C) to keep the partly trained network;
        # `interrupted_` lets the estimator say so instead of returning as if training had
        # finished. Early stopping ends a run with the same exception; it is no interruption.
        self.interrupted_ = False
        try:
            return super().fit_loop(X, y, epochs=epochs, **fit_params)
        except KeyboardInterrupt:
            self.interrupted_ = not any(getattr(callback, "stopped_", False)
                                        for _, callback in self.callbacks_)
            raise

    def infer(self, x, **fit_params):
        if isinstance(x, dict):
            x = x["images"]
        x = x.to(self.device)
        if self.module_.training:
            # Augment whole batches on the training device (see BatchAugmentation for why).
            if self.augmentation is not None:
                x = self.augmentation(x)
            return self.module_(x)
        if not self.tta:
            return self.module_(x)
        # Average the probabilities over the four flips; returning their log keeps the
        # softmax that predict_proba applies exact.
        views = (x, x.flip(-1), x.flip(-2), x.flip(-1).flip(-2))
        probabilities = torch.stack([self.module_(v).softmax(dim=1) for v in views]).mean(0)
        return probabilities.clamp_min(1e-12).log()

    def get_loss(self, y_pred, y_true, X=None, training=False):
        if self.logit_offset is not None:
            y_pred = y_pred + self.logit_offset.to(y_pred)
        per_sample = super().get_loss(y_pred, y_true, X=X, training=training)
        if per_sample.ndim == 0:
            return per_sample
        if isinstance(X, dict) and "sample_weight" in X:
            weights = X["sample_weight"].to(per_sample)
            # A weighted mean, like torch's class-weighted cross-entropy: scaling all
            # weights by a constant leaves the loss unchanged.
            return (per_sample * weights).sum() / weights.sum().clamp_min(1e-12)
        return per_sample.mean()
