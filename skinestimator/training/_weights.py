"""How much each training image counts: sample and class weights, and the logit-adjusted loss's
offsets from the class shares."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.utils.validation import _check_sample_weight

__all__ = ["logit_offset", "sample_weights"]


def _class_lookup(class_weight, classes, y_encoded, weights) -> dict:
    """Weight of each encoded class under ``class_weight`` ("balanced" or a dict)."""
    if class_weight == "balanced":
        # Weighted class totals, as scikit-learn's "balanced" counts them since 1.7: a
        # sample of weight 0 must be the same as a sample left out.
        # Written out: compute_class_weight only takes sample_weight from sklearn 1.7.
        totals = np.bincount(y_encoded, weights=weights)
        present = np.flatnonzero(totals > 0)
        lookup = dict.fromkeys(np.unique(y_encoded).tolist(), 0.0)
        if present.size:
            per_class = totals.sum() / (len(present) * totals[present])
            lookup.update(zip(present.tolist(), per_class.tolist()))
        return lookup
    unknown = set(class_weight) - set(classes.tolist())
    if unknown:
        raise ValueError(f"class_weight names classes not in y: {sorted(unknown)}")
    return {i: float(class_weight.get(c, 1.0)) for i, c in enumerate(classes)}


def sample_weights(y_encoded, sample_weight, *, class_weight, classes,
                   need_two_classes: bool = True) -> np.ndarray:
    """Per-image loss weights: ``sample_weight`` times the class weight, as float32.

    Raises ``ValueError`` when fewer than two classes (one for a ``partial_fit`` batch, which
    may hold a single class) keep a positive weight.
    """
    weights = _check_sample_weight(
        sample_weight, np.empty((len(y_encoded), 1)), dtype=np.float64, ensure_non_negative=True
    )
    if class_weight is not None:
        lookup = _class_lookup(class_weight, classes, y_encoded, weights)
        weights = weights * np.asarray([lookup[c] for c in y_encoded])
    weighted_classes = np.unique(y_encoded[weights > 0])
    if not weighted_classes.size or (need_two_classes and len(weighted_classes) < 2):
        raise ValueError(
            f"sample_weight leaves {len(weighted_classes)} classes with positive weight; "
            f"{'a classifier needs at least 2' if need_two_classes else 'nothing to train on'}"
        )
    return weights.astype(np.float32)


def logit_offset(weight_per_class: np.ndarray, tau: float) -> torch.Tensor | None:
    """τ·log(class share of the weighted training data), or None without adjustment.

    Centred, which leaves the softmax unchanged, so that equal shares give exactly zero.
    """
    if not tau:
        return None
    share = weight_per_class / weight_per_class.sum()
    # A class absent from this training data (partial_fit's `classes`) gets a large
    # negative offset rather than -inf, which would turn the loss into NaN.
    log_share = np.log(np.maximum(share, 1e-12))
    return torch.as_tensor(tau * (log_share - log_share.mean()), dtype=torch.float32)
