"""``SkinLesionClassifier``: a scikit-learn classifier with a PyTorch CNN trained by skorch.

This module is the estimator's scikit-learn face; the training engine behind ``fit`` is
:mod:`skinestimator.training`, and the hyperparameters' table is :mod:`skinestimator._parameters`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted
from skorch.history import History

from ._parameters import check_parameters, fill_parameter_docs
from ._runtime import resolve_device
from ._sets import PredictionSetMixin
from .data import ImageDataset, worker_errors_unwrapped
from .images import read_image
from .training import (
    build_net,
    check_images,
    check_prediction_settings,
    fit_or_restore,
    network,
    record_architecture,
    worker_start_method,
    workers,
)

__all__ = ["SkinLesionClassifier"]


@fill_parameter_docs
class SkinLesionClassifier(PredictionSetMixin, ClassifierMixin, BaseEstimator):
    """Skin-lesion image classifier: a CNN fine-tuned (or trained from scratch) with skorch.

    It accepts image file paths (streamed from disk in batches by DataLoader workers and cached
    after their first decoding), image arrays, or flattened images, and works with every
    scikit-learn tool: ``Pipeline``, ``cross_val_score``, ``GridSearchCV``, ``clone``, pickling.

    {parameters}
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
    temperature_ : float
        The temperature ``predict_proba`` divides the logits by (1: not calibrated).
    conformal_scores_ : ConformalScores or None
        The calibration scores behind :meth:`predict_set` (None without a validation split
        until :meth:`fit_conformal`).

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
        precision: str = "32",
        checkpoint_dir=None,
        calibration: str | None = None,
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
        self.precision = precision
        self.checkpoint_dir = checkpoint_dir
        self.calibration = calibration
        self.callbacks = callbacks

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
        return fit_or_restore(self, X, y, **options)

    def _check_params(self) -> None:
        """Raise ``ValueError`` naming the first invalid hyperparameter (``fit`` does too)."""
        check_parameters(self)
        check_prediction_settings(self)

    def _network(self, *, pretrained: bool, n_classes: int | None = None):
        """The torch module these hyperparameters describe, for ``classes_`` (or n_classes)."""
        return network(self, pretrained=pretrained, n_classes=n_classes)

    def _prediction_data(self, X, *, own: bool = False) -> ImageDataset:
        check_is_fitted(self)
        self._apply_prediction_settings()
        images, _ = check_images(self, X, fitting=False, own=own)
        return ImageDataset(images, None, image_size=self.image_size_, resize=self.resize)

    def _apply_prediction_settings(self) -> None:
        """Check the prediction settings; an explicit ``device`` moves the fitted network."""
        device = check_prediction_settings(self)
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
        self.net_.set_params(tta=bool(self.tta))
        # skorch reads loader options from these attributes at every call; set_params would
        # re-initialize the net.
        batch_size = self.predict_batch_size or self.batch_size
        self.net_.iterator_valid__num_workers = workers(
            self.num_workers, data.from_paths, n_batches=math.ceil(len(data) / batch_size))
        self.net_.iterator_valid__persistent_workers = False
        self.net_.iterator_valid__batch_size = batch_size
        self.net_.iterator_valid__multiprocessing_context = (
            worker_start_method() if self.net_.iterator_valid__num_workers else None
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

    def _restore(self, *, classes, image_size, state_dict, history=(), n_features_in=None,
                 temperature=1.0, conformal_scores=None):
        """Rebuild a fitted estimator from its hyperparameters and weights, without training."""
        self._check_params()
        self.classes_ = np.asarray(classes)
        self.image_size_ = (int(image_size[0]), int(image_size[1]))
        self.device_ = resolve_device(self.device)
        if n_features_in is not None:
            self.n_features_in_ = int(n_features_in)
        # The weights come from the file, so never fetch pretrained ones first.
        module = self._network(pretrained=False)
        self.net_ = build_net(self, len(self.classes_), 1, None, False, module=module)
        self.net_.initialize()
        self.net_.module_.load_state_dict(state_dict)
        self.net_.module_.eval()
        self.temperature_ = self.net_.temperature = float(temperature)
        self.conformal_scores_ = conformal_scores
        self.history_ = [dict(row) for row in history]
        # A warm_start or partial_fit of a loaded model continues this history.
        self.net_.history = History([dict(row) for row in history])
        record_architecture(self)
        return self

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True
        tags.input_tags.three_d_array = True
        return tags
