"""Shared helpers of the benchmark scripts: configuration header, tables, docs/benchmarks.md."""

from __future__ import annotations

import os
import platform
import re
import resource
import shlex
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("SKINESTIMATOR_DATA", REPO.parent / "shared" / "data"))
DOCS = REPO / "docs" / "benchmarks.md"


def machine_summary() -> str:
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"torch {torch.__version__} ({torch.get_num_threads()} threads), GPU: {gpu}, "
            f"Python {platform.python_version()}")


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = []
        for column in columns:
            value = row.get(column, "")
            if isinstance(value, float):
                cells.append(f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}")
            else:
                cells.append(str(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def command_line() -> str:
    return "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0], REPO),
                                                          *sys.argv[1:]])


def write_section(name: str, body: str) -> None:
    """Replace (or append) the section ``name`` of docs/benchmarks.md between markers."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{body.rstrip()}\n{end}"
    text = DOCS.read_text() if DOCS.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else (
        text.rstrip() + "\n\n" + block + "\n")
    DOCS.write_text(text)
    print(f"\nwrote section '{name}' of {DOCS.relative_to(REPO)}")


def score_run(name: str, clf, X_train, y_train, X_test, y_test, *, fit_params=None) -> dict:
    """Fit ``clf``, score it on the held-out set; one results-table row (run in a subprocess
    so that the peak memory is this configuration's own)."""
    import time

    from sklearn.metrics import accuracy_score, balanced_accuracy_score, recall_score, roc_auc_score

    from skinestimator import keep_freed_memory

    keep_freed_memory()
    start = time.perf_counter()
    clf.fit(X_train, y_train, **(fit_params or {}))
    train_seconds = time.perf_counter() - start
    for epoch in clf.history_:
        scores = {k: round(v, 4) for k, v in epoch.items()
                  if k in ("epoch", "train_loss", "valid_loss", "valid_bacc", "dur")}
        print(f"    {name}: {scores}", flush=True)
    start = time.perf_counter()
    proba = clf.predict_proba(X_test)
    predict_seconds = time.perf_counter() - start
    predicted = clf.classes_[proba.argmax(axis=1)]
    recalls = recall_score(y_test, predicted, labels=clf.classes_, average=None)
    epochs = len(clf.history_)
    with_tta = {}
    if getattr(clf, "tta", None) is False:
        # The same fitted model with test-time flips: what tta=True would add, at no training cost.
        clf.set_params(tta=True)
        tta_predicted = clf.predict(X_test)
        clf.set_params(tta=False)
        with_tta = {"balanced accuracy with tta": balanced_accuracy_score(y_test, tta_predicted)}
    return {
        "configuration": name,
        "accuracy": accuracy_score(y_test, predicted),
        "balanced accuracy": balanced_accuracy_score(y_test, predicted),
        "macro AUC": roc_auc_score(y_test, proba, multi_class="ovr", average="macro",
                                   labels=clf.classes_),
        "recall per class": " ".join(f"{c}:{r:.2f}" for c, r in zip(clf.classes_, recalls)),
        "epochs": epochs,
        "train time (s)": round(train_seconds, 1),
        "train img/s": round(len(y_train) * epochs / train_seconds, 1),
        "predict img/s": round(len(y_test) / predict_seconds, 1),
        "peak RSS (GB)": round(peak_rss_gb(), 2),
        **with_tta,
    }


RESULT_COLUMNS = ["configuration", "accuracy", "balanced accuracy", "macro AUC",
                  "recall per class", "epochs", "train time (s)", "train img/s",
                  "predict img/s", "peak RSS (GB)"]


def run_isolated(function, *args, **kwargs):
    """Run ``function(*args, **kwargs)`` in a fresh process and return its result."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(function, *args, **kwargs).result()
