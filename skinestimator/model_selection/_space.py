"""The default Optuna search space over a ``SkinLesionClassifier``'s hyperparameters."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from sklearn.pipeline import Pipeline

__all__ = ["default_search_space", "suggest_params", "to_estimator_params"]


def _classifier_prefix(estimator) -> str:
    """Return ``"<step>__"`` for a Pipeline ending in the classifier, else ``""``."""
    if isinstance(estimator, Pipeline):
        name, _ = estimator.steps[-1]
        return f"{name}__"
    return ""


def _final_estimator(estimator):
    return estimator.steps[-1][1] if isinstance(estimator, Pipeline) else estimator


def _categorical(choices) -> CategoricalDistribution:
    """``CategoricalDistribution(choices)`` without Optuna's warning about non-scalar choices.

    :func:`suggest_params` never hands such choices to Optuna (it suggests their ``repr``
    and maps it back), so the warning about persistent storage does not apply.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Choices for a categorical distribution")
        return CategoricalDistribution(list(choices))


def _is_scalar_choice(choice) -> bool:
    """Whether Optuna stores ``choice`` as it is (and gives back the same object type)."""
    return choice is None or isinstance(choice, bool | int | float | str)


def _choice_labels(dist: CategoricalDistribution) -> dict[str, Any] | None:
    """Label to choice for a categorical with non-scalar choices (tuples, ...), else None.

    Optuna stores categorical values as JSON scalars: a tuple comes back from SQLite as a
    list and makes Optuna warn. Such a parameter is therefore suggested by the ``repr`` of
    its choices (readable in the study and its dashboards) and mapped back here.
    """
    if all(_is_scalar_choice(c) for c in dist.choices):
        return None
    labels = [repr(c) for c in dist.choices]
    if len(set(labels)) < len(labels):
        labels = [f"#{i}: {label}" for i, label in enumerate(labels)]
    return dict(zip(labels, dist.choices, strict=True))


def _image_size_choices(image_size) -> list[int | tuple[int, int]]:
    """``(height, width)`` sizes around the classifier's own, same aspect ratio, cheapest first.

    Squares are plain ints, as earlier versions stored them, so that a study they started
    can be resumed (Optuna refuses a choice list that changed).

    Smaller images train quadratically faster, so the space mostly asks whether a
    smaller input is good enough; one larger size checks whether detail is lost.
    The classifier's own size is kept exactly; the others are scaled by 0.75 and 1.25.
    """
    if image_size is None:
        return [128, 160, 224]
    if isinstance(image_size, Sequence):
        height, width = (int(v) for v in image_size)
    else:
        height = width = int(image_size)

    def scaled(edge: int, factor: float) -> int:
        # Multiples of 8 keep the stride-2 stages of CNN backbones aligned.
        return max(16, int(round(edge * factor / 8)) * 8)

    sizes = {(height, width)}
    sizes |= {(scaled(height, f), scaled(width, f)) for f in (0.75, 1.25)}
    ordered = sorted(sizes, key=lambda hw: (hw[0] * hw[1], hw))
    return [h if h == w else (h, w) for h, w in ordered]


def _searches_finetune(params: Mapping[str, Any]) -> bool:
    """Only a pretrained named backbone has features worth freezing: not ``seed_cnn``,
    not a callable, not ``pretrained=False`` (frozen random convolutions learn nothing)."""
    backbone = params.get("backbone")
    return (
        isinstance(backbone, str)
        and backbone != "seed_cnn"
        and params.get("pretrained", True) is not False
    )


def default_search_space(estimator) -> dict[str, BaseDistribution]:
    """Return the default Optuna search space for a skin-lesion classifier.

    The space covers the hyperparameters that matter most when fine-tuning a
    CNN on a few thousand dermoscopy images: learning rate and weight decay
    (log-uniform), batch size, augmentation strength, how much of the backbone
    is trained (only for a pretrained named backbone: ``"seed_cnn"``, a callable
    backbone or ``pretrained=False`` have no useful features to freeze), and the
    input size: the classifier's own ``(height, width)`` and that size scaled by
    0.75 and 1.25, keeping the aspect ratio. For a :class:`~sklearn.pipeline.Pipeline`
    the names are prefixed with the last step's name (``"clf__lr"``).

    Parameters
    ----------
    estimator : SkinLesionClassifier or Pipeline
        The estimator to tune; its ``get_params()`` decides which entries apply.

    Returns
    -------
    space : dict of str to optuna.distributions.BaseDistribution
        Parameter name to distribution; copy and edit it to override or extend.

    Examples
    --------
    >>> from skinestimator import SkinLesionClassifier
    >>> from skinestimator.model_selection import default_search_space
    >>> space = default_search_space(SkinLesionClassifier(image_size=(32, 32)))
    >>> sorted(space)
    ['augment', 'batch_size', 'finetune', 'image_size', 'lr', 'weight_decay']
    >>> space["image_size"].choices
    (24, 32, 40)
    >>> default_search_space(SkinLesionClassifier(image_size=(150, 200)))["image_size"].choices
    ((112, 152), (150, 200), (184, 248))
    >>> "finetune" in default_search_space(SkinLesionClassifier(backbone="seed_cnn"))
    False
    """
    prefix = _classifier_prefix(estimator)
    params = _final_estimator(estimator).get_params(deep=False)
    candidates: dict[str, BaseDistribution] = {
        "lr": FloatDistribution(1e-4, 3e-2, log=True),
        "weight_decay": FloatDistribution(1e-6, 1e-1, log=True),
        "batch_size": CategoricalDistribution([16, 32, 64]),
        "augment": FloatDistribution(0.0, 1.0),
        # "head" trains only the classifier head, an int the last n backbone blocks.
        "finetune": CategoricalDistribution(["head", 1, 2, "all"]),
        "image_size": _categorical(_image_size_choices(params.get("image_size"))),
    }
    if not _searches_finetune(params):
        del candidates["finetune"]
    return {prefix + name: dist for name, dist in candidates.items() if name in params}


def _python_choice(choice):
    """A NumPy scalar as the Python one (``np.int64(3)`` -> ``3``); other choices as they are.

    Optuna stores only Python scalars as they are: an ``np.int64`` choice would be suggested by
    its ``repr`` (``"np.int64(100)"`` in the study) instead of as a number.
    """
    return choice.item() if isinstance(choice, np.generic) else choice


def _as_distribution(name: str, value: Any) -> BaseDistribution:
    if isinstance(value, BaseDistribution):
        return value
    if isinstance(value, np.ndarray) and value.ndim == 1:
        # e.g. np.logspace(-2, 2, 5), which scikit-learn's searches accept as choices.
        value = list(value)
    if isinstance(value, Sequence) and not isinstance(value, str):
        # A plain list of choices, as scikit-learn's searches accept.
        return _categorical([_python_choice(choice) for choice in value])
    raise TypeError(
        f"param_distributions[{name!r}] must be an optuna distribution, a list or a 1-D array "
        f"of choices, got {value!r}."
    )


def merge_search_space(
    estimator, param_distributions: Mapping[str, Any] | None, default_space: bool
) -> dict[str, BaseDistribution]:
    """Default space (optional) updated with the user's entries; ``None`` removes one."""
    space = default_search_space(estimator) if default_space else {}
    for name, value in (param_distributions or {}).items():
        if value is None:
            space.pop(name, None)
        else:
            space[name] = _as_distribution(name, value)
    valid = estimator.get_params(deep=True)
    unknown = sorted(set(space) - set(valid))
    if unknown:
        raise ValueError(
            f"Invalid parameter(s) {unknown} for estimator {type(estimator).__name__}; "
            f"valid parameters are {sorted(valid)}."
        )
    if not space:
        raise ValueError("The search space is empty: pass param_distributions.")
    return space


def suggest_params(trial, space: Mapping[str, BaseDistribution]) -> dict[str, Any]:
    """Ask ``trial`` for one value per distribution through Optuna's public API.

    Parameters
    ----------
    trial : optuna.trial.Trial
        The running trial.
    space : dict of str to optuna.distributions.BaseDistribution
        The search space.

    Categorical choices that Optuna cannot store as they are (tuples such as
    ``(224, 224)``, lists, objects) are suggested by their ``repr``, so
    ``trial.params`` holds that string, and mapped back: the returned value is
    the original choice.

    Returns
    -------
    params : dict
        One sampled value per parameter name.

    Examples
    --------
    >>> import optuna
    >>> from optuna.distributions import FloatDistribution
    >>> from skinestimator.model_selection import suggest_params
    >>> optuna.logging.set_verbosity(optuna.logging.WARNING)
    >>> study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    >>> trial = study.ask()
    >>> params = suggest_params(trial, {"lr": FloatDistribution(1e-4, 1e-2, log=True)})
    >>> 1e-4 <= params["lr"] <= 1e-2
    True
    """
    params = {}
    for name, dist in space.items():
        if isinstance(dist, FloatDistribution):
            params[name] = trial.suggest_float(
                name, dist.low, dist.high, log=dist.log, step=dist.step
            )
        elif isinstance(dist, IntDistribution):
            params[name] = trial.suggest_int(
                name, dist.low, dist.high, log=dist.log, step=dist.step
            )
        elif isinstance(dist, CategoricalDistribution):
            labels = _choice_labels(dist)
            if labels is None:
                params[name] = trial.suggest_categorical(name, dist.choices)
            else:
                params[name] = labels[trial.suggest_categorical(name, list(labels))]
        else:
            raise TypeError(f"Unsupported distribution for {name!r}: {dist!r}")
    return params


def decode_params(params: Mapping[str, Any], space: Mapping[str, BaseDistribution]) -> dict:
    """Map a trial's stored values back to the choices of ``space`` (see :func:`suggest_params`).

    Values that ``space`` does not know (e.g. of an earlier run's other space) are kept.
    """
    out = dict(params)
    for name, value in params.items():
        dist = space.get(name)
        labels = _choice_labels(dist) if isinstance(dist, CategoricalDistribution) else None
        if labels is not None and isinstance(value, str) and value in labels:
            out[name] = labels[value]
    return out


def to_estimator_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Turn sampled values into ``set_params`` values.

    A square image size given as an int choice (``"image_size": [128, 160]``)
    becomes the ``(height, width)`` pair; other values are kept.

    Parameters
    ----------
    params : dict
        Sampled parameter values.

    Returns
    -------
    params : dict
        The same values, ``*image_size`` ints as ``(size, size)``.

    Examples
    --------
    >>> from skinestimator.model_selection import to_estimator_params
    >>> to_estimator_params({"clf__image_size": 64, "clf__lr": 0.01})
    {'clf__image_size': (64, 64), 'clf__lr': 0.01}
    """
    out = dict(params)
    for name, value in params.items():
        if name.rsplit("__", 1)[-1] == "image_size" and isinstance(value, int):
            out[name] = (value, value)
    return out
