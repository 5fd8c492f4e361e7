"""Cross-validated evaluation reports: metrics, subgroups, plots; text, Markdown, HTML."""

from __future__ import annotations

import base64
import contextlib
import html
import io
import math
import numbers
import os
import re
import time
import warnings
from collections.abc import Mapping

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.base import clone
from sklearn.exceptions import DataConversionWarning, UndefinedMetricWarning
from sklearn.metrics import ConfusionMatrixDisplay
from sklearn.utils import _safe_indexing, column_or_1d, indexable
from sklearn.utils.multiclass import check_classification_targets

from .._warnings import warn_user
from ..model_selection._split import check_group_cv, check_groups_disjoint, fit_grouped
from ._coverage import UncertaintySummary, fold_uncertainty
from ._metrics import (
    NOT_SUMMING_TO_ONE,
    SUM_RTOL,
    _check_n_bins,
    _resolve_top_k,
    _top_k_warning,
    classification_metrics,
    per_class_metrics,
)
from ._plot import OneVsRestRocDisplay, ReliabilityDisplay, TrainingCurvesDisplay, _final_step

__all__ = ["CrossValidationReport", "cross_validated_report"]

#: Subgroup metrics, and whether higher is better (ECE: lower is better).
SUBGROUP_METRICS = {
    "accuracy": True,
    "balanced_accuracy": True,
    "f1_macro": True,
    "roc_auc_ovr_macro": True,
    "ece": False,
}
MISSING = "missing"


def _estimator_name(estimator) -> str:
    steps = getattr(estimator, "steps", None)
    if steps:
        return "Pipeline(" + " → ".join(type(step).__name__ for _, step in steps) + ")"
    return type(estimator).__name__


def _check_target(y) -> tuple[np.ndarray, np.ndarray]:
    """``y`` as 1-D class labels and its sorted classes.

    Checked before any warning or fit: a mix of strings and numbers used to fail in
    ``np.unique`` with "'<' not supported", and a single class warned about top-k and then
    failed inside the estimator's solver.
    """
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        warn_user(
            "A column-vector y was passed when a 1d array was expected; it is read as "
            "y.ravel().",
            DataConversionWarning,
        )
    y = column_or_1d(y)  # other shapes raise
    if y.dtype == object:
        missing = np.flatnonzero(pd.isna(y))
        if missing.size:
            raise ValueError(
                f"y contains {missing.size} missing labels (None or NaN), e.g. at index "
                f"{missing[0]}; drop those samples or give them a class."
            )
        kinds = {
            "string" if isinstance(v, str)
            else "number" if isinstance(v, numbers.Number)
            else type(v).__name__
            for v in y
        }
        if len(kinds) > 1:
            raise ValueError(
                f"Mix of label input types ({' and '.join(sorted(kinds, reverse=True))}) in "
                "y; give every label the same type, e.g. y.astype(str)."
            )
    check_classification_targets(y)  # continuous or otherwise non-class targets
    classes = np.unique(y)
    if len(classes) < 2:
        got = f"1 class ({classes.tolist()[0]!r})" if len(classes) else "no samples"
        raise ValueError(f"y needs samples of at least 2 classes for a report, got {got}.")
    return y, classes


def _fit_predict(estimator, X, y, groups, train, test, classes):
    start = time.perf_counter()
    fit_grouped(
        estimator,
        _safe_indexing(X, train),
        _safe_indexing(y, train),
        None if groups is None else _safe_indexing(groups, train),
    )
    fit_time = time.perf_counter() - start
    proba = np.asarray(estimator.predict_proba(_safe_indexing(X, test)), dtype=float)
    # A class absent from a training part has no column: give it probability 0. The caller
    # warns about it: warnings raised here are lost in joblib's worker processes.
    fitted_classes = np.asarray(estimator.classes_)
    aligned = np.zeros((len(test), len(classes)))
    aligned[:, np.searchsorted(classes, fitted_classes)] = proba
    missing = classes[~np.isin(classes, fitted_classes)]
    history = getattr(_final_step(estimator), "history_", None)
    uncertainty = fold_uncertainty(_final_step(estimator), fitted_classes, classes)
    return (aligned, fit_time, (list(history) if history is not None else None), missing,
            uncertainty)


def _check_out_of_fold_proba(y_proba, test_fold, estimator_name: str) -> tuple[np.ndarray, list]:
    """The out-of-fold probabilities checked once, rather than in every metric of the report.

    NaN, infinity and values outside [0, 1] raise, naming the folds; excursions within
    rounding (``SUM_RTOL``) are clipped, so float32 outputs pass. Rows that do not sum to one
    warn once and add a note to the report. Returns the probabilities and the notes.
    """
    where = f"{estimator_name}.predict_proba"

    def folds_of(rows) -> str:
        return ", ".join(map(str, np.unique(test_fold[rows])))

    bad = ~np.isfinite(y_proba).all(axis=1)
    if bad.any():
        raise ValueError(f"{where} returned NaN or infinity (fold {folds_of(bad)}).")
    for outside, what in [
        ((y_proba > 1 + SUM_RTOL).any(axis=1), "values greater than 1"),
        ((y_proba < -SUM_RTOL).any(axis=1), "values lower than 0"),
    ]:
        if outside.any():
            raise ValueError(
                f"{where} returned {what} (fold {folds_of(outside)}); the report needs "
                "probabilities."
            )
    y_proba = np.clip(y_proba, 0.0, 1.0)
    sums = y_proba.sum(axis=1)
    off = np.flatnonzero(~np.isclose(sums, 1.0, rtol=SUM_RTOL, atol=0.0))
    if not off.size:
        return y_proba, []
    note = (
        f"{NOT_SUMMING_TO_ONE}: {off.size} of {len(sums)} rows from {where} (fold "
        f"{folds_of(off)}; row {off[0]} sums to {sums[off[0]]:.6g}); the metrics use them "
        "as given, not renormalized."
    )
    warn_user(note, UserWarning)
    return y_proba, [note]


def _as_subgroup_frame(subgroups, n_samples: int) -> pd.DataFrame:
    if subgroups is None:
        return pd.DataFrame(index=range(n_samples))
    if isinstance(subgroups, pd.DataFrame):
        frame = subgroups.reset_index(drop=True)
    elif isinstance(subgroups, Mapping):
        frame = pd.DataFrame(
            {name: _column_values(name, values) for name, values in subgroups.items()}
        )
    else:
        raise TypeError("subgroups must be a pandas DataFrame or a dict of column name to values.")
    if len(frame) != n_samples:
        raise ValueError(f"subgroups has {len(frame)} rows but X has {n_samples} samples.")
    return frame.apply(_subgroup_column)


def _column_values(name, values):
    """A subgroup column's values by position, keeping categories (their order is the table's).

    A single column of shape ``(n_samples, 1)`` (e.g. ``df[["sex"]]``) is taken as its values;
    anything else that is not one value per sample is refused with its shape, rather than
    failing later on unhashable rows.
    """
    if isinstance(values, pd.DataFrame) and values.shape[1] == 1:
        values = values.iloc[:, 0]
    if isinstance(values, (pd.Series, pd.Index)):
        return values.array
    if isinstance(values, pd.Categorical):
        return values
    try:
        shape = np.shape(values)
    except ValueError:  # ragged nested sequences
        shape = None
    if shape is not None and len(shape) == 2 and shape[1] == 1:
        return list(np.asarray(values)[:, 0])
    if shape is None or len(shape) != 1:
        raise ValueError(
            f"subgroup {name!r} must have one value per sample, shape (n_samples,) or "
            f"(n_samples, 1); got {'a ragged sequence' if shape is None else f'shape {shape}'}."
        )
    return list(values)


def _subgroup_column(column: pd.Series) -> pd.Series:
    """The column as string labels, categorical with the levels in their natural order.

    A categorical column (e.g. from ``pandas.cut``) keeps its category order; otherwise numbers,
    and strings that read as numbers (such as ``"45.0"`` from a CSV file), come first in
    increasing order, then the other strings alphabetically. ``"missing"`` comes last.
    """
    labels = column.astype(object).where(column.notna(), MISSING).astype(str)
    present = column.dropna()
    if isinstance(column.dtype, pd.CategoricalDtype):
        observed = set(present.astype(object))
        ordered = [value for value in column.cat.categories if value in observed]
    else:
        ordered = sorted(pd.unique(present.astype(object)), key=_level_key)
    levels = list(dict.fromkeys([str(value) for value in ordered]))
    if column.isna().any() and MISSING not in levels:
        levels.append(MISSING)
    return pd.Series(pd.Categorical(labels, categories=levels), index=column.index)


def _level_key(value) -> tuple:
    """Sort key of a subgroup value: numbers (or numeric strings) by value, then text."""
    text = str(value)
    if isinstance(value, numbers.Real):
        number = float(value)
    else:
        try:
            number = float(text)
        except ValueError:
            number = math.nan
    if math.isfinite(number):
        return (0, number, "", text)
    return (1, 0.0, text.casefold(), text)


#: Columns shown as whole numbers; every other number gets three decimals.
COUNT_COLUMNS = {"n_samples", "n_train", "n_test", "support", "n_groups"}


def _format_value(value, *, count: bool = False) -> str:
    if value is None:
        return "–"
    if isinstance(value, float | np.floating | int | np.integer):
        if np.isnan(value):
            return "–"
        return f"{int(value)}" if count else f"{value:.3f}"
    return str(value)


def _formatted(frame: pd.DataFrame) -> pd.DataFrame:
    """The table as strings: counts whole, other numbers with three decimals."""
    return pd.DataFrame(
        {c: [_format_value(v, count=c in COUNT_COLUMNS) for v in frame[c]] for c in frame.columns},
        index=frame.index,
    )


def _markdown_table(frame: pd.DataFrame) -> str:
    text = _formatted(frame)
    header = [frame.index.name or "", *map(str, frame.columns)]
    lines = [
        "| " + " | ".join(header) + " |",
        "| " + " | ".join(["---"] + ["---:"] * len(frame.columns)) + " |",
    ]
    for index, row in text.iterrows():
        cells = [str(index), *row]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def _text_table(frame: pd.DataFrame) -> str:
    return _formatted(frame).to_string(justify="right")


def _html_table(frame: pd.DataFrame) -> str:
    return _formatted(frame).to_html(border=0)


def _figure_png(draw, figsize=(6.0, 5.0)) -> str:
    """Draw on a fresh figure (no pyplot state) and return it as base64 PNG."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    draw(fig.add_subplot())
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


class CrossValidationReport:
    """Result of :func:`cross_validated_report`.

    Not built by hand: call :func:`cross_validated_report`. Render with
    :meth:`to_text` (also ``str(report)``), :meth:`to_markdown` or
    :meth:`to_html`; draw single plots with the ``plot_*`` methods.

    Attributes
    ----------
    estimator_name : str
        Name of the evaluated estimator.
    cv_description : str
        The splitter used and how groups were handled.
    classes : ndarray of shape (n_classes,)
        Class labels, the columns of ``y_proba``.
    y_true : ndarray of shape (n_samples,)
        True labels.
    y_proba : ndarray of shape (n_samples, n_classes)
        Out-of-fold predicted probabilities: each row comes from the model
        that did not see that sample.
    y_pred : ndarray of shape (n_samples,)
        Out-of-fold predicted labels.
    test_fold : ndarray of shape (n_samples,)
        Fold in which each sample was in the test part.
    folds : list of (ndarray, ndarray)
        Training and test indices of each fold.
    fold_metrics : pandas.DataFrame
        One row per fold: sizes, fit time and the metrics of its test part.
    pooled_metrics : dict of str to float
        Metrics of all out-of-fold predictions together.
    summary : pandas.DataFrame
        Per metric: pooled value, mean and standard deviation over folds.
    per_class : pandas.DataFrame
        Pooled precision, recall, F1, one-vs-rest AUC and support per class.
    subgroup_metrics : dict of str to pandas.DataFrame
        Per subgroup column, pooled metrics per subgroup value, in the values' natural
        order: a categorical column's category order (as from ``pandas.cut``), else numbers
        (also numeric strings such as ``"45.0"``) in increasing order, then other strings
        alphabetically; ``"missing"`` last.
    subgroup_gaps : pandas.DataFrame
        Per subgroup column and metric: best and worst subgroup (among those
        with at least ``min_subgroup_size`` samples) and the gap between them.
        On a tie the best is the first tied subgroup in ``subgroup_metrics``
        order and the worst the last, so they always differ: a gap of 0 means
        every eligible subgroup scored the same.
    uncertainty : UncertaintySummary or None
        Calibration (ECE before and after the folds' temperatures) and conformal prediction
        sets (coverage and size, per class and subgroup); None when the estimator keeps no
        calibration scores or ``coverage=None``. ``uncertainty.plot()`` draws coverage
        against set size.
    histories : list
        The net's per-epoch history of each fold (``None`` entries for
        estimators without ``history_``).
    top_k : int
        ``k`` of the top-k accuracy.
    n_bins : int
        Confidence bins of the ECE and the reliability diagram.
    notes : list of str
        What :func:`cross_validated_report` warned about and the numbers depend on: a fold
        whose training part lacked a class (its model gave that class probability 0), rows of
        probabilities that do not sum to one. Shown in every rendering, so a saved report
        keeps them.
    """

    def __init__(
        self,
        *,
        estimator_name,
        cv_description,
        classes,
        y_true,
        y_proba,
        folds,
        fit_times,
        histories,
        subgroups,
        top_k,
        n_bins,
        min_subgroup_size,
        notes=(),
        fold_uncertainty=None,
        coverage=None,
    ):
        self.estimator_name = estimator_name
        self.notes = list(notes)
        self.cv_description = cv_description
        self.classes = classes
        self.y_true = y_true
        self.y_proba = y_proba
        self.y_pred = classes[y_proba.argmax(axis=1)]
        self.folds = folds
        self.histories = histories
        self.top_k = top_k
        self.n_bins = n_bins
        self.min_subgroup_size = min_subgroup_size
        self.test_fold = np.empty(len(y_true), dtype=int)
        for k, (_, test) in enumerate(folds):
            self.test_fold[test] = k

        def metrics(mask):
            with self._warned_once():
                return classification_metrics(
                    y_true[mask], y_proba[mask], classes=classes, top_k=top_k, n_bins=n_bins
                )

        rows = []
        for k, (train, test) in enumerate(folds):
            row = {
                "n_train": float(len(train)),
                "n_test": float(len(test)),
                "fit_time": fit_times[k],
            }
            row.update(metrics(test))
            del row["n_samples"]
            rows.append(row)
        self.fold_metrics = pd.DataFrame(rows, index=pd.RangeIndex(len(folds), name="fold"))
        self.pooled_metrics = metrics(slice(None))
        names = [m for m in self.pooled_metrics if m != "n_samples"]
        self.summary = pd.DataFrame(
            {
                "pooled": [self.pooled_metrics[m] for m in names],
                "fold_mean": [self.fold_metrics[m].mean() for m in names],
                "fold_std": [self.fold_metrics[m].std(ddof=0) for m in names],
            },
            index=pd.Index(names, name="metric"),
        )
        with self._warned_once():
            self.per_class = per_class_metrics(y_true, y_proba, classes=classes)
        self.subgroup_metrics = {}
        gap_rows = []
        for column in subgroups.columns:
            labels = subgroups[column]
            if not isinstance(labels.dtype, pd.CategoricalDtype):
                labels = _subgroup_column(labels)
            levels = labels.cat.remove_unused_categories().cat.categories
            values = labels.astype(object).to_numpy()
            table = pd.DataFrame(
                {value: metrics(values == value) for value in levels}
            ).T[["n_samples", *SUBGROUP_METRICS]]
            table.index = pd.Index([str(v) for v in table.index], name=str(column))
            self.subgroup_metrics[str(column)] = table
            eligible = table[table["n_samples"] >= min_subgroup_size]
            for metric, higher_is_better in SUBGROUP_METRICS.items():
                scores = eligible[metric].dropna()
                row = {"subgroup": str(column), "metric": metric, "n_groups": float(len(scores))}
                if len(scores) >= 2:
                    top, bottom = (
                        (scores.max(), scores.min()) if higher_is_better
                        else (scores.min(), scores.max())
                    )
                    # Ties: the first subgroup (in the table's order) scoring best and the
                    # last scoring worst, so the two always differ; when all subgroups tie,
                    # the gap is 0 between the first and the last.
                    best = scores.index[scores == top][0]
                    worst = scores.index[scores == bottom][-1]
                    row.update(
                        best_group=best,
                        best=scores[best],
                        worst_group=worst,
                        worst=scores[worst],
                        gap=abs(scores[best] - scores[worst]),
                    )
                gap_rows.append(row)
        columns = [
            "subgroup",
            "metric",
            "n_groups",
            "best_group",
            "best",
            "worst_group",
            "worst",
            "gap",
        ]
        self.subgroup_gaps = pd.DataFrame(gap_rows, columns=columns).set_index(
            ["subgroup", "metric"]
        )
        self.uncertainty = None
        if coverage is not None and fold_uncertainty and all(fold_uncertainty):
            self.uncertainty = UncertaintySummary(
                y_true=y_true, y_proba=y_proba, classes=classes, folds=folds,
                fold_data=fold_uncertainty, coverage=coverage, n_bins=n_bins,
                subgroups=subgroups, min_subgroup_size=min_subgroup_size)
            self.notes += self.uncertainty.notes

    @contextlib.contextmanager
    def _warned_once(self):
        """Silence what cross_validated_report warned about once, not per fold and subgroup."""
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message=re.escape(_top_k_warning(self.top_k, len(self.classes)))
            )
            warnings.filterwarnings("ignore", message=re.escape(NOT_SUMMING_TO_ONE))
            yield

    # ----------------------------------------------------------------- plots
    def plot_confusion_matrix(self, ax=None):
        """Row-normalized confusion matrix of the out-of-fold predictions.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, default=None
            Axes to draw on.

        Returns
        -------
        display : sklearn.metrics.ConfusionMatrixDisplay
            Each row sums to 1: the diagonal holds each class's recall.
        """
        display = ConfusionMatrixDisplay.from_predictions(
            self.y_true,
            self.y_pred,
            labels=self.classes,
            display_labels=[str(c) for c in self.classes],
            normalize="true",
            values_format=".2f",
            cmap="Blues",
            colorbar=False,
            xticks_rotation=45,
            ax=ax,
        )
        display.ax_.set_title("Confusion matrix (rows normalized: recall on the diagonal)")
        return display

    def plot_roc(self, ax=None):
        """One-vs-rest ROC curves of the out-of-fold probabilities.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, default=None
            Axes to draw on.

        Returns
        -------
        display : OneVsRestRocDisplay
            The plotted display.
        """
        return OneVsRestRocDisplay.from_predictions(
            self.y_true, self.y_proba, classes=self.classes, ax=ax
        )

    def plot_reliability(self, ax=None):
        """Reliability diagram of the out-of-fold probabilities.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, default=None
            Axes to draw on.

        Returns
        -------
        display : ReliabilityDisplay
            The plotted display.
        """
        return ReliabilityDisplay.from_predictions(
            self.y_true, self.y_proba, classes=self.classes, n_bins=self.n_bins, ax=ax
        )

    def plot_training_curves(self, ax=None):
        """Loss and validation score per epoch of every fold's net.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, default=None
            Axes to draw on.

        Returns
        -------
        display : TrainingCurvesDisplay
            The plotted display.

        Raises
        ------
        ValueError
            If the estimator recorded no ``history_``.
        """
        runs = [(k, h) for k, h in enumerate(self.histories) if h]
        if not runs:
            raise ValueError(f"{self.estimator_name} recorded no training history.")
        return TrainingCurvesDisplay.from_history(
            [h for _, h in runs], run_names=[f"fold {k}" for k, _ in runs], ax=ax
        )

    def _plots(self):
        """(title, base64 PNG) of every plot this report can draw."""
        with self._warned_once():
            plots = [
                ("Confusion matrix", _figure_png(self.plot_confusion_matrix, (6.5, 5.5))),
                ("One-vs-rest ROC curves", _figure_png(self.plot_roc, (6.0, 6.0))),
                ("Reliability diagram", _figure_png(self.plot_reliability, (6.0, 6.0))),
            ]
        if any(self.histories):
            plots.append(("Training curves", _figure_png(self.plot_training_curves, (8.0, 6.0))))
        if self.uncertainty is not None:
            plots.append(("Prediction sets: coverage against size",
                          _figure_png(self.uncertainty.plot, (6.0, 5.0))))
        return plots

    # ------------------------------------------------------------- rendering
    def _header_lines(self) -> list[str]:
        counts = pd.Series(self.y_true).value_counts().reindex(self.classes)
        return [
            f"Estimator: {self.estimator_name}",
            f"Samples: {len(self.y_true)}; classes: "
            + ", ".join(f"{c} ({n})" for c, n in counts.items()),
            f"Cross-validation: {self.cv_description}",
            "Metrics of out-of-fold predictions: every prediction comes from a model that "
            "never saw the image.",
            *(f"Warning: {note}" for note in self.notes),
        ]

    def _sections(self):
        yield "Summary (pooled out-of-fold, and mean / std over folds)", self.summary
        yield "Per fold", self.fold_metrics
        yield "Per class (pooled)", self.per_class
        for column, table in self.subgroup_metrics.items():
            yield f"Subgroup: {column}", table
        if self.subgroup_metrics:
            yield (
                f"Subgroup gaps (best − worst, subgroups with ≥ {self.min_subgroup_size} "
                "samples; lower ECE is better)",
                self.subgroup_gaps.reset_index().set_index("subgroup"),
            )
        if self.uncertainty is not None:
            yield from self.uncertainty.sections()

    def to_text(self) -> str:
        """Plain-text rendering.

        Returns
        -------
        text : str
            Header and one table per section.
        """
        parts = ["Cross-validated report", "=" * 22, *self._header_lines()]
        for title, table in self._sections():
            parts += ["", title, "-" * len(title), _text_table(table)]
        return "\n".join(parts) + "\n"

    def to_markdown(self) -> str:
        """Markdown rendering (tables only; plots need :meth:`to_html`).

        Returns
        -------
        markdown : str
            A Markdown document.
        """
        parts = ["# Cross-validated report", "", *(f"- {line}" for line in self._header_lines())]
        for title, table in self._sections():
            parts += ["", f"## {title}", "", _markdown_table(table)]
        return "\n".join(parts) + "\n"

    def _html_body(self) -> str:
        parts = ["<h1>Cross-validated report</h1>", "<ul>"]
        parts += [f"<li>{html.escape(line)}</li>" for line in self._header_lines()]
        parts.append("</ul>")
        parts.append('<h2>Plots</h2><div class="plots">')
        for title, png in self._plots():
            parts.append(
                f'<figure><img alt="{html.escape(title)}" src="data:image/png;base64,{png}">'
                f"<figcaption>{html.escape(title)}</figcaption></figure>"
            )
        parts.append("</div>")
        for title, table in self._sections():
            parts.append(
                f'<h2>{html.escape(title)}</h2><div class="table">{_html_table(table)}</div>'
            )
        return "\n".join(parts)

    def to_html(self, path: str | os.PathLike | None = None) -> str:
        """Self-contained HTML page with the plots embedded as PNG.

        Parameters
        ----------
        path : str or path-like, default=None
            Also write the page to this file.

        Returns
        -------
        html : str
            The page; it loads nothing from elsewhere.
        """
        page = (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            "<title>Cross-validated report</title><style>"
            "body{font-family:sans-serif;margin:2em;color:#222}"
            "table{border-collapse:collapse;margin:.5em 0 1.5em}"
            "th,td{padding:.25em .6em;text-align:right;border-bottom:1px solid #ddd}"
            "th{background:#f4f4f4}.table{overflow-x:auto}"
            ".plots{display:flex;flex-wrap:wrap;gap:1em}"
            "figure{margin:0}figure img{max-width:100%;max-height:600px;border:1px solid #ddd}"
            "figcaption{text-align:center;color:#555}"
            "</style></head><body>\n" + self._html_body() + "\n</body></html>\n"
        )
        if path is not None:
            with open(path, "w", encoding="utf-8") as f:
                f.write(page)
        return page

    def _repr_html_(self) -> str:
        return self._html_body()

    def __str__(self) -> str:
        return self.to_text()

    def __repr__(self) -> str:
        return (
            f"<CrossValidationReport {self.estimator_name}: {len(self.folds)} folds, "
            f"balanced accuracy {self.pooled_metrics['balanced_accuracy']:.3f}>"
        )


def cross_validated_report(
    estimator,
    X,
    y,
    *,
    groups=None,
    cv=5,
    subgroups=None,
    top_k: int | None = None,
    n_bins: int = 10,
    min_subgroup_size: int = 20,
    n_jobs: int | None = None,
    coverage: float | None = 0.9,
) -> CrossValidationReport:
    """Evaluate a classifier by cross-validation and collect a full report.

    A clone of ``estimator`` is fitted on the training part of every fold and
    predicts probabilities for its test part. The out-of-fold predictions give
    pooled metrics, per-class and per-subgroup metrics and the plots; each
    fold's own test part gives the per-fold metrics.

    With ``groups`` (e.g. HAM10000's ``lesion_id``) an integer ``cv`` becomes
    ``StratifiedGroupKFold``, and any splitter is checked to keep every group
    on one side of each fold: several images of one lesion on both sides would
    inflate every score.

    Parameters
    ----------
    estimator : classifier
        A :class:`~skinestimator.SkinLesionClassifier`, a Pipeline ending in
        one, or any scikit-learn classifier with ``predict_proba``.
    X : array-like of images or image paths
        Anything ``estimator.fit`` accepts.
    y : array-like of shape (n_samples,)
        Class labels of at least 2 classes, all strings or all numbers, none missing.
    groups : array-like of shape (n_samples,), default=None
        Group labels; no group is split across training and test, nor, for a
        ``SkinLesionClassifier`` or a Pipeline ending in one (its last step
        gets ``groups``), across its training and inner validation
        (early-stopping) part.
    cv : int, cross-validation generator or iterable, default=5
        Folds; the test parts must cover every sample exactly once.
    subgroups : pandas.DataFrame or dict of str to array-like, default=None
        Columns (sex, age band, body site, skin type, ...) with one value per
        sample, of shape ``(n_samples,)`` or ``(n_samples, 1)``; metrics are computed
        per value. Bin numeric columns first
        (e.g. ``pandas.cut(age, [0, 30, 50, 70, 120])``). Missing values
        form the subgroup ``"missing"``.
    top_k : int or None, default=None
        ``k`` of the top-k accuracy; ``None`` is 2, or 1 for two classes.
        With ``top_k >= n_classes`` the score is 1.0 and an
        ``UndefinedMetricWarning`` says so once, as scikit-learn's
        ``top_k_accuracy_score`` does.
    n_bins : int, default=10
        Confidence bins of the expected calibration error.
    min_subgroup_size : int, default=20
        Subgroups smaller than this are listed but left out of the best–worst
        gap, whose extremes would otherwise be noise.
    n_jobs : int, default=None
        Folds fitted in parallel (joblib).
    coverage : float in (0, 1) or None, default=0.9
        With a classifier that keeps calibration scores (a ``SkinLesionClassifier`` with a
        validation split), the report adds ``uncertainty``: the ECE before and after each
        fold's temperature, and the empirical coverage and mean size of each fold's conformal
        prediction sets at this coverage (marginal and per class) on its test part, per class
        and per subgroup with the worst-group gap, and the coverage-against-size plot. None
        leaves it out.

    Returns
    -------
    report : CrossValidationReport
        Metrics, out-of-fold probabilities, folds and plots; render it with
        ``to_text()``, ``to_markdown()`` or ``to_html(path)``.

    Raises
    ------
    ValueError
        Before any fit: if ``y`` is not class labels (continuous values, missing labels, a
        mix of strings and numbers) or has fewer than 2 classes; if a ``subgroups`` column
        is not one value per sample (shape ``(n_samples,)`` or ``(n_samples, 1)``); if
        ``cv`` does not put every sample in exactly one test part, or splits a group.
        After fitting: if ``predict_proba`` returns NaN, infinity or values outside [0, 1].

    Warns
    -----
    RuntimeWarning
        If the training part of a fold lacks a class: that fold's model gives the class
        probability 0 (as scikit-learn's ``cross_val_predict`` warns). The report's
        ``notes`` keep it, and every rendering shows it.
    UserWarning
        If rows of ``predict_proba`` do not sum to one (beyond float32 rounding); the
        metrics use them as given, and ``notes`` keep it.
    UndefinedMetricWarning
        If ``top_k >= n_classes`` (once per report).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.linear_model import LogisticRegression
    >>> from skinestimator.reports import cross_validated_report
    >>> X, y = load_digits(n_class=3, return_X_y=True)
    >>> site = np.where(np.arange(len(y)) % 2, "back", "face")
    >>> report = cross_validated_report(LogisticRegression(max_iter=1000), X / 16, y, cv=3,
    ...                                 subgroups={"site": site})
    >>> report.y_proba.shape
    (537, 3)
    >>> report.pooled_metrics["accuracy"] > 0.9
    True
    >>> list(report.subgroup_metrics["site"].index)
    ['back', 'face']
    """
    _resolve_top_k(top_k, 3)  # checked before any fitting; resolved once classes are known
    n_bins = _check_n_bins(n_bins)
    X, y, groups = indexable(X, y, groups)
    y, classes = _check_target(y)
    top_k = _resolve_top_k(top_k, len(classes))
    if top_k >= len(classes):
        warn_user(
            _top_k_warning(top_k, len(classes)) + " Pass a top_k smaller than the number "
            "of classes.", UndefinedMetricWarning,
        )
    subgroup_frame = _as_subgroup_frame(subgroups, len(y))
    splitter = check_group_cv(cv, y, groups, classifier=True)
    folds = [(np.asarray(tr), np.asarray(te)) for tr, te in splitter.split(X, y, groups)]
    check_groups_disjoint(folds, groups)
    covered = np.bincount(np.concatenate([te for _, te in folds]), minlength=len(y))
    if (covered != 1).any():
        raise ValueError(
            "cv must put every sample in the test part of exactly one fold (a partition such "
            "as (Stratified)(Group)KFold) to give out-of-fold predictions."
        )
    results = Parallel(n_jobs=n_jobs)(
        delayed(_fit_predict)(clone(estimator), X, y, groups, train, test, classes)
        for train, test in folds
    )
    y_proba = np.zeros((len(y), len(classes)))
    test_fold = np.empty(len(y), dtype=int)
    notes = []
    for k, ((_, test), (proba, _, _, missing, _)) in enumerate(zip(folds, results,
                                                                     strict=True)):
        y_proba[test] = proba
        test_fold[test] = k
        if missing.size:
            # As scikit-learn's cross_val_predict warns; here the fold and the classes are named,
            # and the report keeps the note, since its log loss and recall depend on it.
            note = (
                f"fold {k} trained without class {', '.join(map(str, missing))} "
                f"({len(classes) - missing.size} of {len(classes)} classes): its model gives "
                "that class probability 0."
            )
            notes.append(note)
            warn_user(
                f"{note[0].upper()}{note[1:]} Use a stratified splitter (an integer cv, "
                "StratifiedKFold or StratifiedGroupKFold) or shuffle the samples.",
                RuntimeWarning,
            )
    y_proba, proba_notes = _check_out_of_fold_proba(y_proba, test_fold, _estimator_name(estimator))
    notes += proba_notes
    description = repr(splitter) if not hasattr(splitter, "cv") else type(splitter).__name__
    if groups is not None:
        description += (
            f"; {len(np.unique(groups))} groups, each kept on one side of every fold (checked)"
        )
    return CrossValidationReport(
        estimator_name=_estimator_name(estimator),
        cv_description=description,
        classes=classes,
        y_true=y,
        y_proba=y_proba,
        folds=folds,
        fit_times=[result[1] for result in results],
        histories=[result[2] for result in results],
        fold_uncertainty=[result[4] for result in results],
        coverage=coverage,
        subgroups=subgroup_frame,
        top_k=top_k,
        n_bins=n_bins,
        min_subgroup_size=min_subgroup_size,
        notes=notes,
    )
