"""One training run of a ``SkinLesionClassifier``: targets, weights, split, datasets, the net.

A failed run leaves the estimator as it was (:func:`fit_or_restore`).
"""

from __future__ import annotations

import copy
import json
import math
import os

import numpy as np
import torch
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import column_or_1d
from sklearn.utils.multiclass import check_classification_targets

from .._parameters import check_parameters
from .._runtime import resolve_device
from .._validation import fit_seeds, grouped_holdout, random_holdout
from .._warnings import warn_user
from ..data import ImageCache, ImageDataset, worker_errors_unwrapped
from ..images import resize_batch
from ._build import build_net, network
from ._calibrate import calibrate
from ._checkpoint import TrainingCheckpoint, fingerprint
from ._continue import continue_training, record_architecture
from ._distributed import Distributed, check_batch_size, join_process_group, rank_device
from ._head import fit_head_on_features, trains_on_cached_features
from ._inputs import check_images, default_path_image_size
from ._weights import logit_offset, sample_weights

__all__ = ["FITTED_ATTRIBUTES", "fit_or_restore", "image_size_param"]

# Everything fit sets; restored when a fit fails (see fit_or_restore).
FITTED_ATTRIBUTES = ("classes_", "image_size_", "device_", "net_", "history_",
                     "n_features_in_", "feature_names_in_", "_class_weight_seen",
                     "_architecture", "temperature_", "conformal_scores_")


def image_size_param(estimator) -> tuple[int, int] | None:
    """``image_size`` as ``(height, width)``; an int means a square."""
    size = estimator.image_size
    if size is None:
        return None
    if isinstance(size, (tuple, list)):
        return int(size[0]), int(size[1])
    return int(size), int(size)


def fit_or_restore(estimator, X, y, **options):
    """:func:`_train`, leaving ``estimator`` as it was when training fails.

    A fresh fit sets ``classes_`` and ``image_size_`` before the network trains; a failure
    after that (a bad ``y_val``, an unreadable file, a diverged loss) must not leave the
    old network answering with the new labels.
    """
    previous = {name: getattr(estimator, name) for name in FITTED_ATTRIBUTES
                if hasattr(estimator, name)}
    continued = None
    if "net_" in previous and (options["epochs"] is not None or bool(estimator.warm_start)):
        # A continued fit trains this network in place: keep its weights, optimizer state
        # and history to fall back on (a copy of the whole skorch net costs ~1 s on Lite0).
        net = estimator.net_
        continued = (
            {key: value.detach().clone() for key, value in net.module_.state_dict().items()},
            copy.deepcopy(net.optimizer_.state_dict()) if hasattr(net, "optimizer_") else None,
            len(net.history),
        )
    try:
        with worker_errors_unwrapped():
            return _train(estimator, X, y, **options)
    except BaseException:
        for name in FITTED_ATTRIBUTES:
            if name in previous:
                setattr(estimator, name, previous[name])
            elif hasattr(estimator, name):
                delattr(estimator, name)
        if continued is not None:
            weights, optimizer_state, n_epochs = continued
            estimator.net_.module_.load_state_dict(weights)
            if optimizer_state is not None:
                estimator.net_.optimizer_.load_state_dict(optimizer_state)
            del estimator.net_.history[n_epochs:]
        if hasattr(estimator, "net_"):
            estimator.net_.train_split = None
        raise


def _check_one_label_type(y: np.ndarray) -> None:
    """Labels of mixed types cannot be sorted into ``classes_`` (numpy would raise a bare
    "'<' not supported between instances of 'int' and 'str'")."""
    if y.dtype != object:
        return
    strings = [i for i, label in enumerate(y) if isinstance(label, str)]
    others = [i for i, label in enumerate(y) if not isinstance(label, str)]
    if strings and others:
        i, j = strings[0], others[0]
        raise ValueError(
            f"y mixes string labels with {type(y[j]).__name__} labels (y[{i}] is {y[i]!r}, "
            f"y[{j}] is {y[j]!r}); use one type for all labels, e.g. y.astype(str)"
        )


def _encoded_targets(estimator, y, n_images: int, *, continuing: bool, classes) -> np.ndarray:
    """``y`` as class indices; a fresh fit sets ``classes_``."""
    if y is None:
        raise ValueError(
            f"{type(estimator).__name__} requires y to be passed, but the target y is None"
        )
    y = column_or_1d(y, warn=True)
    if len(y) != n_images:
        raise ValueError(f"X has {n_images} samples but y has {len(y)}")
    _check_one_label_type(y)
    check_classification_targets(y)
    if n_images < 2:
        raise ValueError(f"need at least 2 samples to train (batch norm), got {n_images} sample")
    if continuing:
        unseen = np.setdiff1d(np.unique(y), estimator.classes_)
        if unseen.size:
            raise ValueError(
                f"y has classes {list(unseen)} unseen in the first fit {list(estimator.classes_)}"
            )
        return np.searchsorted(estimator.classes_, y).astype(np.int64)
    encoder = LabelEncoder().fit(y if classes is None else np.concatenate([np.asarray(classes), y]))
    estimator.classes_ = encoder.classes_
    if len(estimator.classes_) < 2:
        raise ValueError(
            f"needs samples of at least 2 classes to train; got 1 class: "
            f"{estimator.classes_[0]!r}"
        )
    return encoder.transform(y).astype(np.int64)


def _class_offset(estimator, y_encoded, weights, *, streaming: bool):
    """The logit adjustment's offsets; records the weighted class totals seen.

    ``streaming`` (a ``partial_fit`` after the first) adds this batch to the totals of all
    batches so far: a batch's own shares would make a one-class batch's offset cancel its
    loss, so that it taught nothing. (A loaded model file starts counting afresh.)
    """
    weight_per_class = np.bincount(y_encoded, weights=weights,
                                   minlength=len(estimator.classes_))
    seen = getattr(estimator, "_class_weight_seen", None)
    if streaming and seen is not None and len(seen) == len(weight_per_class):
        weight_per_class = weight_per_class + seen
    estimator._class_weight_seen = weight_per_class
    return logit_offset(weight_per_class, estimator.logit_adjustment)


def holdout(estimator, y_encoded, seed, use_validation, groups=None):
    """Indices ``(train, valid)`` of the validation split ``fit`` holds out (valid None: no
    validation)."""
    n = len(y_encoded)
    if groups is not None:
        groups = column_or_1d(groups)
        if len(groups) != n:
            raise ValueError(f"groups has {len(groups)} entries but X has {n} samples")
    if not use_validation:
        return np.arange(n), None
    if groups is not None:
        try:
            return grouped_holdout(y_encoded, groups, estimator.validation_fraction, seed=seed)
        except ValueError as exc:
            warn_user(f"{exc}; training without validation")
            return np.arange(n), None
    n_valid = int(math.ceil(estimator.validation_fraction * n))
    if n_valid < 1 or n - n_valid < 2:
        warn_user(
            f"too few samples ({n}) for validation_fraction="
            f"{estimator.validation_fraction}; training without validation"
        )
        return np.arange(n), None
    return random_holdout(y_encoded, n_valid, seed=seed)


class _SubsetCache:
    """A view of a shared :class:`ImageCache` through the indices of a subset."""

    def __init__(self, cache: ImageCache, index: np.ndarray):
        self.cache = cache
        self.index = np.asarray(index)

    def get(self, i):
        return self.cache.get(int(self.index[i]))

    def put(self, i, image):
        self.cache.put(int(self.index[i]), image)


class _Caches:
    """The decoded-image caches of one run, all closed when it ends."""

    def __init__(self, estimator, from_paths: bool):
        self.enabled = from_paths and bool(estimator.image_cache)
        self.directory = None
        if isinstance(estimator.image_cache, (str, os.PathLike)):
            self.directory = os.fspath(estimator.image_cache)
        self.shape = (*estimator.image_size_, 3)
        self.open = []

    def new(self, n: int) -> ImageCache | None:
        if not self.enabled:
            return None
        if self.directory is not None:
            os.makedirs(self.directory, exist_ok=True)
        self.open.append(ImageCache(n, self.shape, directory=self.directory))
        return self.open[-1]

    def close(self) -> None:
        for cache in self.open:
            cache.close()


def _validation_data(estimator, X_val, y_val, caches: _Caches) -> ImageDataset:
    images, from_paths = check_images(estimator, X_val, fitting=False)
    y_val = column_or_1d(y_val)
    if len(y_val) != len(images) or len(y_val) == 0:
        raise ValueError(f"X_val has {len(images)} samples but y_val has {len(y_val)}")
    unseen = np.setdiff1d(np.unique(y_val), estimator.classes_)
    if unseen.size:
        raise ValueError(f"y_val has classes {list(unseen)} that are not in y")
    return ImageDataset(
        images, np.searchsorted(estimator.classes_, y_val).astype(np.int64),
        image_size=estimator.image_size_, resize=estimator.resize,
        cache=caches.new(len(images)) if from_paths else None,
    )


def _set_image_size(estimator, images, from_paths: bool) -> None:
    if estimator.image_size is not None:
        estimator.image_size_ = image_size_param(estimator)
    elif from_paths:
        estimator.image_size_ = default_path_image_size(images)
    else:
        estimator.image_size_ = (int(images.shape[1]), int(images.shape[2]))


def _train(estimator, X, y, *, sample_weight, epochs, classes, validation, groups=None):
    check_parameters(estimator)
    check_prediction_settings(estimator)
    continuing = (epochs is not None or estimator.warm_start) and hasattr(estimator, "net_")
    images, from_paths = check_images(estimator, X, fitting=not continuing)
    y_encoded = _encoded_targets(estimator, y, len(images), continuing=continuing,
                                 classes=classes)
    # partial_fit streams batches, which may hold one class (scikit-learn's convention).
    weights = sample_weights(y_encoded, sample_weight, class_weight=estimator.class_weight,
                             classes=estimator.classes_, need_two_classes=epochs is None)
    if not continuing:
        _set_image_size(estimator, images, from_paths)
    if not from_paths and images.shape[1:3] != tuple(estimator.image_size_):
        images = resize_batch(images, estimator.image_size_, policy=estimator.resize)

    torch_seed, split_seed = fit_seeds(estimator.random_state)
    device = rank_device(resolve_device(estimator.device))
    if estimator.precision == "16-mixed" and not device.startswith("cuda"):
        raise ValueError(f"precision='16-mixed' needs a CUDA GPU (device is {device!r}); "
                         "on the CPU use precision='bf16'")
    distributed = join_process_group(device)
    if distributed is not None:
        check_batch_size(estimator.batch_size, distributed.world_size)
    caches = _Caches(estimator, from_paths)
    try:
        cache = caches.new(len(images))
        use_validation = epochs is None and bool(estimator.validation_fraction)
        train_idx, valid_idx = holdout(estimator, y_encoded, split_seed,
                                       use_validation and validation is None, groups)

        def subset(index, *, train):
            return ImageDataset(
                images[index], y_encoded[index], image_size=estimator.image_size_,
                resize=estimator.resize, sample_weight=weights[index] if train else None,
                cache=None if cache is None else _SubsetCache(cache, index),
            )

        train_data = subset(train_idx, train=True)
        offset = _class_offset(estimator, y_encoded[train_idx], weights[train_idx],
                               streaming=epochs is not None and continuing)
        valid_data = subset(valid_idx, train=False) if valid_idx is not None else None
        if validation is not None:
            valid_data = _validation_data(estimator, *validation, caches)
        devices = [torch.cuda.current_device()] if device.startswith("cuda") else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(torch_seed)
            if continuing:
                estimator.net_.temperature = 1.0  # the validation epochs score the raw logits
                continue_training(estimator, train_data, valid_data, offset, epochs)
            else:
                checkpoint = None
                if estimator.checkpoint_dir is not None and epochs is None:
                    checkpoint = TrainingCheckpoint(estimator.checkpoint_dir, fingerprint(
                        estimator, images, from_paths, y, sample_weight, groups, validation))
                _new_net(estimator, device, train_data, valid_data, from_paths, offset,
                         epochs, seed=torch_seed, checkpoint=checkpoint,
                         distributed=distributed)
            check_weights_finite(estimator)
            calibrate(estimator, valid_data)
    finally:
        caches.close()
    _finish(estimator)
    return estimator


def _new_net(estimator, device, train_data, valid_data, from_paths, offset, epochs, *,
             seed: int, checkpoint: TrainingCheckpoint | None = None,
             distributed: Distributed | None = None) -> None:
    warn_if_average_too_short(estimator, len(train_data), epochs or estimator.max_epochs)
    estimator.device_ = device
    record_architecture(estimator)
    module = network(estimator, pretrained=estimator.pretrained)
    if distributed is not None and distributed.rank:
        # Each rank its own augmentations and dropout masks (the weights come from rank 0).
        torch.manual_seed(seed + distributed.rank)
    if trains_on_cached_features(estimator, module):
        if checkpoint is not None:
            warn_user("checkpoint_dir is not used by head-only training on cached features "
                      "(finetune='head', augment=False): its epochs take seconds")
        estimator.net_ = fit_head_on_features(estimator, module, train_data, valid_data,
                                              from_paths, epochs, offset)
        return
    state = checkpoint.load() if checkpoint is not None else None
    if state is not None:
        seed = state["shuffle_seed"]
    net = estimator.net_ = build_net(
        estimator, len(estimator.classes_), len(train_data), valid_data, from_paths,
        module=module, logit_offset=offset, shuffle_seed=seed, checkpoint=checkpoint,
        distributed=distributed)
    if state is None:
        net.fit(train_data, y=None, epochs=epochs)
        return
    # Resume: the epochs done are history; the checkpoint callback restores the rest of the
    # state when training begins, after the other callbacks have reset theirs.
    from skorch.history import History

    net.initialize()
    net.history = History(json.loads(state["history"]))
    # The scheduler, rebuilt when training begins, needs the groups' initial_lr already.
    net.optimizer_.load_state_dict(state["optimizer"])
    if state["finished"]:
        net.module_.load_state_dict(state["final_module"])
        checkpoint.pending_ = None
        return
    net.partial_fit(train_data, y=None, epochs=estimator.max_epochs - state["epochs"])


def _finish(estimator) -> None:
    """After training: drop the validation set, check the weights, record the history."""
    # The validation set must not travel with the fitted model (pickles, model files).
    estimator.net_.train_split = None
    if getattr(estimator.net_, "interrupted_", False):
        # As scikit-learn's MLPClassifier: keep what was trained, and say so.
        warn_user(f"training interrupted by the user (KeyboardInterrupt) after "
                  f"{len(estimator.net_.history)} epochs; the model is only partly trained")
    check_weights_finite(estimator)
    estimator.history_ = [
        {key: value.item() if isinstance(value, np.generic) else value
         for key, value in row.items() if key != "batches"}
        for row in estimator.net_.history
    ]


def check_weights_finite(estimator) -> None:
    """A diverged fit has NaN weights, and then predicts NaN probabilities and the first
    class for every image without any error: refuse it here, naming the likely cause."""
    net = estimator.net_
    broken = [name for name, tensor in net.module_.state_dict().items()
              if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())]
    if broken:
        losses = ", ".join(f"{row.get('train_loss', math.nan):.4g}" for row in net.history)
        raise FloatingPointError(
            f"training diverged: {len(broken)} weight tensors (e.g. {broken[0]!r}) hold NaN "
            f"or infinite values after {len(net.history)} epochs (training loss by "
            f"epoch: {losses}); use a smaller lr (now {estimator.lr!r})"
        )


def warn_if_average_too_short(estimator, n_train: int, epochs: int) -> None:
    """A fit shorter than the average's window averages its early, barely trained steps."""
    decay = estimator.ema_decay
    if decay is None:
        return
    steps = max(1, math.ceil(n_train / estimator.batch_size)) * epochs
    window = 1 / (1 - decay)
    if steps < window:
        first_half = decay ** (steps - steps // 2)
        early_share = (first_half - decay ** steps) / (1 - decay ** steps)
        warn_user(
            f"ema_decay={decay} averages about the last {window:.0f} training "
            f"steps, but this fit has {steps}: its first half holds {early_share:.0%} of "
            "the averaged model; use a smaller ema_decay"
        )


def check_prediction_settings(estimator) -> torch.device | None:
    """Check what prediction reads (``fit`` checks it too; ``set_params`` after ``fit`` may
    change it): ``tta``, ``predict_batch_size``, ``resize`` and ``device``. Returns the
    torch device ``device`` names, or None for "auto"."""
    check_parameters(estimator, ("tta", "predict_batch_size", "resize", "device"))
    if estimator.device == "auto":
        return None
    return torch.device(resolve_device(estimator.device))
