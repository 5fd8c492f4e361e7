"""Step 4 of the data's path: the training engine behind ``SkinLesionClassifier.fit``.

One module per job: what ``X`` may be (``_inputs``), how much each image counts (``_weights``),
the skorch net (``_net``) and its callbacks (``_callbacks``), the net a set of hyperparameters
describes (``_build``), head-only training on cached features (``_head``), checkpoints
(``_checkpoint``), data-parallel training under ``torchrun`` (``_distributed``), and one training
run (``_fit``).
"""

from ._build import OPTIMIZERS, build_net, network, worker_start_method, workers
from ._callbacks import (
    EarlyStoppingWhenValidated,
    ExponentialMovingAverage,
    WarmupCosine,
    validation_balanced_accuracy,
)
from ._checkpoint import TrainingCheckpoint
from ._continue import record_architecture
from ._distributed import is_main_process, launched_world_size
from ._fit import FITTED_ATTRIBUTES, check_prediction_settings, fit_or_restore
from ._inputs import check_images
from ._net import LesionNeuralNet

__all__ = [
    "FITTED_ATTRIBUTES",
    "OPTIMIZERS",
    "EarlyStoppingWhenValidated",
    "ExponentialMovingAverage",
    "LesionNeuralNet",
    "TrainingCheckpoint",
    "WarmupCosine",
    "build_net",
    "check_images",
    "check_prediction_settings",
    "fit_or_restore",
    "is_main_process",
    "launched_world_size",
    "network",
    "record_architecture",
    "validation_balanced_accuracy",
    "worker_start_method",
    "workers",
]
