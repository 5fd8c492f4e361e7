"""Hyperparameter search with Optuna as a scikit-learn classifier."""

from __future__ import annotations

import contextlib
import os
import socket
import time
import warnings
from collections.abc import Mapping
from copy import deepcopy
from numbers import Integral, Real
from typing import Any

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.storages import BaseStorage
from optuna.trial import TrialState
from optuna_integration import SkorchPruningCallback
from scipy.stats import rankdata
from sklearn.base import BaseEstimator, MetaEstimatorMixin, clone, is_classifier
from sklearn.exceptions import FitFailedWarning
from sklearn.metrics import check_scoring
from sklearn.pipeline import Pipeline
from sklearn.utils import _safe_indexing, check_random_state, indexable
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted, get_tags

from ._space import decode_params, merge_search_space, suggest_params, to_estimator_params
from ._split import check_group_cv, check_groups_disjoint, fit_grouped
from ._storage import open_storage

__all__ = ["OptunaLesionSearchCV"]

#: Study name used with a persistent ``storage`` when none is given, so that a
#: second process finds and resumes the first one's study.
DEFAULT_STUDY_NAME = "skinestimator-search"

#: Study user attribute holding the settings that make trial scores comparable.
SETTINGS_ATTR = "skinestimator_search_settings"


class _FoldPruningCallback(SkorchPruningCallback):
    """Report a skorch net's per-epoch score to Optuna, one step range per CV fold.

    ``SkorchPruningCallback`` reports epoch ``e`` as step ``e``; inside a
    cross-validated trial every fold would reuse steps ``0, 1, ...`` and Optuna
    ignores a step reported twice, so only the first fold could ever prune.
    Here fold ``k`` reports step ``k * stride + e``: each fold's epoch ``e`` is
    compared with the same fold and epoch of earlier trials. The study
    maximizes, so a ``*loss`` monitor is reported negated.
    """

    def __init__(self, trial, monitor: str, *, fold: int = 0, stride: int = 1000) -> None:
        super().__init__(trial, monitor)
        # Public copies so that skorch's get_params/clone of callbacks work.
        self.trial = trial
        self.monitor = monitor
        self.fold = fold
        self.stride = stride

    def on_epoch_end(self, net, **kwargs: Any) -> None:
        history = net.history
        if not history:
            return
        epoch = len(history) - 1
        if self.monitor not in history[-1]:
            # The classifier may train without its inner validation split (e.g. too few
            # groups per class to hold any out; it warns then): nothing to report, so this
            # fit is not pruned rather than failing the whole trial with a KeyError.
            return
        value = float(history[-1, self.monitor])
        if self.monitor.endswith("loss"):
            value = -value
        self.trial.report(value, self.fold * self.stride + epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"Trial was pruned at fold {self.fold}, epoch {epoch}.")


def _search_estimator_has(attr: str):
    def check(self) -> bool:
        if hasattr(self, "best_estimator_"):
            getattr(self.best_estimator_, attr)
            return True
        getattr(self.estimator, attr)
        return True

    return check


@contextlib.contextmanager
def _optuna_verbosity(level: int):
    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(level)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(previous)


def _epoch_stride(estimator, space) -> int:
    """Steps reserved per CV fold: the most epochs any trial of this space can train.

    One stride for all trials, also when ``max_epochs`` is searched, so that a
    step always means the same fold and epoch across the trials compared.
    """
    key = _param_key(estimator, "max_epochs")
    if key is None:
        return 1000
    dist = space.get(key)
    if isinstance(dist, CategoricalDistribution):
        return int(max(dist.choices))
    if isinstance(dist, IntDistribution | FloatDistribution):
        return int(dist.high)
    return int(estimator.get_params()[key])


def _sampler_seed(random_state, n_existing: int) -> int | None:
    """Seed of the default sampler for a study that already holds ``n_existing`` trials.

    A fresh study is seeded with ``random_state`` itself, so a new search is
    reproducible. A resumed one mixes in the number of trials already there:
    rebuilding ``TPESampler(seed=random_state)`` would draw the same random
    start-up parameters again and repeat the earlier trials.
    """
    if random_state is None:
        return None
    if not isinstance(random_state, Integral):
        random_state = check_random_state(random_state).randint(np.iinfo(np.int32).max)
    if n_existing == 0:
        return int(random_state)
    return int(np.random.SeedSequence([int(random_state), n_existing]).generate_state(1)[0])


#: How the study records ``scoring=None``: a concrete value, so that resuming a study run with
#: ``"balanced_accuracy"`` with ``scoring=None`` (or the other way round) is refused.
ESTIMATOR_SCORE = "the estimator's score method"


def _describe_scoring(scoring) -> str | None:
    """A description of ``scoring`` that is the same in another process, or None if unknown."""
    if scoring is None:
        return ESTIMATOR_SCORE
    if isinstance(scoring, str):
        return scoring
    name = getattr(scoring, "__qualname__", None)
    text = f"{getattr(scoring, '__module__', '')}.{name}" if name else repr(scoring)
    # A repr with a memory address differs between processes: not comparable.
    return None if " at 0x" in text else text


def _object_array(values) -> np.ndarray:
    """1-D object array, also of tuples (``np.array`` would make them a 2-D array)."""
    out = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):
        out[i] = value
    return out


def _param_key(estimator, name: str) -> str | None:
    """Name of the final step's parameter ``name`` (``"clf__name"`` in a Pipeline)."""
    params = estimator.get_params(deep=True)
    key = f"{estimator.steps[-1][0]}__{name}" if isinstance(estimator, Pipeline) else name
    return key if key in params else None


class OptunaLesionSearchCV(MetaEstimatorMixin, BaseEstimator):
    """Cross-validated hyperparameter search driven by an Optuna study.

    Each Optuna trial samples hyperparameters, fits a clone of ``estimator`` on
    every training part of ``cv`` and scores it on the matching test part; the
    trial's value is the mean score. While a skorch-based classifier trains,
    its per-epoch validation score (``pruning_monitor``, measured on the
    classifier's own inner validation split, never on the CV test part) is
    reported to the study's pruner, which stops unpromising trials early.
    The best hyperparameters are then refit on all data.

    Unlike ``optuna_integration.OptunaSearchCV``, the search is a classifier
    for scikit-learn (``is_classifier(search)`` is True when ``estimator`` is
    one), so ``cross_val_score(search, X, y, cv=5)`` stratifies its folds.

    Parameters
    ----------
    estimator : estimator object
        A :class:`~skinestimator.SkinLesionClassifier`, a
        :class:`~sklearn.pipeline.Pipeline` ending in one, or any scikit-learn
        classifier (pruning then needs a ``callbacks`` parameter).
    param_distributions : dict, default=None
        Parameter name to an Optuna distribution (or a list or 1-D array of
        choices, e.g. ``np.logspace(-2, 2, 5)``; NumPy scalars become Python
        ones). With ``default_space=True`` the entries override or extend
        :func:`default_search_space`; an entry set to ``None`` removes a default
        one. Pipeline parameters use ``step__name``. Choices may be any objects
        (e.g. ``"image_size": [(96, 128), (192, 256)]``): those Optuna cannot
        store are suggested by their ``repr`` and mapped back.
    default_space : bool, default=True
        Whether to start from :func:`default_search_space` (learning rate,
        weight decay, batch size, augmentation, fine-tuned depth, image size).
    n_trials : int or None, default=10
        Number of trials to run in this call to ``fit``; a resumed study keeps
        its earlier trials and adds these. ``None`` runs until ``timeout``.
    timeout : float or None, default=None
        Stop starting new trials after this many seconds.
    cv : int, cross-validation generator or iterable, default=3
        Cross-validation inside each trial. An integer gives
        ``StratifiedKFold``, or ``StratifiedGroupKFold`` when ``groups`` are
        passed to ``fit``.
    scoring : str, callable or None, default="balanced_accuracy"
        Scorer for the CV test parts (higher is better); also used by ``score``.
        ``None`` uses the estimator's ``score`` method. A single metric only:
        a list, tuple or dict of metrics (multi-metric scoring) raises
        ``ValueError``.
    error_score : "raise" or float, default=np.nan
        Score of a trial whose fit or scoring raises an error, as in
        :class:`~sklearn.model_selection.GridSearchCV`. With ``np.nan`` the
        trial is marked ``FAIL`` in the study; with a number it completes with
        that score for the failing fold and the folds after it (which are not
        fitted). Either way a :class:`~sklearn.exceptions.FitFailedWarning`
        names the parameters and the error (also kept as the trial's ``error``
        user attribute) and the search goes on; if no trial completes, ``fit``
        raises ``ValueError``. ``"raise"`` re-raises the error at once.
    refit : bool or callable, default=True
        Refit the best hyperparameters on all of ``X`` as ``best_estimator_``.
        As in :class:`~sklearn.model_selection.GridSearchCV`, a callable picks
        the hyperparameters instead (e.g. the simplest model within one
        standard error of the best): it gets ``cv_results_`` and returns the
        index of a row; ``best_index_``, ``best_params_``, ``best_trial_`` and
        ``best_estimator_`` are then that row's, and ``best_score_`` is not
        set. Any other value (e.g. a metric name, which ``GridSearchCV`` uses
        with multi-metric scoring) raises ``ValueError``.
    storage : None, str or optuna.storages.BaseStorage, default=None
        Where the study lives. ``None`` keeps it in memory. A database URL such
        as ``"sqlite:///search.db"`` or ``"postgresql://user@host/db"`` (the
        ``postgres`` extra installs its driver) persists it: a later ``fit``
        (in any process, on any machine that reaches the database) with the
        same ``study_name`` resumes it, and ``fit`` calls running at the same
        time in several processes or machines share it, each running its own
        ``n_trials``. ``"journal:PATH"`` (or a path ending in ``.log`` or
        ``.journal``) is Optuna's journal file, for a disk shared by the
        machines of a cluster without a database. Any other plain path is a
        SQLite file. The study records the number of CV splits, the
        scoring and the number of samples; resuming it with other values raises
        ``ValueError``, because their scores would not be comparable.
    study_name : str or None, default=None
        Name of the study in ``storage``; ``None`` means
        ``"skinestimator-search"`` for persistent storage.
    load_if_exists : bool, default=True
        Join the study if ``storage`` already holds one named ``study_name``
        (to resume it, or to share it with workers running now); False raises
        ``ValueError`` instead, so that a new search cannot mix its trials
        into an old one by accident.
    heartbeat_interval : int or None, default=60
        With a database ``storage``, each running trial records every this
        many seconds that its worker is alive; when a worker dies (killed,
        out of memory, its machine lost), the next trial any worker starts
        after twice this time marks the dead worker's trial ``FAIL`` and
        queues its parameters once more (Optuna's heartbeat and
        ``RetryFailedTrialCallback``). None switches it off. Journal files
        have no heartbeat: a dead worker's trial stays ``RUNNING`` there
        (it does not hold the others up).
    sampler : optuna.samplers.BaseSampler or None, default=None
        ``None`` uses a ``TPESampler`` seeded from ``random_state`` and the
        number of trials already in the study (see ``random_state``).
    pruner : optuna.pruners.BasePruner or None, default=None
        ``None`` uses ``MedianPruner(n_startup_trials=5, n_warmup_steps=1)``;
        pass ``optuna.pruners.NopPruner()`` to never prune.
    pruning_monitor : str, default="valid_bacc"
        Column of the net's history reported each epoch. Names ending in
        ``loss`` are negated because the study maximizes. An epoch whose
        history lacks it (a fit that fell back to training without its
        validation split) is not reported, so that fit is not pruned.
    n_jobs : int, default=1
        Number of trials run at the same time (threads of one process; use
        several processes or machines on one ``storage`` to scale further).
        Threads share torch's global random number generator, so with
        ``n_jobs > 1`` the trials' fits interleave their draws (weight
        initialisation, shuffling, augmentation) and the same parameters
        score differently from run to run: trial scores are not
        reproducible. Use ``n_jobs=1`` for reproducible scores, or run
        several processes on one ``storage`` for parallel trials that each
        seed their own generator.
    callbacks : list of callables or None, default=None
        Each called as ``callback(study, trial)`` after every trial this
        ``fit`` runs, as by ``optuna.study.Study.optimize`` (e.g. to log
        progress or to stop the study with ``MaxTrialsCallback``).
    verbose : int, default=0
        ``0`` is silent, ``1`` shows a progress bar over trials, ``2`` also
        logs each finished trial.
    random_state : int, RandomState instance or None, default=None
        Seeds the default sampler (a ``RandomState`` gives it one seed drawn
        from it, as scikit-learn's estimators do): with ``seed=random_state`` for a new study,
        so a fresh search (``n_jobs=1``) samples the same parameters each time;
        when resuming a study that holds ``n`` trials, with a seed derived from
        ``(random_state, n)``, so the resumed run draws new parameters instead
        of repeating the first run's (and is reproducible given ``n``). Trials
        run in parallel (``n_jobs > 1``, or several workers on one storage)
        finish in no fixed order, so their parameters are not reproducible;
        and workers that start at the same moment see the same ``n``: give
        each concurrent worker its own ``random_state`` (e.g. its index) or
        ``None``, or they sample the same start-up parameters.

    Attributes
    ----------
    study_ : optuna.study.Study
        The study, with the trials of this and of earlier runs. It is set
        before the first trial starts, so when ``fit`` is interrupted (e.g.
        ``KeyboardInterrupt``, Ctrl-C) it still holds the trials finished so
        far, also for an in-memory study; the other attributes are then not
        (re)set.
    best_trial_ : optuna.trial.FrozenTrial
        The best completed trial (with a callable ``refit``, the trial it
        chose).
    best_params_ : dict
        Hyperparameters of the best trial, ready for ``set_params``: the
        original choice objects (e.g. ``image_size`` tuples; int
        ``image_size`` choices become ``(size, size)``).
    best_score_ : float
        Mean cross-validated score of the best trial. Not set with a
        callable ``refit``.
    best_index_ : int
        Row of the best trial in ``cv_results_`` (with a callable ``refit``,
        the row it returned).
    best_estimator_ : estimator
        ``estimator`` refit on all data with ``best_params_`` (``refit=True``
        or a callable).
    cv_results_ : dict of numpy arrays
        One row per finished trial of the whole study (also those of earlier
        runs and of other workers sharing it): ``number``, ``state``
        (``"COMPLETE"``, ``"PRUNED"``, ``"FAIL"``), ``worker`` (host and
        process that ran it), ``from_this_fit`` (True for the trials this
        ``fit`` ran, False for those from elsewhere),
        ``params``, ``param_<name>`` (the values handed to ``set_params``, as
        in ``params``), ``split<k>_test_score``,
        ``mean_test_score``, ``std_test_score``, ``rank_test_score``,
        ``mean_fit_time``, ``std_fit_time``, ``mean_score_time`` and
        ``duration``. Load it with ``pandas.DataFrame(search.cv_results_)``.
    search_space_ : dict
        The distributions sampled from.
    scorer_ : callable
        The scorer used.
    n_splits_ : int
        Number of CV folds in this run.
    n_trials_ : int
        Number of finished trials in the study.
    refit_time_ : float
        Seconds spent refitting the best estimator.
    classes_ : ndarray
        Class labels of ``best_estimator_``.

    See Also
    --------
    skinestimator.model_selection.default_search_space : The default space.
    optuna_integration.OptunaSearchCV : Optuna's generic search, pruning only
        through ``partial_fit``.

    Examples
    --------
    >>> from optuna.distributions import FloatDistribution
    >>> from sklearn.base import is_classifier
    >>> from skinestimator import SkinLesionClassifier, make_synthetic_lesions
    >>> from skinestimator.model_selection import OptunaLesionSearchCV
    >>> X, y = make_synthetic_lesions(n_samples=60, image_size=(32, 32), n_classes=3,
    ...                               random_state=0)
    >>> clf = SkinLesionClassifier(backbone="seed_cnn", image_size=(32, 32), max_epochs=2,
    ...                            random_state=0)
    >>> search = OptunaLesionSearchCV(
    ...     clf, {"lr": FloatDistribution(1e-3, 1e-2, log=True)}, default_space=False,
    ...     n_trials=2, cv=2, random_state=0).fit(X, y)
    >>> is_classifier(search)
    True
    >>> sorted(search.best_params_)
    ['lr']
    >>> len(search.cv_results_["mean_test_score"])
    2
    """

    def __init__(
        self,
        estimator,
        param_distributions: Mapping[str, Any] | None = None,
        *,
        default_space: bool = True,
        n_trials: int | None = 10,
        timeout: float | None = None,
        cv=3,
        scoring="balanced_accuracy",
        error_score: str | float = np.nan,
        refit: bool = True,
        storage: str | BaseStorage | None = None,
        study_name: str | None = None,
        load_if_exists: bool = True,
        heartbeat_interval: int | None = 60,
        sampler: optuna.samplers.BaseSampler | None = None,
        pruner: optuna.pruners.BasePruner | None = None,
        pruning_monitor: str = "valid_bacc",
        n_jobs: int = 1,
        callbacks: list | None = None,
        verbose: int = 0,
        random_state: int | np.random.RandomState | None = None,
    ) -> None:
        self.estimator = estimator
        self.param_distributions = param_distributions
        self.default_space = default_space
        self.n_trials = n_trials
        self.timeout = timeout
        self.cv = cv
        self.scoring = scoring
        self.error_score = error_score
        self.refit = refit
        self.storage = storage
        self.study_name = study_name
        self.load_if_exists = load_if_exists
        self.heartbeat_interval = heartbeat_interval
        self.sampler = sampler
        self.pruner = pruner
        self.pruning_monitor = pruning_monitor
        self.n_jobs = n_jobs
        self.callbacks = callbacks
        self.verbose = verbose
        self.random_state = random_state

    def __sklearn_tags__(self):
        # Same delegation as scikit-learn's BaseSearchCV: the search is whatever
        # kind of estimator it tunes, so CV around it stratifies for classifiers.
        tags = super().__sklearn_tags__()
        sub = get_tags(self.estimator)
        tags.estimator_type = sub.estimator_type
        tags.classifier_tags = deepcopy(sub.classifier_tags)
        tags.regressor_tags = deepcopy(sub.regressor_tags)
        tags.input_tags = deepcopy(sub.input_tags)
        tags.target_tags.required = True
        return tags

    # ------------------------------------------------------------------ checks
    def _check_params(self) -> None:
        if self.n_trials is None and self.timeout is None:
            raise ValueError("Set n_trials or timeout, or the search never ends.")
        if self.n_trials is not None and (
            not isinstance(self.n_trials, Integral) or self.n_trials < 1
        ):
            raise ValueError(f"n_trials must be a positive integer or None, got {self.n_trials!r}.")
        if self.timeout is not None and (not isinstance(self.timeout, Real) or self.timeout <= 0):
            raise ValueError(f"timeout must be a positive number or None, got {self.timeout!r}.")
        if not isinstance(self.n_jobs, Integral) or self.n_jobs == 0 or self.n_jobs < -1:
            raise ValueError(f"n_jobs must be a positive integer or -1, got {self.n_jobs!r}.")
        if not isinstance(self.verbose, Integral) or self.verbose < 0:
            raise ValueError(f"verbose must be a non-negative integer, got {self.verbose!r}.")
        if not (
            (isinstance(self.error_score, str) and self.error_score == "raise")
            or (isinstance(self.error_score, Real) and not isinstance(self.error_score, bool))
        ):
            raise ValueError(
                f"error_score must be 'raise' or a number (e.g. np.nan), got {self.error_score!r}."
            )
        if not (self.scoring is None or isinstance(self.scoring, str) or callable(self.scoring)):
            # Checked here: check_scoring accepts a list or dict (multi-metric) and every
            # trial would be fitted before its dict of scores failed to become one value.
            raise ValueError(
                "scoring must be a single metric: a scorer name such as 'balanced_accuracy', "
                "a callable scorer(estimator, X, y) or None; multi-metric scoring (a list, "
                f"tuple or dict) is not supported, got {self.scoring!r}."
            )
        if not (isinstance(self.refit, bool | np.bool_) or callable(self.refit)):
            # GridSearchCV also takes a metric name, but only to pick one of several metrics.
            raise ValueError(
                "refit must be True, False or a callable that takes cv_results_ and returns the "
                "index of the chosen row (this search scores a single metric, so a metric name "
                f"has nothing to choose from), got {self.refit!r}."
            )
        if not isinstance(self.pruning_monitor, str):
            raise TypeError(f"pruning_monitor must be a str, got {self.pruning_monitor!r}.")
        if self.storage is not None and not isinstance(self.storage, str | BaseStorage):
            raise TypeError(
                "storage must be None, a database URL, a SQLite file path, 'journal:PATH' or "
                f"an optuna storage, got {type(self.storage).__name__}."
            )
        if self.heartbeat_interval is not None and (
            not isinstance(self.heartbeat_interval, Integral) or self.heartbeat_interval < 1
        ):
            raise ValueError("heartbeat_interval must be a positive integer (seconds) or None, "
                             f"got {self.heartbeat_interval!r}.")
        if self.callbacks is not None and not all(callable(c) for c in self.callbacks):
            raise TypeError("callbacks must be a list of callables callback(study, trial), got "
                            f"{self.callbacks!r}.")

    def _create_study(self) -> optuna.study.Study:
        sampler = self.sampler
        if sampler is None:
            # Replaced below by one seeded from random_state and the number of trials already
            # in the study, which only the loaded study knows.
            sampler = optuna.samplers.TPESampler()
        pruner = self.pruner
        if pruner is None:
            pruner = optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)
        storage = open_storage(self.storage, heartbeat_interval=self.heartbeat_interval)
        study_name = self.study_name
        if study_name is None and storage is not None:
            study_name = DEFAULT_STUDY_NAME
        try:
            study = optuna.create_study(
                storage=storage,
                study_name=study_name,
                sampler=sampler,
                pruner=pruner,
                direction="maximize",
                load_if_exists=bool(self.load_if_exists),
            )
        except optuna.exceptions.DuplicatedStudyError:
            raise ValueError(
                f"storage already holds a study named {study_name!r} and load_if_exists=False; "
                "pass another study_name, or load_if_exists=True to join it"
            ) from None
        if study.direction != optuna.study.StudyDirection.MAXIMIZE:
            raise ValueError(
                f"Study {study.study_name!r} in this storage minimizes; the search maximizes "
                "its score. Use another study_name."
            )
        if self.sampler is None:
            n_existing = len(study.get_trials(deepcopy=False))
            study.sampler = optuna.samplers.TPESampler(
                seed=_sampler_seed(self.random_state, n_existing)
            )
        return study

    def _check_study_settings(self, study: optuna.study.Study, settings: dict) -> None:
        """Record ``settings`` in a new study; refuse a resumed one run with other settings."""
        stored = study.user_attrs.get(SETTINGS_ATTR)
        if stored is not None and study.get_trials(deepcopy=False):
            differ = [
                f"{key}={stored[key]!r} there, {value!r} here"
                for key, value in settings.items()
                if key in stored
                and stored[key] is not None
                and value is not None
                and stored[key] != value
            ]
            if differ:
                raise ValueError(
                    f"Study {study.study_name!r} in this storage was run with other settings "
                    f"({'; '.join(differ)}); its trials' scores are not comparable with this "
                    "search's. To start a new study pass another study_name (or storage), or "
                    f"delete it with optuna.delete_study(study_name={study.study_name!r}, "
                    "storage=...); to resume it, use its settings."
                )
            if all(key in stored for key in settings):
                return
            settings = {**settings, **{k: v for k, v in stored.items() if v is not None}}
        study.set_user_attr(SETTINGS_ATTR, settings)

    def _pruning_key(self) -> str | None:
        """The estimator's ``callbacks`` parameter, or None when pruning is off."""
        if isinstance(self.pruner, optuna.pruners.NopPruner):
            return None
        key = _param_key(self.estimator, "callbacks")
        if key is None:
            return None
        fraction_key = _param_key(self.estimator, "validation_fraction")
        if (
            self.pruning_monitor.startswith("valid")
            and fraction_key is not None
            and not self.estimator.get_params(deep=True)[fraction_key]
        ):
            raise ValueError(
                f"Pruning on {self.pruning_monitor!r} needs the classifier's inner validation "
                f"split, but {fraction_key} is falsy. Set it (e.g. 0.2), pass "
                "pruner=optuna.pruners.NopPruner(), or a training monitor such as 'train_loss'."
            )
        return key

    # --------------------------------------------------------------------- fit
    def fit(self, X, y, groups=None) -> OptunaLesionSearchCV:
        """Run ``n_trials`` trials (or until ``timeout``) and refit the best.

        Parameters
        ----------
        X : array-like of images or of image paths
            Anything ``estimator.fit`` accepts.
        y : array-like of shape (n_samples,)
            Class labels.
        groups : array-like of shape (n_samples,), default=None
            Group labels (e.g. ``lesion_id``): no group is split between the
            training and test part of a fold, nor between the classifier's
            training and inner validation part (the per-epoch score that
            pruning and early stopping use). The latter holds for a
            ``SkinLesionClassifier`` and for a Pipeline ending in one, whose
            last step gets ``groups`` (see :func:`fit_grouped`).

        Returns
        -------
        self : OptunaLesionSearchCV
            Fitted search.
        """
        self._check_params()
        X, y, groups = indexable(X, y, groups)
        space = merge_search_space(self.estimator, self.param_distributions, self.default_space)
        scorer = check_scoring(self.estimator, scoring=self.scoring)
        cv = check_group_cv(self.cv, y, groups, classifier=is_classifier(self.estimator))
        splits = list(cv.split(X, y, groups))
        check_groups_disjoint(splits, groups)
        pruning_key = self._pruning_key()
        stride = _epoch_stride(self.estimator, space)
        worker = f"{socket.gethostname()}:{os.getpid()}"
        settings = {
            "n_splits": len(splits),
            "scoring": _describe_scoring(self.scoring),
            "n_samples": len(y),
        }
        failures: list[str] = []  # errors of this fit's failed trials
        ran_here: set[int] = set()  # numbers of the trials this fit ran

        def objective(trial: optuna.trial.Trial) -> float:
            ran_here.add(trial.number)
            params = to_estimator_params(suggest_params(trial, space))
            trial.set_user_attr("worker", worker)
            scores, fit_times, score_times = [], [], []
            for fold, (train, test) in enumerate(splits):
                try:
                    est = clone(self.estimator).set_params(**params)
                    if pruning_key is not None:
                        existing = list(est.get_params()[pruning_key] or [])
                        cb = _FoldPruningCallback(
                            trial, self.pruning_monitor, fold=fold, stride=stride
                        )
                        est.set_params(**{pruning_key: [*existing, ("optuna_pruning", cb)]})
                    start = time.perf_counter()
                    fit_grouped(
                        est,
                        _safe_indexing(X, train),
                        _safe_indexing(y, train),
                        None if groups is None else _safe_indexing(groups, train),
                    )
                    fit_time = time.perf_counter() - start
                    start = time.perf_counter()
                    score = float(scorer(est, _safe_indexing(X, test), _safe_indexing(y, test)))
                    score_time = time.perf_counter() - start
                except optuna.TrialPruned:
                    raise
                except Exception as exc:
                    if isinstance(self.error_score, str):  # "raise"
                        raise
                    return self._failed_trial(
                        trial, fold, params, exc, scores, len(splits), failures
                    )
                fit_times.append(fit_time)
                scores.append(score)
                score_times.append(score_time)
                # Stored per fold so that a resumed study still has full rows.
                trial.set_user_attr("split_test_scores", scores)
                trial.set_user_attr("fit_times", fit_times)
                trial.set_user_attr("score_times", score_times)
            return float(np.mean(scores))

        if self.verbose >= 2:
            level = optuna.logging.INFO
        elif self.verbose == 1:
            level = optuna.logging.WARNING
        else:  # silent; failed trials still give a FitFailedWarning
            level = optuna.logging.ERROR
        with _optuna_verbosity(level):
            study = self._create_study()
            self._check_study_settings(study, settings)
            # Set before the trials run: when fit is interrupted (Ctrl-C) the trials finished so
            # far stay reachable, also those of an in-memory study.
            self.study_ = study
            study.optimize(
                objective,
                n_trials=self.n_trials,
                timeout=self.timeout,
                n_jobs=self.n_jobs,
                callbacks=self.callbacks,
                show_progress_bar=self.verbose > 0,
                gc_after_trial=True,
            )

        self.search_space_ = space
        self.scorer_ = scorer
        self.n_splits_ = len(splits)
        self.cv_results_ = self._make_cv_results(study, space, ran_here)
        self.n_trials_ = len(self.cv_results_["number"])
        completed = [t for t in study.trials if t.state == TrialState.COMPLETE]
        if not completed and failures:
            distinct = list(dict.fromkeys(failures))
            raise ValueError(
                f"No trial completed: {len(failures)} trial(s) of this search failed to fit or "
                f"score ({len(distinct)} distinct error(s); see the trials' 'error' user "
                "attribute in search.study_):\n" + "\n".join(distinct[:5])
            )
        if not completed:
            raise RuntimeError(
                "No trial completed (all were pruned or failed); see search.study_.trials. "
                "Try more trials or a more patient pruner."
            )
        if callable(self.refit):
            # As GridSearchCV: the callable picks the row, and best_score_ is not set since the
            # row chosen need not be the best-scoring one.
            self.best_index_ = self._select_best_index(self.refit, self.cv_results_)
            number = self.cv_results_["number"][self.best_index_]
            self.best_trial_ = next(t for t in study.trials if t.number == number)
            self.__dict__.pop("best_score_", None)  # left by an earlier fit
        else:
            self.best_trial_ = study.best_trial
            self.best_score_ = float(self.best_trial_.value)
            self.best_index_ = int(
                np.flatnonzero(self.cv_results_["number"] == self.best_trial_.number)[0]
            )
        self.best_params_ = dict(self.cv_results_["params"][self.best_index_])
        if self.refit:
            start = time.perf_counter()
            self.best_estimator_ = clone(self.estimator).set_params(**self.best_params_)
            fit_grouped(self.best_estimator_, X, y, groups)
            self.refit_time_ = time.perf_counter() - start
        return self

    @staticmethod
    def _select_best_index(refit, results) -> int:
        """Row of ``results`` chosen by a callable ``refit``, checked as GridSearchCV does."""
        best_index = refit(results)
        if not isinstance(best_index, Integral):
            raise TypeError("best_index_ returned is not an integer")
        if best_index < 0 or best_index >= len(results["params"]):
            raise IndexError("best_index_ index out of range")
        return int(best_index)

    def _failed_trial(self, trial, fold, params, exc, scores, n_splits, failures) -> float:
        """Record a trial whose fit or scoring on ``fold`` raised; return its value.

        The failing fold and the (unfitted) folds after it score ``error_score``;
        ``np.nan`` makes Optuna mark the trial ``FAIL``.
        """
        error = f"{type(exc).__name__}: {exc}"
        failures.append(error)
        trial.set_user_attr("error", error)
        scores = [*scores, *[float(self.error_score)] * (n_splits - len(scores))]
        trial.set_user_attr("split_test_scores", scores)
        warnings.warn(
            f"Trial {trial.number} failed to fit or score on CV fold {fold} with parameters "
            f"{params}; its score is set to error_score={self.error_score!r} and the search "
            f"goes on. The error: {error}",
            FitFailedWarning,
            stacklevel=2,
        )
        return float(np.mean(scores))

    @staticmethod
    def _make_cv_results(study: optuna.study.Study, space=None,
                         ran_here=frozenset()) -> dict[str, np.ndarray]:
        finished = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
        trials = [t for t in study.trials if t.state in finished]
        n_splits = max((len(t.user_attrs.get("split_test_scores", [])) for t in trials), default=0)
        params = [to_estimator_params(decode_params(t.params, space or {})) for t in trials]
        results: dict[str, Any] = {
            "number": np.array([t.number for t in trials], dtype=int),
            "state": np.array([t.state.name for t in trials], dtype=object),
            "worker": np.array([t.user_attrs.get("worker", "") for t in trials], dtype=object),
            "from_this_fit": np.array([t.number in ran_here for t in trials], dtype=bool),
            "params": params,
        }
        names = sorted({name for p in params for name in p})
        for name in names:
            # The values handed to set_params, as in "params" (tuples stay tuples).
            results[f"param_{name}"] = _object_array([p.get(name, np.nan) for p in params])
        # Pruned trials have no test score: NaN, so they rank last.
        scores = np.full((len(trials), n_splits), np.nan)
        for i, t in enumerate(trials):
            if t.state == TrialState.COMPLETE:
                split = t.user_attrs.get("split_test_scores", [])
                scores[i, : len(split)] = split
        for k in range(n_splits):
            results[f"split{k}_test_score"] = scores[:, k]
        values = np.array(
            [t.value if t.state == TrialState.COMPLETE else np.nan for t in trials], dtype=float
        )
        results["mean_test_score"] = values
        with warnings.catch_warnings():
            # All-NaN rows (pruned trials) warn in nanstd; NaN is the right answer.
            warnings.simplefilter("ignore", RuntimeWarning)
            std = np.nanstd(scores, axis=1) if n_splits else np.full(len(trials), np.nan)
        results["std_test_score"] = std
        # As GridSearchCV: tied scores share the best rank among them ("min"); NaN scores
        # (pruned or failed trials) rank last, tied with each other.
        if np.isnan(values).all():
            rank = np.ones(len(trials), dtype=np.int32)
        else:
            filled = np.where(np.isnan(values), np.nanmin(values) - 1, values)
            rank = rankdata(-filled, method="min").astype(np.int32, copy=False)
        results["rank_test_score"] = rank

        def stat(key: str, fn) -> np.ndarray:
            return np.array(
                [fn(t.user_attrs[key]) if t.user_attrs.get(key) else np.nan for t in trials]
            )

        results["mean_fit_time"] = stat("fit_times", np.mean)
        results["std_fit_time"] = stat("fit_times", np.std)
        results["mean_score_time"] = stat("score_times", np.mean)
        results["duration"] = np.array(
            [t.duration.total_seconds() if t.duration is not None else np.nan for t in trials]
        )
        return results

    # --------------------------------------------------------------- delegation
    def _check_refit(self, attr: str) -> None:
        check_is_fitted(self, "study_")
        if not self.refit:
            raise AttributeError(
                f"{attr} is available only with refit=True; refit by hand with best_params_."
            )

    @property
    def classes_(self) -> np.ndarray:
        """Class labels of the refit best estimator."""
        self._check_refit("classes_")
        return self.best_estimator_.classes_

    @property
    def n_features_in_(self) -> int:
        """Number of features seen by the best estimator (2-D array input only)."""
        try:
            self._check_refit("n_features_in_")
        except Exception as exc:
            raise AttributeError(str(exc)) from exc
        return self.best_estimator_.n_features_in_

    @available_if(_search_estimator_has("predict"))
    def predict(self, X) -> np.ndarray:
        """Predict class labels with ``best_estimator_``.

        Parameters
        ----------
        X : array-like of images or image paths
            Input accepted by the estimator.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            Predicted labels.
        """
        self._check_refit("predict")
        return self.best_estimator_.predict(X)

    @available_if(_search_estimator_has("predict_proba"))
    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities from ``best_estimator_``.

        Parameters
        ----------
        X : array-like of images or image paths
            Input accepted by the estimator.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Probabilities in the order of ``classes_``.
        """
        self._check_refit("predict_proba")
        return self.best_estimator_.predict_proba(X)

    def score(self, X, y) -> float:
        """Score ``best_estimator_`` on ``(X, y)`` with ``scoring``.

        Parameters
        ----------
        X : array-like of images or image paths
            Input accepted by the estimator.
        y : array-like of shape (n_samples,)
            True labels.

        Returns
        -------
        score : float
            The scorer's value (balanced accuracy by default).
        """
        self._check_refit("score")
        return float(self.scorer_(self.best_estimator_, X, y))
