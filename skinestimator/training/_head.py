"""Head-only training on backbone features computed once (``finetune="head", augment=False``)."""

from __future__ import annotations

import inspect
import math

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ._build import build_net, worker_start_method, workers

__all__ = ["fit_head_on_features", "trains_on_cached_features"]


def trains_on_cached_features(estimator, module) -> bool:
    """Head-only training without augmentation sees the same backbone features every
    epoch: compute them once and train the linear classifier on them."""
    if estimator.finetune != "head" or estimator.augment or not module.has_feature_map:
        return False
    body = module.body
    return (hasattr(body, "get_classifier") and isinstance(body.get_classifier(), nn.Linear)
            and "pre_logits" in inspect.signature(body.forward_head).parameters)


def _pooled_features(estimator, module, data) -> torch.Tensor:
    from torch.utils.data import DataLoader

    batch_size = 2 * estimator.batch_size
    count = workers(estimator.num_workers, data.from_paths,
                    n_batches=math.ceil(len(data) / batch_size))
    loader = DataLoader(data, batch_size=batch_size, num_workers=count,
                        multiprocessing_context=worker_start_method() if count else None)
    module.to(estimator.device_).eval()
    batches = []
    with torch.inference_mode():
        for images, _ in tqdm(loader, desc="backbone features", disable=not estimator.verbose,
                              leave=False):
            if isinstance(images, dict):
                images = images["images"]
            feature_map = module.features(module.normalize(images.to(estimator.device_)))
            batches.append(module.body.forward_head(feature_map, pre_logits=True).float().cpu())
    return torch.cat(batches)


def fit_head_on_features(estimator, module, train_data, valid_data, from_paths, epochs,
                         logit_offset=None):
    """Train ``module``'s linear classifier on its pooled backbone features; return the full
    network's skorch net, initialized, with the head's training history."""
    from skorch.dataset import Dataset

    def feature_data(data, with_weights):
        X = {"images": _pooled_features(estimator, module, data)}
        if with_weights:
            X["sample_weight"] = torch.from_numpy(np.asarray(data.sample_weight))
        return Dataset(X, torch.from_numpy(np.asarray(data.y)))

    n_classes = len(estimator.classes_)
    train_features = feature_data(train_data, with_weights=True)
    valid_features = feature_data(valid_data, False) if valid_data is not None else None
    # The head shares its Linear layer with `module`: training it trains the full network's
    # classifier in place (early stopping restores the best epoch into it too).
    head = nn.Sequential(nn.Dropout(float(getattr(module.body, "drop_rate", 0.0))),
                         module.body.get_classifier())
    head_net = build_net(estimator, n_classes, len(train_features), valid_features, False,
                         module=head, logit_offset=logit_offset)
    head_net.tta = False
    head_net.fit(train_features, y=None, epochs=epochs)
    net = build_net(estimator, n_classes, len(train_data), None, from_paths, module=module,
                    logit_offset=logit_offset)
    net.initialize()
    net.history = head_net.history
    # Later partial_fit calls resume the LR schedule at this history's length.
    for group in net.optimizer_.param_groups:
        group.setdefault("initial_lr", group["lr"])
    return net
