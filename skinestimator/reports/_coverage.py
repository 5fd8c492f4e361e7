"""What a cross-validated report says about uncertainty: the ECE before and after each fold's
temperature, and the coverage and size of each fold's conformal prediction sets on its test
part, per class and per subgroup, with the coverage-against-set-size plot."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from ..uncertainty import (
    ConformalScores,
    apply_temperature,
    conformal_thresholds,
    prediction_sets,
)
from ._metrics import expected_calibration_error

__all__ = ["CoverageDisplay", "UncertaintySummary", "fold_uncertainty"]

LEVELS = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98)


def fold_uncertainty(fitted, fitted_classes, classes) -> dict | None:
    """A fold's temperature and calibration scores, the labels mapped to the report's classes
    (None when the model has neither, e.g. not a SkinLesionClassifier)."""
    scores = getattr(fitted, "conformal_scores_", None)
    if scores is None:
        return None
    columns = np.searchsorted(classes, fitted_classes)
    return {"temperature": float(getattr(fitted, "temperature_", 1.0)),
            "scores": ConformalScores(scores.scores, columns[scores.labels], len(classes))}


def _sets(y_proba, folds, fold_data, coverage, by_class, classes, notes) -> np.ndarray:
    sets = np.zeros(y_proba.shape, dtype=bool)
    for k, ((_, test), data) in enumerate(zip(folds, fold_data, strict=True)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            thresholds = conformal_thresholds(data["scores"], coverage, by_class=by_class,
                                              class_names=classes)
        notes.extend(f"fold {k}: {w.message}" for w in caught)
        sets[test] = prediction_sets(y_proba[test], thresholds)
    return sets


class UncertaintySummary:
    """Calibration and prediction-set figures of a cross-validated report.

    Attributes
    ----------
    coverage : float
        The coverage asked of the sets.
    calibration : pandas.DataFrame
        ECE of the out-of-fold probabilities before and after each fold's temperature, and the
        folds' mean temperature.
    sets : pandas.DataFrame
        For marginal and class-conditional (``by_class``) sets: empirical coverage, mean set
        size, the worst class and its coverage.
    per_class : pandas.DataFrame
        Per class: images, coverage and mean set size of both kinds of sets.
    per_subgroup : dict of str to pandas.DataFrame
        Per subgroup column: the same per subgroup value, with the worst-group gap in
        ``subgroup_gaps``.
    subgroup_gaps : pandas.DataFrame
        Per subgroup column and kind of set: the best and worst covered subgroup (of at least
        ``min_subgroup_size`` images) and the gap.
    notes : list of str
        Classes with too few calibration images in a fold (put in every class-conditional set).
    """

    def __init__(self, *, y_true, y_proba, classes, folds, fold_data, coverage, n_bins,
                 subgroups, min_subgroup_size):
        self.coverage = coverage
        self.notes: list[str] = []
        self._inputs = (y_true, y_proba, classes, folds, fold_data)
        index = np.searchsorted(classes, y_true)
        raw = np.empty_like(y_proba)
        for (_, test), data in zip(folds, fold_data, strict=True):
            raw[test] = apply_temperature(np.log(np.clip(y_proba[test], 1e-12, None)),
                                          1 / data["temperature"])
        self.calibration = pd.DataFrame({
            "ece_before": [expected_calibration_error(y_true, raw, classes=classes,
                                                      n_bins=n_bins)],
            "ece_after": [expected_calibration_error(y_true, y_proba, classes=classes,
                                                     n_bins=n_bins)],
            "mean_temperature": [float(np.mean([d["temperature"] for d in fold_data]))],
        }, index=pd.Index(["pooled"], name="probabilities"))
        covered, sizes = {}, {}
        for kind, by_class in (("marginal", False), ("by_class", True)):
            sets = _sets(y_proba, folds, fold_data, coverage, by_class, classes, self.notes)
            covered[kind] = sets[np.arange(len(index)), index]
            sizes[kind] = sets.sum(axis=1).astype(float)
        self.per_class = pd.DataFrame(
            {f"{column}_{kind}": [values[kind][index == k].mean() for k in range(len(classes))]
             for column, values in (("coverage", covered), ("set_size", sizes))
             for kind in covered},
            index=pd.Index([str(c) for c in classes], name="class"))
        self.per_class.insert(0, "n_samples", np.bincount(index, minlength=len(classes)))
        self.sets = pd.DataFrame([{
            "coverage": covered[kind].mean(), "mean_set_size": sizes[kind].mean(),
            "worst_class": self.per_class[f"coverage_{kind}"].idxmin(),
            "worst_class_coverage": self.per_class[f"coverage_{kind}"].min(),
        } for kind in covered], index=pd.Index(list(covered), name="sets"))
        self.per_subgroup, gap_rows = {}, []
        for column in subgroups.columns:
            values = subgroups[column].astype(str).to_numpy()
            levels = list(dict.fromkeys(values))
            table = pd.DataFrame(
                {"n_samples": [int((values == v).sum()) for v in levels],
                 **{f"coverage_{kind}": [covered[kind][values == v].mean() for v in levels]
                    for kind in covered}},
                index=pd.Index(levels, name=str(column)))
            self.per_subgroup[str(column)] = table
            eligible = table[table["n_samples"] >= min_subgroup_size]
            for kind in covered:
                scores = eligible[f"coverage_{kind}"]
                if len(scores) >= 2:
                    gap_rows.append({"subgroup": str(column), "sets": kind,
                                     "best_group": scores.idxmax(), "best": scores.max(),
                                     "worst_group": scores.idxmin(), "worst": scores.min(),
                                     "gap": scores.max() - scores.min()})
        self.subgroup_gaps = pd.DataFrame(
            gap_rows, columns=["subgroup", "sets", "best_group", "best", "worst_group",
                               "worst", "gap"]).set_index(["subgroup", "sets"])

    def sections(self):
        yield "Calibration: ECE before and after the folds' temperatures", self.calibration
        yield f"Prediction sets at coverage {self.coverage:g} (each fold's own calibration " \
              "scores, on its test part)", self.sets
        yield "Prediction sets per class", self.per_class
        for column, table in self.per_subgroup.items():
            yield f"Prediction sets per subgroup: {column}", table
        if len(self.subgroup_gaps):
            yield "Prediction-set coverage gaps between subgroups", \
                self.subgroup_gaps.reset_index().set_index("subgroup")

    def plot(self, ax=None):
        """Coverage against mean set size over coverage levels (see :class:`CoverageDisplay`)."""
        y_true, y_proba, classes, folds, fold_data = self._inputs
        index = np.searchsorted(classes, y_true)
        rows = []
        for level in LEVELS:
            for kind, by_class in (("marginal", False), ("by_class", True)):
                sets = _sets(y_proba, folds, fold_data, level, by_class, classes, [])
                rows.append({"level": level, "sets": kind,
                             "coverage": sets[np.arange(len(index)), index].mean(),
                             "mean_set_size": sets.sum(axis=1).mean()})
        return CoverageDisplay(pd.DataFrame(rows)).plot(ax=ax)


class CoverageDisplay:
    """Empirical coverage against mean set size of conformal prediction sets, one point per
    coverage level asked; a dotted line at each level marks where the coverage should be.

    Parameters
    ----------
    curve : pandas.DataFrame
        Columns ``level``, ``sets`` (``"marginal"`` or ``"by_class"``), ``coverage`` and
        ``mean_set_size``.

    Attributes
    ----------
    ax_ : matplotlib.axes.Axes
    figure_ : matplotlib.figure.Figure
    """

    def __init__(self, curve: pd.DataFrame):
        self.curve = curve

    def plot(self, ax=None):
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots()
        for kind, rows in self.curve.groupby("sets", sort=False):
            ax.plot(rows["mean_set_size"], rows["coverage"], marker="o",
                    label="per class (Mondrian)" if kind == "by_class" else "marginal")
        for level in sorted(self.curve["level"].unique()):
            ax.axhline(level, color="grey", linestyle=":", linewidth=0.7)
        ax.set_xlabel("mean prediction-set size (conditions)")
        ax.set_ylabel("empirical coverage (true condition in the set)")
        ax.set_title("Conformal prediction sets: coverage against size")
        ax.legend(loc="lower right")
        self.ax_, self.figure_ = ax, ax.figure
        return self
