"""The skorch net a set of hyperparameters describes: callbacks, optimizer, data loaders."""

from __future__ import annotations

import multiprocessing
import os

import torch
from torch import nn

from ..networks import build_network
from ._callbacks import (
    EarlyStoppingWhenValidated,
    ExponentialMovingAverage,
    drops_last_batch,
    validation_balanced_accuracy,
    warmup_cosine,
)
from ._distributed import Distributed, ScoresAgree
from ._net import LesionNeuralNet

__all__ = ["OPTIMIZERS", "build_net", "network", "worker_start_method", "workers"]

OPTIMIZERS = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam, "sgd": torch.optim.SGD}


def worker_start_method() -> str:
    """How DataLoader workers start: fork where the OS has it (instant, shares the decoded-image
    cache mapping), else spawn. Named explicitly because inside joblib's loky workers (e.g.
    ``GridSearchCV(n_jobs=2)``) the inherited default context cannot start torch workers."""
    return "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"


def workers(num_workers, from_paths: bool, n_batches: int | None = None) -> int:
    """DataLoader worker processes: none for arrays, which have nothing to decode, and
    never more than there are batches (each worker costs a process start per call)."""
    if not from_paths:
        return 0
    if num_workers != "auto":
        count = int(num_workers)
    else:
        count = max(1, min(4, (os.cpu_count() or 2) - 1))
    return count if n_batches is None else min(count, n_batches)


def network(estimator, *, pretrained: bool, n_classes: int | None = None) -> nn.Module:
    """The torch module ``estimator``'s hyperparameters describe, for its ``classes_`` (or
    ``n_classes``)."""
    return build_network(
        estimator.backbone,
        len(estimator.classes_) if n_classes is None else n_classes,
        pretrained=pretrained,
        finetune=estimator.finetune,
        channels_last=True,
        color_constancy=estimator.color_constancy,
    )


def _callbacks(estimator, n_train: int, validated: bool, *, main: bool = True,
               parallel: bool = False) -> list:
    from skorch.callbacks import EpochScoring, LRScheduler, ProgressBar

    # The average comes first: the epoch-end callbacks after it must see the averaged weights.
    callbacks = [("ema", ExponentialMovingAverage(estimator.ema_decay))]
    if validated:
        callbacks.append(("valid_bacc", EpochScoring(
            validation_balanced_accuracy, lower_is_better=False, name="valid_bacc",
            use_caching=True)))
        if parallel:
            callbacks.append(("scores_agree", ScoresAgree()))
        if estimator.patience is not None:
            callbacks.append(("early_stopping", EarlyStoppingWhenValidated(
                monitor="valid_bacc", lower_is_better=False, patience=estimator.patience,
                load_best=True)))
    if estimator.lr_schedule == "warmup_cosine":
        callbacks.append(("lr_schedule", LRScheduler(
            policy=torch.optim.lr_scheduler.LambdaLR,
            lr_lambda=warmup_cosine(n_train, estimator.batch_size, estimator.max_epochs),
            step_every="batch")))
    if estimator.verbose and main:
        callbacks.append(("progress", ProgressBar()))
    for i, callback in enumerate(estimator.callbacks or []):
        if isinstance(callback, tuple):
            callbacks.append(callback)
        else:
            callbacks.append((f"user_{i}_{type(callback).__name__}", callback))
    return callbacks


def _loader_options(estimator, from_paths: bool) -> dict:
    count = workers(estimator.num_workers, from_paths)
    pin = estimator.device_.startswith("cuda")
    options = {"iterator_train__num_workers": count, "iterator_train__pin_memory": pin,
               "iterator_valid__batch_size": estimator.predict_batch_size or estimator.batch_size,
               "iterator_valid__num_workers": count, "iterator_valid__pin_memory": pin,
               "iterator_valid__multiprocessing_context": None}
    if count:
        options["iterator_train__persistent_workers"] = True
        options["iterator_train__multiprocessing_context"] = worker_start_method()
        options["iterator_valid__multiprocessing_context"] = worker_start_method()
    return options


def build_net(estimator, n_classes: int, n_train: int, valid_data, from_paths: bool,
              module: nn.Module | None = None, logit_offset=None, shuffle_seed=None,
              checkpoint=None, distributed: Distributed | None = None) -> LesionNeuralNet:
    """The (uninitialized) skorch net training ``module`` on ``n_train`` images, validated on
    ``valid_data`` (or not, when None), with ``estimator``'s hyperparameters; ``checkpoint``
    (a :class:`~skinestimator.training.TrainingCheckpoint`) comes after every other callback.
    ``distributed``: this process is one rank of a data-parallel run (only rank 0 prints)."""
    from skorch.helper import predefined_split

    from ..data import BatchAugmentation

    if module is None:
        module = network(estimator, pretrained=estimator.pretrained, n_classes=n_classes)
    world_size, rank = (1, 0) if distributed is None else (distributed.world_size,
                                                           distributed.rank)
    optimizer = (OPTIMIZERS.get(estimator.optimizer, estimator.optimizer)
                 if isinstance(estimator.optimizer, str) else estimator.optimizer)
    return LesionNeuralNet(
        module=module,
        criterion=nn.CrossEntropyLoss,
        criterion__reduction="none",
        optimizer=optimizer,
        optimizer__weight_decay=estimator.weight_decay,
        lr=estimator.lr,
        max_epochs=estimator.max_epochs,
        batch_size=estimator.batch_size,
        train_split=predefined_split(valid_data) if valid_data is not None else None,
        iterator_train__shuffle=True,
        iterator_train__drop_last=drops_last_batch(n_train, estimator.batch_size),
        **_loader_options(estimator, from_paths),
        callbacks=_callbacks(estimator, n_train, valid_data is not None, main=rank == 0,
                             parallel=world_size > 1)
        + ([("checkpoint", checkpoint)] if checkpoint is not None else []),
        classes=list(range(n_classes)),
        device=estimator.device_,
        verbose=int(estimator.verbose) if rank == 0 else 0,
        tta=bool(estimator.tta),
        logit_offset=logit_offset,
        shuffle_seed=shuffle_seed,
        precision=estimator.precision,
        world_size=world_size,
        rank=rank,
        augmentation=BatchAugmentation(float(estimator.augment)) if estimator.augment else None,
    )
