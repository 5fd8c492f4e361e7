"""Plots following scikit-learn's ``Display`` conventions.

Each display stores the computed values, draws them with ``plot(ax=...)`` and
is built with ``from_estimator`` or ``from_predictions``; after ``plot`` it has
``ax_`` and ``figure_``. The normalized confusion matrix is scikit-learn's own
:class:`~sklearn.metrics.ConfusionMatrixDisplay` (``normalize="true"``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.ticker import MaxNLocator
from sklearn.metrics import auc, roc_curve

from ._metrics import _check_n_bins, _check_proba, _ece_from_curve, reliability_curve

__all__ = ["OneVsRestRocDisplay", "ReliabilityDisplay", "TrainingCurvesDisplay"]


def _get_ax(ax):
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots()
    return ax, ax.figure


def _title(name, what: str) -> str:
    return f"{name}: {what}" if name else what[0].upper() + what[1:]


def _final_step(estimator):
    steps = getattr(estimator, "steps", None)
    return steps[-1][1] if steps else estimator


def _refitted_model(estimator):
    """The model a fitted search predicts with (its ``best_estimator_``), else ``estimator``.

    The ROC and reliability displays need no unwrapping (a search has ``predict_proba``), but
    the training history lives on the refitted model only.
    """
    # A search refitted with refit=False keeps a best_estimator_ from an earlier fit, stale.
    if getattr(estimator, "refit", True) is False:
        return estimator
    return getattr(estimator, "best_estimator_", estimator)


class OneVsRestRocDisplay:
    """One-vs-rest ROC curves, one per class, with their AUC.

    Parameters
    ----------
    fpr : list of ndarray
        False positive rates, one array per class.
    tpr : list of ndarray
        True positive rates, one array per class.
    roc_auc : ndarray of shape (n_classes,)
        Area under each curve (NaN for a class absent from ``y_true``).
    class_names : list of str
        Name of each class.
    estimator_name : str, default=None
        Shown in the title.

    Attributes
    ----------
    lines_ : list of matplotlib.lines.Line2D
        One curve per class.
    ax_ : matplotlib.axes.Axes
        Axes holding the curves.
    figure_ : matplotlib.figure.Figure
        Figure holding the axes.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.linear_model import LogisticRegression
    >>> from skinestimator.reports import OneVsRestRocDisplay
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = LogisticRegression(max_iter=500).fit(X, y)
    >>> display = OneVsRestRocDisplay.from_estimator(clf, X, y)
    >>> len(display.lines_)
    3
    """

    def __init__(self, *, fpr, tpr, roc_auc, class_names, estimator_name=None):
        self.fpr = fpr
        self.tpr = tpr
        self.roc_auc = roc_auc
        self.class_names = class_names
        self.estimator_name = estimator_name

    def plot(self, ax=None, *, name=None, plot_chance_level: bool = True):
        """Draw the curves.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, default=None
            Axes to draw on; a new figure when ``None``.
        name : str, default=None
            Title; default ``estimator_name``.
        plot_chance_level : bool, default=True
            Draw the diagonal of a random classifier.

        Returns
        -------
        display : OneVsRestRocDisplay
            ``self``, with ``ax_``, ``figure_`` and ``lines_``.
        """
        ax, fig = _get_ax(ax)
        self.lines_ = []
        for fpr, tpr, score, label in zip(
            self.fpr, self.tpr, self.roc_auc, self.class_names, strict=True
        ):
            (line,) = ax.plot(fpr, tpr, label=f"{label} (AUC = {score:.2f})")
            self.lines_.append(line)
        if plot_chance_level:
            ax.plot([0, 1], [0, 1], linestyle="--", color="0.6", label="chance")
        ax.set(
            xlabel="False positive rate",
            ylabel="True positive rate",
            xlim=(-0.01, 1.01),
            ylim=(-0.01, 1.01),
            aspect="equal",
        )
        macro = np.nanmean(self.roc_auc) if np.isfinite(self.roc_auc).any() else np.nan
        title = name or self.estimator_name
        ax.set_title(_title(title, f"one-vs-rest ROC (macro AUC {macro:.3f})"))
        ax.legend(loc="lower right", fontsize="small")
        self.ax_, self.figure_ = ax, fig
        return self

    @classmethod
    def from_predictions(cls, y_true, y_proba, *, classes=None, ax=None, name=None):
        """Build and plot from true labels and predicted probabilities.

        Parameters
        ----------
        y_true : array-like of shape (n_samples,)
            True labels.
        y_proba : array-like of shape (n_samples, n_classes)
            Predicted probabilities, columns in the order of ``classes``; checked as by
            :func:`classification_metrics` (values in [0, 1], rows summing to 1).
        classes : array-like of shape (n_classes,), default=None
            Column labels; default ``np.unique(y_true)``.
        ax : matplotlib.axes.Axes, default=None
            Axes to draw on.
        name : str, default=None
            Title.

        Returns
        -------
        display : OneVsRestRocDisplay
            The plotted display.
        """
        y_true, y_proba, classes = _check_proba(y_true, y_proba, classes)
        fprs, tprs, aucs = [], [], []
        for i, c in enumerate(classes):
            positive = y_true == c
            if 0 < positive.sum() < len(y_true):
                fpr, tpr, _ = roc_curve(positive, y_proba[:, i])
                aucs.append(auc(fpr, tpr))
            else:
                fpr, tpr = np.array([np.nan]), np.array([np.nan])
                aucs.append(np.nan)
            fprs.append(fpr)
            tprs.append(tpr)
        display = cls(
            fpr=fprs,
            tpr=tprs,
            roc_auc=np.asarray(aucs),
            class_names=[str(c) for c in classes],
            estimator_name=name,
        )
        return display.plot(ax=ax, name=name)

    @classmethod
    def from_estimator(cls, estimator, X, y, *, ax=None, name=None):
        """Build and plot from a fitted classifier with ``predict_proba``.

        Parameters
        ----------
        estimator : fitted classifier
            Must have ``predict_proba`` and ``classes_``.
        X : array-like
            Input to ``estimator.predict_proba``.
        y : array-like of shape (n_samples,)
            True labels.
        ax : matplotlib.axes.Axes, default=None
            Axes to draw on.
        name : str, default=None
            Title; default the estimator's class name.

        Returns
        -------
        display : OneVsRestRocDisplay
            The plotted display.
        """
        name = name or type(_final_step(estimator)).__name__
        return cls.from_predictions(
            y, estimator.predict_proba(X), classes=estimator.classes_, ax=ax, name=name
        )


class ReliabilityDisplay:
    """Reliability (calibration) diagram of the top-label confidence.

    Bars show the accuracy in each confidence bin, dots the bin's mean
    confidence; a calibrated classifier's bars reach the diagonal. Works for
    any number of classes (scikit-learn's ``CalibrationDisplay`` is binary).

    Parameters
    ----------
    confidence : ndarray of shape (n_bins,)
        Mean confidence per bin (NaN when empty).
    accuracy : ndarray of shape (n_bins,)
        Accuracy per bin (NaN when empty).
    counts : ndarray of shape (n_bins,)
        Predictions per bin.
    bin_edges : ndarray of shape (n_bins + 1,)
        Bin edges.
    ece : float
        Expected calibration error.
    estimator_name : str, default=None
        Shown in the title.

    Attributes
    ----------
    bars_ : matplotlib.container.BarContainer
        Accuracy bars.
    ax_ : matplotlib.axes.Axes
        Axes holding the diagram.
    figure_ : matplotlib.figure.Figure
        Figure holding the axes.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from skinestimator.reports import ReliabilityDisplay
    >>> proba = np.array([[0.9, 0.1], [0.7, 0.3], [0.2, 0.8], [0.6, 0.4]])
    >>> display = ReliabilityDisplay.from_predictions(["a", "a", "b", "b"], proba, n_bins=5)
    >>> round(display.ece, 3)
    0.3
    """

    def __init__(self, *, confidence, accuracy, counts, bin_edges, ece, estimator_name=None):
        self.confidence = confidence
        self.accuracy = accuracy
        self.counts = counts
        self.bin_edges = bin_edges
        self.ece = ece
        self.estimator_name = estimator_name

    def plot(self, ax=None, *, name=None):
        """Draw the diagram.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, default=None
            Axes to draw on; a new figure when ``None``.
        name : str, default=None
            Title; default ``estimator_name``.

        Returns
        -------
        display : ReliabilityDisplay
            ``self``, with ``ax_``, ``figure_`` and ``bars_``.
        """
        ax, fig = _get_ax(ax)
        edges = np.asarray(self.bin_edges)
        widths = np.diff(edges)
        filled = np.asarray(self.counts) > 0
        self.bars_ = ax.bar(
            edges[:-1][filled],
            np.asarray(self.accuracy)[filled],
            width=widths[filled],
            align="edge",
            edgecolor="black",
            color="tab:blue",
            alpha=0.7,
            label="accuracy in bin",
        )
        ax.plot(
            np.asarray(self.confidence)[filled],
            np.asarray(self.accuracy)[filled],
            "o",
            color="tab:orange",
            label="mean confidence",
        )
        ax.plot([0, 1], [0, 1], linestyle="--", color="0.4", label="perfectly calibrated")
        ax.set(
            xlabel="Confidence (top predicted probability)",
            ylabel="Accuracy",
            xlim=(0, 1),
            ylim=(0, 1),
            aspect="equal",
        )
        title = name or self.estimator_name
        ax.set_title(_title(title, f"reliability (ECE {self.ece:.3f})"))
        ax.legend(loc="upper left", fontsize="small")
        self.ax_, self.figure_ = ax, fig
        return self

    @classmethod
    def from_predictions(cls, y_true, y_proba, *, classes=None, n_bins=10, ax=None, name=None):
        """Build and plot from true labels and predicted probabilities.

        Parameters
        ----------
        y_true : array-like of shape (n_samples,)
            True labels.
        y_proba : array-like of shape (n_samples, n_classes)
            Predicted probabilities, columns in the order of ``classes``; checked as by
            :func:`classification_metrics` (values in [0, 1], rows summing to 1).
        classes : array-like of shape (n_classes,), default=None
            Column labels; default ``np.unique(y_true)``.
        n_bins : int, default=10
            Number of equal-width confidence bins; a positive integer.
        ax : matplotlib.axes.Axes, default=None
            Axes to draw on.
        name : str, default=None
            Title.

        Returns
        -------
        display : ReliabilityDisplay
            The plotted display.
        """
        confidence, accuracy, counts, edges = reliability_curve(
            y_true, y_proba, classes=classes, n_bins=n_bins
        )
        ece = _ece_from_curve(confidence, accuracy, counts)
        display = cls(
            confidence=confidence,
            accuracy=accuracy,
            counts=counts,
            bin_edges=edges,
            ece=ece,
            estimator_name=name,
        )
        return display.plot(ax=ax, name=name)

    @classmethod
    def from_estimator(cls, estimator, X, y, *, n_bins=10, ax=None, name=None):
        """Build and plot from a fitted classifier with ``predict_proba``.

        Parameters
        ----------
        estimator : fitted classifier
            Must have ``predict_proba`` and ``classes_``.
        X : array-like
            Input to ``estimator.predict_proba``.
        y : array-like of shape (n_samples,)
            True labels.
        n_bins : int, default=10
            Number of equal-width confidence bins; a positive integer.
        ax : matplotlib.axes.Axes, default=None
            Axes to draw on.
        name : str, default=None
            Title; default the estimator's class name.

        Returns
        -------
        display : ReliabilityDisplay
            The plotted display.
        """
        n_bins = _check_n_bins(n_bins)  # before predicting, which may take a while
        name = name or type(_final_step(estimator)).__name__
        return cls.from_predictions(
            y,
            estimator.predict_proba(X),
            classes=estimator.classes_,
            n_bins=n_bins,
            ax=ax,
            name=name,
        )


class TrainingCurvesDisplay:
    """Loss and validation score per epoch, from one or several training runs.

    Losses go on the left axis (training solid, validation dashed), the
    validation score on a right twin axis (dotted); runs (e.g. CV folds) get
    one colour each.

    Parameters
    ----------
    histories : list of list of dict
        One history per run, each a list of per-epoch dicts with ``epoch`` and
        some of ``train_loss``, ``valid_loss`` and ``score_name``, as in a
        fitted ``SkinLesionClassifier.history_``.
    score_name : str, default="valid_bacc"
        History key of the validation score.
    run_names : list of str, default=None
        Legend name of each run; default ``"fold 0"``, ``"fold 1"``, ... for
        several runs.
    estimator_name : str, default=None
        Shown in the title.

    Attributes
    ----------
    ax_ : matplotlib.axes.Axes
        Loss axes.
    ax_score_ : matplotlib.axes.Axes
        Twin axes of the validation score.
    figure_ : matplotlib.figure.Figure
        Figure holding the axes.
    lines_ : dict of str to list of matplotlib.lines.Line2D
        Lines per history key.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from skinestimator.reports import TrainingCurvesDisplay
    >>> history = [{"epoch": 1, "train_loss": 1.0, "valid_loss": 1.1, "valid_bacc": 0.4},
    ...            {"epoch": 2, "train_loss": 0.6, "valid_loss": 0.8, "valid_bacc": 0.6}]
    >>> display = TrainingCurvesDisplay.from_history(history)
    >>> sorted(display.lines_)
    ['train_loss', 'valid_bacc', 'valid_loss']
    """

    def __init__(self, *, histories, score_name="valid_bacc", run_names=None, estimator_name=None):
        self.histories = histories
        self.score_name = score_name
        self.run_names = run_names
        self.estimator_name = estimator_name

    def plot(self, ax=None, *, name=None):
        """Draw the curves.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, default=None
            Axes for the losses; a new figure when ``None``. The score goes on
            ``ax.twinx()``.
        name : str, default=None
            Title; default ``estimator_name``.

        Returns
        -------
        display : TrainingCurvesDisplay
            ``self``, with ``ax_``, ``ax_score_``, ``figure_`` and ``lines_``.
        """
        ax, fig = _get_ax(ax)
        ax_score = ax.twinx()
        names = self.run_names
        if names is None:
            names = (
                [""]
                if len(self.histories) == 1
                else [f"fold {i}" for i in range(len(self.histories))]
            )
        styles = {
            "train_loss": (ax, "-"),
            "valid_loss": (ax, "--"),
            self.score_name: (ax_score, ":"),
        }
        self.lines_ = {key: [] for key in styles}
        for i, (history, run) in enumerate(zip(self.histories, names, strict=True)):
            color = f"C{i % 10}"
            epochs = [row.get("epoch", j + 1) for j, row in enumerate(history)]
            for key, (target, style) in styles.items():
                values = [row.get(key, np.nan) for row in history]
                if not np.isfinite(np.asarray(values, dtype=float)).any():
                    continue
                label = f"{run} {key}".strip()
                (line,) = target.plot(epochs, values, style, color=color, marker=".", label=label)
                self.lines_[key].append(line)
        self.lines_ = {key: lines for key, lines in self.lines_.items() if lines}
        ax.set(xlabel="Epoch", ylabel="Loss (solid: train, dashed: validation)")
        ax_score.set_ylabel(f"{self.score_name} (dotted)")
        ax_score.set_ylim(0, 1.02)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        handles, labels = ax.get_legend_handles_labels()
        score_handles, score_labels = ax_score.get_legend_handles_labels()
        # Below the axes: inside, the legend of several folds hides the curves.
        ax.legend(
            handles + score_handles,
            labels + score_labels,
            fontsize="x-small",
            loc="upper center",
            bbox_to_anchor=(0.5, -0.14),
            ncol=3,
        )
        title = name or self.estimator_name
        ax.set_title(_title(title, "training curves"))
        self.ax_, self.ax_score_, self.figure_ = ax, ax_score, fig
        return self

    @classmethod
    def from_history(cls, history, *, score_name="valid_bacc", run_names=None, ax=None, name=None):
        """Build and plot from one history or a list of histories.

        Parameters
        ----------
        history : list of dict or list of list of dict
            A ``history_`` (list of per-epoch dicts) or several of them.
        score_name : str, default="valid_bacc"
            History key of the validation score.
        run_names : list of str, default=None
            Legend name of each run.
        ax : matplotlib.axes.Axes, default=None
            Axes to draw on.
        name : str, default=None
            Title.

        Returns
        -------
        display : TrainingCurvesDisplay
            The plotted display.
        """
        history = list(history)
        if not history:
            raise ValueError("The history is empty: was the estimator fitted?")
        if isinstance(history[0], Mapping):
            histories = [history]
        elif all(isinstance(h, Sequence) for h in history):
            histories = [list(h) for h in history]
        else:
            raise TypeError("history must be a list of dicts or a list of such lists.")
        display = cls(
            histories=histories, score_name=score_name, run_names=run_names, estimator_name=name
        )
        return display.plot(ax=ax, name=name)

    @classmethod
    def from_estimator(cls, estimator, *, score_name="valid_bacc", ax=None, name=None):
        """Build and plot from a fitted estimator's ``history_``.

        Parameters
        ----------
        estimator : fitted SkinLesionClassifier, Pipeline ending in one, or search
            Anything whose (final step's) ``history_`` is a list of per-epoch dicts; a fitted
            search (``GridSearchCV``, ``OptunaLesionSearchCV``, ...) shows that of its
            ``best_estimator_`` (which needs ``refit=True``), the model refitted on all data.
        score_name : str, default="valid_bacc"
            History key of the validation score.
        ax : matplotlib.axes.Axes, default=None
            Axes to draw on.
        name : str, default=None
            Title; default the estimator's class name.

        Returns
        -------
        display : TrainingCurvesDisplay
            The plotted display.
        """
        history = getattr(_final_step(_refitted_model(estimator)), "history_", None)
        # Named like the other displays: a search keeps its own name.
        name = name or type(_final_step(estimator)).__name__
        if history is None:
            if hasattr(estimator, "cv_results_"):
                raise ValueError(
                    f"{type(estimator).__name__} has no best_estimator_ (fitted with "
                    "refit=False), so no training history: refit it or pass a fitted "
                    "SkinLesionClassifier."
                )
            raise ValueError(
                f"{name} has no history_: fit a SkinLesionClassifier first (or a Pipeline "
                "ending in one, or a search over one with refit=True)."
            )
        return cls.from_history(history, score_name=score_name, ax=ax, name=name)
