"""Calibration and conformal prediction sets on real data: ECE before and after temperature
scaling, and the empirical coverage and mean size of prediction sets at 0.90 and 0.95, overall
and per class (class-conditional sets), on images of lesions the model never saw.

HAM10000: EfficientNet-Lite0 (the default model, fewer epochs than its default 15 to fit a
CPU run) on the images of 3,000 lesions, with its own lesion-grouped validation split (early
stopping, temperature, calibration scores); a separate calibration split of 1,500 other
lesions; scored on 2,000 yet other lesions. DermaMNIST: the official split, the same model
at 112 px, validated on the official val split; the test split halved into calibration and scoring
halves. Each set is reported with the calibration scores of ``fit``'s validation split (what a
user gets without more work) and of the separate split (``fit_conformal``). Usage::

    python benchmarks/calibration.py            # about 20 minutes on 2 CPU cores
    python benchmarks/calibration.py --quick    # a smoke run, does not touch the docs
"""

from __future__ import annotations

import argparse
import copy
import warnings

import numpy as np
from _common import DATA_DIR, command_line, machine_summary, markdown_table, write_section
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import GroupShuffleSplit

from skinestimator import SkinLesionClassifier, keep_freed_memory, load_dermamnist, load_ham10000
from skinestimator.reports import expected_calibration_error
from skinestimator.uncertainty import apply_temperature

COVERAGES = (0.90, 0.95)


def _split(groups, sizes, seed=0):
    """Three lesion-disjoint index sets of the given numbers of lesions."""
    rest = np.arange(len(groups))
    parts = []
    for size in sizes:
        split = GroupShuffleSplit(n_splits=1, train_size=size, random_state=seed)
        taken, left = next(split.split(rest, groups=groups[rest]))
        parts.append(np.random.default_rng(seed).permutation(rest[taken]))
        rest = rest[left]
    return parts


def coverage_rows(name, clf, X_cal, y_cal, X_test, y_test):
    """One row per (calibration scores, coverage, by_class)."""
    index = np.searchsorted(clf.classes_, y_test)
    fresh = copy.copy(clf).fit_conformal(X_cal, y_cal)
    rows = []
    for scores_name, model in (("fit's validation split", clf), ("separate split", fresh)):
        for coverage in COVERAGES:
            for by_class in (False, True):
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    sets = model.predict_set(X_test, coverage, by_class=by_class)
                covered = sets[np.arange(len(index)), index]
                per_class = [covered[index == k].mean() for k in range(len(clf.classes_))
                             if (index == k).any()]
                rows.append({
                    "data": name, "calibration scores": scores_name,
                    "n_calibration": len(model.conformal_scores_.scores),
                    "coverage asked": coverage, "by_class": by_class,
                    "coverage": float(covered.mean()),
                    "worst class": float(min(per_class)),
                    "mean set size": float(sets.sum(1).mean()),
                    "warnings": len(caught),
                })
                print(rows[-1], flush=True)
    return rows


def calibration_row(name, clf, X_test, y_test):
    proba = clf.predict_proba(X_test)
    # The raw probabilities, from the calibrated ones: softmax(T * log p) undoes 1 / T.
    raw = apply_temperature(np.log(np.clip(proba, 1e-12, None)), 1 / clf.temperature_)
    return {"data": name, "temperature": clf.temperature_,
            "ece before": expected_calibration_error(y_test, raw, classes=clf.classes_),
            "ece after": expected_calibration_error(y_test, proba, classes=clf.classes_),
            "same predictions": bool((raw.argmax(1) == proba.argmax(1)).all()),
            "balanced accuracy": balanced_accuracy_score(y_test,
                                                         clf.classes_[proba.argmax(1)])}


def ham10000(quick):
    paths, labels, groups = load_ham10000(DATA_DIR / "ham10000")
    sizes = (300, 200, 300) if quick else (3000, 1500, 2000)
    train, cal, test = _split(groups, sizes)
    clf = SkinLesionClassifier(random_state=0, max_epochs=1 if quick else 5, patience=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        clf.fit(paths[train], labels[train], groups=groups[train])
    name = (f"HAM10000 ({len(train)} train, {len(cal)} calibration, {len(test)} test images; "
            f"{sizes[0]}, {sizes[1]} and {sizes[2]} lesions)")
    return (calibration_row(name, clf, paths[test], labels[test]),
            coverage_rows(name, clf, paths[cal], labels[cal], paths[test], labels[test]))


def dermamnist(quick):
    npz = DATA_DIR / "dermamnist28" / "dermamnist_28.npz"
    X, y = load_dermamnist(npz, split="train")
    X_val, y_val = load_dermamnist(npz, split="val")
    X_test, y_test = load_dermamnist(npz, split="test")
    if quick:
        X, y = X[:500], y[:500]
    half = np.random.default_rng(0).permutation(len(y_test))
    cal, test = half[: len(half) // 2], half[len(half) // 2:]
    clf = SkinLesionClassifier(random_state=0, image_size=(112, 112), batch_size=64, lr=2e-3,
                               max_epochs=1 if quick else 4, patience=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        clf.fit(X, y, X_val=X_val, y_val=y_val)
    name = f"DermaMNIST ({len(y)} train, {len(cal)} calibration, {len(test)} test)"
    return (calibration_row(name, clf, X_test[test], y_test[test]),
            coverage_rows(name, clf, X_test[cal], y_test[cal], X_test[test], y_test[test]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    keep_freed_memory()
    print(machine_summary(), flush=True)
    calibration, coverage = [], []
    for run in (ham10000, dermamnist):
        row, rows = run(args.quick)
        print(row, flush=True)
        calibration.append(row)
        coverage.extend(rows)
    body = "\n".join([
        f"`{command_line()}` — {machine_summary()}; EfficientNet-Lite0 (ImageNet weights), "
        "5 epochs on HAM10000 and 4 on DermaMNIST (early stopping patience 3); temperature "
        "fitted on each fit's validation split.", "",
        markdown_table(calibration, ["data", "temperature", "ece before", "ece after",
                                     "same predictions", "balanced accuracy"]), "",
        "Prediction sets on the test images (`coverage`: share of test images whose true "
        "condition is in the set; `worst class`: the lowest per-class share; `warnings`: "
        "classes with too few calibration images for class-conditional sets, put in every "
        "set):", "",
        markdown_table(coverage, ["data", "calibration scores", "n_calibration",
                                  "coverage asked", "by_class", "coverage", "worst class",
                                  "mean set size", "warnings"]),
    ])
    print(body)
    if not args.quick:
        write_section("calibration", body)


if __name__ == "__main__":
    main()
