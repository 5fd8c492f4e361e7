"""Training a fitted network further (``partial_fit``, ``warm_start``) with the hyperparameters
as they are now, not as they were at the first fit."""

from __future__ import annotations

from ._callbacks import drops_last_batch, warmup_cosine

__all__ = ["ARCHITECTURE", "continue_training", "record_architecture"]

# What the network is: a continued fit cannot change these (it would need another network).
ARCHITECTURE = ("backbone", "pretrained", "finetune", "image_size", "resize", "image_shape",
                "optimizer", "lr_schedule")


def record_architecture(estimator) -> None:
    """Remember what the network was built with, to refuse a continued fit that changes it."""
    estimator._architecture = {name: getattr(estimator, name) for name in ARCHITECTURE}


def _check_architecture(estimator) -> None:
    built = getattr(estimator, "_architecture", None)
    if built is None:  # a network restored by an older version: nothing to compare
        return
    changed = [f"{name} from {built[name]!r} to {getattr(estimator, name)!r}"
               for name in ARCHITECTURE if built[name] != getattr(estimator, name)]
    if changed:
        raise ValueError(
            f"a continued fit (warm_start=True or partial_fit) trains the same network, but "
            f"set_params changed {', '.join(changed)}; fit with warm_start=False to train a "
            "new one"
        )


def _apply_hyperparameters(estimator, net, n_train: int, valid_data, offset) -> None:
    """The trainable hyperparameters as set now: lr, weight decay, batch size, augmentation,
    the moving average, early stopping's patience, logit offsets and the validation set."""
    from skorch.helper import predefined_split

    from ..data import BatchAugmentation

    # Written into the optimizer's groups: skorch would rebuild the optimizer (and lose
    # Adam's moments) for a changed optimizer__weight_decay. initial_lr is what the
    # learning-rate schedule scales.
    for group in net.optimizer_.param_groups:
        group["lr"] = group["initial_lr"] = estimator.lr
        group["weight_decay"] = estimator.weight_decay
    net.set_params(
        lr=estimator.lr, batch_size=estimator.batch_size,
        augmentation=BatchAugmentation(float(estimator.augment)) if estimator.augment else None,
        precision=estimator.precision, logit_offset=offset,
        train_split=predefined_split(valid_data) if valid_data else None)
    # skorch reads these at each fit; its set_params would try to re-initialize them.
    vars(net)["optimizer__weight_decay"] = estimator.weight_decay
    vars(net)["iterator_train__drop_last"] = drops_last_batch(n_train, estimator.batch_size)
    callbacks = dict(net.callbacks_)
    changes = {}
    if callbacks["ema"].decay != estimator.ema_decay:
        changes["callbacks__ema__decay"] = estimator.ema_decay
    stopping = callbacks.get("early_stopping")
    if stopping is not None and estimator.patience is not None \
            and stopping.patience != estimator.patience:
        changes["callbacks__early_stopping__patience"] = estimator.patience
    if changes:
        # Only when changed: set_params re-initializes every callback (their best scores).
        net.set_params(**changes)


def _fresh_schedule(estimator, net, n_train: int):
    """A ``warm_start`` fit is a new run of ``max_epochs``: its own warm-up and cosine decay
    from the current ``lr``, as a first fit has (skorch would resume the old schedule at the
    step number of the epochs done, mid-warm-up). Returns the schedule callback, or None."""
    schedule = dict(net.callbacks_).get("lr_schedule")
    if schedule is None:
        return None
    schedule.set_params(lr_lambda=warmup_cosine(n_train, estimator.batch_size,
                                                estimator.max_epochs))
    # skorch passes the callback's public attributes to the scheduler: start at step 0.
    vars(schedule)["last_epoch"] = -1
    return schedule


def continue_training(estimator, train_data, valid_data, offset, epochs) -> None:
    """Train ``estimator.net_`` further: one epoch (``partial_fit``, ``epochs=1``) or a whole
    ``warm_start`` run of ``max_epochs``, keeping its history."""
    _check_architecture(estimator)
    net = estimator.net_
    _apply_hyperparameters(estimator, net, len(train_data), valid_data, offset)
    schedule = _fresh_schedule(estimator, net, len(train_data)) if epochs is None else None
    # A network step without weights, so continued training can switch it too.
    net.module_.color_constancy = (None if estimator.color_constancy is None
                                   else float(estimator.color_constancy))
    try:
        net.partial_fit(train_data, y=None, epochs=epochs or estimator.max_epochs)
    finally:
        if schedule is not None:  # partial_fit calls go on with the schedule from here
            vars(schedule).pop("last_epoch", None)
