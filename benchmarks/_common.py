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
NOTES = REPO / "docs" / "recipe_notes.md"


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


def _section_markers(name: str) -> tuple[str, str, re.Pattern]:
    """The start and end markers of section ``name`` and a pattern matching it (body grouped)."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    return start, end, re.compile(re.escape(start) + r"(.*?)" + re.escape(end), re.S)


def _document_of(name: str) -> Path:
    """The page holding section ``name``: docs/recipe_notes.md for the recipe history moved
    there, docs/benchmarks.md for the rest and for new sections."""
    pattern = _section_markers(name)[2]
    if NOTES.exists() and pattern.search(NOTES.read_text()):
        return NOTES
    return DOCS


def write_section(name: str, body: str) -> None:
    """Replace (or append) the section ``name`` of docs/benchmarks.md (or of
    docs/recipe_notes.md, where it is there) between markers."""
    start, end, pattern = _section_markers(name)
    block = f"{start}\n{body.rstrip()}\n{end}"
    page = _document_of(name)
    text = page.read_text() if page.exists() else "# Benchmarks\n"
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else (
        text.rstrip() + "\n\n" + block + "\n")
    page.write_text(text)
    print(f"\nwrote section '{name}' of {page.relative_to(REPO)}")


def section_text(name: str) -> str:
    """The body of section ``name`` of docs/benchmarks.md ("" when there is none)."""
    page = _document_of(name)
    if not page.exists():
        return ""
    match = _section_markers(name)[2].search(page.read_text())
    return match.group(1) if match else ""


def earlier_runs(name: str, columns: list[str]) -> tuple[list[str], list[dict]]:
    """The commands and result rows that section ``name`` already holds.

    Rows keep their cells as written (strings); a ``"- <configuration>: <number>"`` line under
    the table becomes that row's ``"balanced accuracy with tta"``.
    """
    commands: list[str] = []
    rows: dict[str, dict] = {}
    for line in section_text(name).splitlines():
        if line.startswith(("Command: ", "Commands: ")):
            commands = re.findall(r"`([^`]+)`", line)
        elif line.startswith("| ") and not line.startswith(f"| {columns[0]} |"):
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            if len(cells) == len(columns):
                rows[cells[0]] = dict(zip(columns, cells))
        elif (tta := re.fullmatch(r"- (.+): ([0-9.]+)", line)) and tta.group(1) in rows:
            rows[tta.group(1)]["balanced accuracy with tta"] = float(tta.group(2))
    return commands, list(rows.values())


def merge_runs(name: str, rows: list[dict], columns: list[str]) -> tuple[str, list[dict]]:
    """This run's rows merged into those section ``name`` already holds, and its command line.

    A run of one seed (or fold) adds its rows to the section instead of dropping the other
    seeds' rows: a row of the same configuration is replaced in place, a new one is appended.
    The section then names every command whose rows it still holds.
    """
    commands, earlier = earlier_runs(name, columns)
    key = columns[0]
    fresh = {row[key]: row for row in rows}
    replaced_all = all(row[key] in fresh for row in earlier)
    merged = [fresh.pop(row[key], row) for row in earlier] + list(fresh.values())
    this_command = command_line()
    if replaced_all or not commands:
        commands = [this_command]
    elif this_command not in commands:
        commands.append(this_command)
    quoted = [f"`{command}`" for command in commands]
    if len(quoted) == 1:
        return f"Command: {quoted[0]}", merged
    listed = ", ".join(quoted[:-1]) + " and " + quoted[-1]
    return f"Commands: {listed} (rows merged: each run adds or replaces its own rows)", merged


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
    """Run ``function(*args, **kwargs)`` in a fresh process and return its result.

    The run stops with the script: a benchmark killed (``kill``, ``timeout``) used to leave its
    hour-long training run behind as an orphan that held both cores until it finished.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(_run_while_parent_lives, os.getpid(), function, args, kwargs).result()


def _run_while_parent_lives(parent_pid: int, function, args, kwargs):
    import threading
    import time

    def watch() -> None:
        # An orphan is adopted by another process, so its parent id changes.
        while os.getppid() == parent_pid:
            time.sleep(2)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()
    return function(*args, **kwargs)
