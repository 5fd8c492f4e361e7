"""Evaluation of a trained model on a labelled folder: metrics and a self-contained HTML page."""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import warnings
from typing import Any

import numpy as np


def evaluation_metrics(y_true, proba: np.ndarray, classes) -> dict[str, Any]:
    """Headline and per-class metrics of predicted probabilities against true labels."""
    from sklearn.metrics import (
        accuracy_score,
        balanced_accuracy_score,
        confusion_matrix,
        log_loss,
        precision_recall_fscore_support,
        roc_auc_score,
    )

    from skinestimator.reports import expected_calibration_error

    classes = np.asarray(classes)
    y_true = np.asarray(y_true)
    index = {c: i for i, c in enumerate(classes.tolist())}
    y_idx = np.asarray([index[c] for c in y_true.tolist()])
    y_pred = proba.argmax(axis=1)
    present = np.unique(y_idx)
    labels = np.arange(len(classes))

    precision, recall, f1, support = precision_recall_fscore_support(
        y_idx, y_pred, labels=labels, zero_division=0
    )
    auc = np.full(len(classes), np.nan)
    for k in present:
        positives = y_idx == k
        if 0 < positives.sum() < len(y_idx):
            auc[k] = roc_auc_score(positives, proba[:, k])
    with warnings.catch_warnings():
        # A folder (or a held-out part) without some classes is a normal thing to score;
        # scikit-learn's warnings about it would leak onto the terminal, and coverage_note
        # says what it means in the command line's own words.
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        warnings.filterwarnings("ignore", message="A single label was found")
        # Balanced accuracy over the classes present: the ISIC 2018 challenge metric.
        balanced_accuracy = float(balanced_accuracy_score(y_idx, y_pred))
    out: dict[str, Any] = {
        "n_images": int(len(y_idx)),
        "accuracy": float(accuracy_score(y_idx, y_pred)),
        "balanced_accuracy": balanced_accuracy,
        "macro_roc_auc": float(np.nanmean(auc)) if np.isfinite(auc).any() else None,
        "log_loss": float(log_loss(y_idx, np.clip(proba, 1e-15, 1), labels=labels)),
        "ece": float(expected_calibration_error(y_idx, proba, classes=labels)),
        "per_class": [
            {
                "class": str(classes[k]),
                "precision": float(precision[k]),
                "recall": float(recall[k]),
                "f1": float(f1[k]),
                "support": int(support[k]),
                "roc_auc": None if np.isnan(auc[k]) else float(auc[k]),
            }
            for k in labels
        ],
        "confusion_matrix": confusion_matrix(y_idx, y_pred, labels=labels).tolist(),
        "classes": [str(c) for c in classes],
    }
    return out


def coverage_note(metrics: dict[str, Any]) -> str | None:
    """A caveat on the headline metrics when the images scored miss some of the model's classes.

    Parameters
    ----------
    metrics : dict
        As returned by :func:`evaluation_metrics`.

    Returns
    -------
    note : str or None
        One sentence, or None when every class has images.
    """
    present = [row["class"] for row in metrics["per_class"] if row["support"]]
    absent = [row["class"] for row in metrics["per_class"] if not row["support"]]
    if len(present) == 1:
        return (f"all images are of one class ({present[0]}): balanced accuracy is that class's "
                "recall and ROC AUC is undefined; score images of several classes to compare "
                "models")
    if absent:
        return (f"no images of {', '.join(absent)}: balanced accuracy and macro ROC AUC cover "
                f"the {len(present)} classes present")
    return None


def metrics_table(metrics: dict[str, Any]) -> str:
    """Plain-text summary for the terminal."""
    lines = [
        f"images: {metrics['n_images']}   accuracy: {metrics['accuracy']:.3f}   "
        f"balanced accuracy: {metrics['balanced_accuracy']:.3f}   macro ROC AUC: "
        + ("n/a" if metrics["macro_roc_auc"] is None else f"{metrics['macro_roc_auc']:.3f}"),
        "",
        f"{'class':<20} {'precision':>9} {'recall':>7} {'f1':>6} {'auc':>6} {'n':>6}",
    ]
    for row in metrics["per_class"]:
        auc = "n/a" if row["roc_auc"] is None else f"{row['roc_auc']:.3f}"
        lines.append(
            f"{row['class'][:20]:<20} {row['precision']:>9.3f} {row['recall']:>7.3f} "
            f"{row['f1']:>6.3f} {auc:>6} {row['support']:>6}"
        )
    return "\n".join(lines)


def _figure_png(fig) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _figures(metrics: dict[str, Any], y_true, proba, history) -> list[tuple[str, str]]:
    """ROC curves, reliability diagram and training curves, drawn by skinestimator.reports."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from skinestimator.reports import (
        OneVsRestRocDisplay,
        ReliabilityDisplay,
        TrainingCurvesDisplay,
    )

    classes = np.asarray(metrics["classes"], dtype=object)
    y_true = np.asarray([str(c) for c in y_true], dtype=object)
    figures = []
    if len(np.unique(y_true)) > 1:
        fig, ax = plt.subplots(figsize=(5, 4.5))
        OneVsRestRocDisplay.from_predictions(y_true, proba, classes=classes, ax=ax)
        figures.append(("One-vs-rest ROC curves", _figure_png(fig)))
    fig, ax = plt.subplots(figsize=(5, 4.5))
    ReliabilityDisplay.from_predictions(y_true, proba, classes=classes, ax=ax)
    figures.append(("Reliability (calibration)", _figure_png(fig)))
    if history and "train_loss" in history[0]:
        fig, ax = plt.subplots(figsize=(5, 4.5))
        TrainingCurvesDisplay.from_history(history, ax=ax)
        figures.append(("Training curves (from the model card)", _figure_png(fig)))
    return figures


def evaluation_html(metrics: dict[str, Any], card: dict[str, Any] | None, *,
                    model_name: str, data_name: str, y_true=None, proba=None) -> str:
    """A self-contained HTML page (no external files) with the evaluation and model card."""
    e = html.escape
    card = card or {}
    classes = metrics["classes"]

    def fmt(value):
        return "n/a" if value is None else f"{value:.3f}"

    cm = np.asarray(metrics["confusion_matrix"])
    row_sum = cm.sum(axis=1, keepdims=True).clip(min=1)
    cm_rows = []
    for i, name in enumerate(classes):
        cells = "".join(
            f"<td style='background:rgba(26,86,219,{cm[i, j] / row_sum[i, 0]:.2f});"
            f"color:{'#fff' if cm[i, j] / row_sum[i, 0] > 0.5 else '#111'}'>{cm[i, j]}</td>"
            for j in range(len(classes))
        )
        cm_rows.append(f"<tr><th>{e(name)}</th>{cells}</tr>")
    per_class = "".join(
        f"<tr><td>{e(r['class'])}</td><td>{r['precision']:.3f}</td><td>{r['recall']:.3f}</td>"
        f"<td>{r['f1']:.3f}</td><td>{fmt(r['roc_auc'])}</td><td>{r['support']}</td></tr>"
        for r in metrics["per_class"]
    )
    versions = card.get("versions") or {}
    train = card.get("training_data") or {}
    counts = train.get("class_counts") or {}
    figures = [] if proba is None else _figures(metrics, y_true, proba, card.get("history"))
    plots = "".join(
        f"<figure><img alt='{e(title)}' src='data:image/png;base64,{png}'>"
        f"<figcaption>{e(title)}</figcaption></figure>" for title, png in figures
    )
    saved_metrics = card.get("metrics") or {}
    created = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Evaluation of {e(model_name)} on {e(data_name)}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; color: #1d2430;
       padding: 0 1rem; }}
table {{ border-collapse: collapse; margin: .5rem 0 1.5rem; }}
th, td {{ border: 1px solid #ccd; padding: .3rem .6rem; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
.notice {{ background: #fff4d6; border: 2px solid #e0a800; padding: .6rem 1rem;
           border-radius: .4rem; font-weight: 600; }}
.headline td {{ font-size: 1.2rem; }}
code {{ background: #f1f3f6; padding: 0 .2rem; }}
.card td {{ text-align: left; }}
.plots {{ display: flex; flex-wrap: wrap; gap: 1rem; }}
figure {{ margin: 0; }} figure img {{ max-width: 100%; border: 1px solid #dde; }}
figcaption {{ text-align: center; color: #556; }}
</style></head><body>
<h1>Evaluation report</h1>
<p>Model <code>{e(model_name)}</code> on the images in <code>{e(data_name)}</code>,
written {created} by skinestimator {e(str(versions.get('skinestimator', '')))}.</p>
<p class="notice">Research tool, not a diagnosis. Scores on images of lesions that were also
in the training data are inflated: evaluate on a folder of other lesions (other patients).</p>
<h2>Summary</h2>
<table class="headline"><tr><th>images</th><th>accuracy</th><th>balanced accuracy</th>
<th>macro ROC AUC</th><th>log loss</th><th>ECE</th></tr>
<tr><td>{metrics['n_images']}</td><td>{metrics['accuracy']:.3f}</td>
<td>{metrics['balanced_accuracy']:.3f}</td><td>{fmt(metrics['macro_roc_auc'])}</td>
<td>{metrics['log_loss']:.3f}</td><td>{metrics['ece']:.3f}</td></tr></table>
<h2>Per class</h2>
<table><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>ROC AUC</th>
<th>images</th></tr>{per_class}</table>
<h2>Confusion matrix</h2>
<p>Rows: true class; columns: predicted class ({e(', '.join(classes))}).</p>
<table><tr><th></th>{''.join(f'<th>{e(c)}</th>' for c in classes)}</tr>{''.join(cm_rows)}</table>
<h2>Model card</h2>
<table class="card">
<tr><td>backbone</td><td>{e(str(card.get('backbone')))}</td></tr>
<tr><td>input size</td><td>{e(str((card.get('preprocessing') or {}).get('image_size')))}</td></tr>
<tr><td>training images per class</td><td>{e(', '.join(f'{k}: {v}' for k, v in counts.items())
                                             or 'unknown')}</td></tr>
<tr><td>validation recorded at training</td><td>{e(', '.join(
    f'{k}: {v:.3f}' if isinstance(v, float) else f'{k}: {v}' for k, v in saved_metrics.items())
    or 'none')}</td></tr>
<tr><td>versions</td><td>{e(', '.join(f'{k} {v}' for k, v in versions.items()))}</td></tr>
<tr><td>SHA-256</td><td><code>{e(str(card.get('sha256', 'n/a')))}</code></td></tr>
</table>
{f'<h2>Plots</h2><div class="plots">{plots}</div>' if plots else ''}
</body></html>
"""
