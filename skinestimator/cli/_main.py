"""The ``skinestimator`` command: train, evaluate, predict, explain, serve, export, info, demo.

Heavy imports (torch, skorch) happen inside the commands so that ``--help`` stays instant.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import math
import os
import signal
import sys
import tempfile
import threading
import time
import traceback
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import numpy as np

from .._parameters import argparse_type
from ._errors import (
    EXIT_DATA,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_MODEL,
    EXIT_OK,
    EXIT_USAGE,
    CLIError,
    one_line,
)

PROG = "skinestimator"

# ----------------------------------------------------------------------------------------------
# helpers shared by the commands


def _image_size(text: str) -> tuple[int, int]:
    """``224`` or ``150x200`` (height x width)."""
    parts = text.lower().replace("×", "x").split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected SIZE or HEIGHTxWIDTH, got {text!r}") from None
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) < 8 or max(values) > 4096:
        raise argparse.ArgumentTypeError(
            f"image size must be 8 to 4096 pixels, as SIZE or HEIGHTxWIDTH; got {text!r}"
        )
    return values[0], values[1]


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def _checked_float(text: str, accept, expected: str) -> float:
    """Parse a float for argparse; NaN and unparsable text fail ``accept`` alike."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not accept(value):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    return _checked_float(text, lambda v: v > 0, "a positive number")


def _unit_interval(text: str) -> float:
    return _checked_float(text, lambda v: 0.0 <= v <= 1.0, "a number in [0, 1]")


def _port(text: str) -> int:
    # 0 would mean "any free port", but the address printed for the user would then be wrong.
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number from 1 to 65535, got {text!r}")
    return value


def _device(text: str) -> str:
    """``auto`` or a torch device this computer has (``cpu``, ``cuda``, ``cuda:1``, ``mps``).

    ``auto`` is kept as given: the classifier resolves it, and the model card records it.
    """
    if text == "auto":
        return text
    # Imports torch, but only when --device is given, so that --help stays instant.
    from skinestimator._runtime import resolve_device

    # Say now, not after loading the data, that this computer lacks the device.
    try:
        resolve_device(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(one_line(exc)) from None
    return text


def _stages(text: str):
    """``--finetune`` as the estimator takes it: ``all``, ``head`` or a number of stages."""
    return text if text in ("all", "head") else int(text)


def _say(args, message: str) -> None:
    if not getattr(args, "quiet", False) and _main_rank():
        print(message, file=sys.stderr, flush=True)


def _main_rank() -> bool:
    # Under torchrun every rank runs this command: rank 0 alone speaks and writes.
    from skinestimator.training import is_main_process

    return is_main_process()


def _note(message: str) -> None:
    # A caveat about the results, not a status message: shown even with --quiet.
    print(f"note: {message}", file=sys.stderr, flush=True)


def _no_bar(args) -> bool | None:
    # None lets tqdm decide: bars on a terminal, none when stderr is a file or a pipe.
    return True if getattr(args, "quiet", False) or not _main_rank() else None


def _load_folder(data_dir: str):
    from skinestimator import load_image_folder

    try:
        return load_image_folder(data_dir)
    except (FileNotFoundError, NotADirectoryError, ValueError) as exc:
        raise CLIError(one_line(exc), EXIT_DATA) from exc


def _load_model(path: str):
    from skinestimator.deploy import ModelFileError, load_model

    try:
        return load_model(path)
    except ModelFileError as exc:
        raise CLIError(one_line(exc), EXIT_MODEL) from exc


def _image_paths(items: Sequence[str]) -> list[str]:
    """Expand folders (recursively, sorted) into image files; files are kept as given."""
    from skinestimator.images import IMAGE_EXTENSIONS

    out: list[str] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = sorted(
                str(p) for p in path.rglob("*")
                if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
            if not found:
                raise CLIError(f"folder '{item}' holds no images "
                               f"({', '.join(IMAGE_EXTENSIONS)})", EXIT_DATA)
            out.extend(found)
        elif path.is_file():
            out.append(str(path))
        else:
            raise CLIError(f"image file or folder not found: '{item}'", EXIT_DATA)
    return out


def _data_errors():
    """Exceptions that mean "a file in the user's data is bad" while reading images."""
    from skinestimator.images import ImageReadError

    return (ImageReadError,)


def _top_k(proba: np.ndarray, classes, k: int):
    k = max(1, min(k, proba.shape[1]))
    order = np.argsort(-proba, axis=1, kind="stable")[:, :k]
    return [[(str(classes[j]), float(row[j])) for j in idx] for row, idx in zip(proba, order)]


# Output files. The rule, documented in docs/command_line.md: a command never writes onto one
# of its own input files; `train` replaces an existing model file but no other file; the other
# commands replace an existing file of what they write, judged by its suffix (a .csv of earlier
# predictions, a .html report, a .png overlay), but never a model file or a file of another
# kind. Every output's missing folders are created, and all of this is checked before any work.

# The suffixes of the files each kind of output may replace.
_TABLE_SUFFIXES = (".csv", ".tsv", ".json", ".txt")
_JSON_SUFFIXES = (".json",)
_REPORT_SUFFIXES = (".html", ".htm")
_ONNX_SUFFIXES = (".onnx",)


def _image_suffixes() -> tuple[str, ...]:
    from skinestimator.images import IMAGE_EXTENSIONS

    return tuple(IMAGE_EXTENSIONS)


def _one_of(suffixes: Sequence[str]) -> str:
    """``(".csv", ".json", ".txt")`` -> ``".csv, .json or .txt"``."""
    return " or ".join(filter(None, [", ".join(suffixes[:-1]), suffixes[-1]]))


def _kind_of(path: Path) -> str:
    """What an existing file is, as far as its suffix tells, for error messages."""
    suffix = path.suffix.lower()
    if not suffix:
        return "an existing file without a suffix"
    if suffix in _image_suffixes():
        return f"an existing image ({suffix})"
    return f"an existing {suffix} file"


def _same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (or cannot be examined)
        return False


def _check_output(path: str | os.PathLike, option: str, *, inputs=(), writes: str,
                  suffixes: Sequence[str] = (), model: bool = False) -> Path:
    """Refuse an output path that would destroy a file or cannot be written; make its folder.

    Parameters
    ----------
    path : str or path-like
        The output file named on the command line.
    option : str
        The option that named it, for messages (e.g. ``"-o/--output"``).
    inputs : iterable of (path, str)
        The command's input files and what each is ("an input image").
    writes : str
        What the command would write there ("the predictions").
    suffixes : sequence of str
        Lower-case suffixes of the existing files this output may replace; an existing regular
        file with any other suffix (or none) is refused. Empty: no such check.
    model : bool
        True for `train`'s model file, which replaces only an existing model file.

    Returns
    -------
    out : pathlib.Path
        The checked path; its folder exists.
    """
    from skinestimator.deploy._model_file import has_model_header

    out = Path(path)
    if out.is_dir():
        raise CLIError(f"{option} '{out}' is a folder; give a file name such as "
                       f"'{out / ('model.skin' if model else 'output')}'", EXIT_USAGE)
    if out.exists() and out.is_file():  # -o /dev/stdout: nothing to lose, nothing to read
        for source, description in inputs:
            if _same_file(out, source):
                raise CLIError(f"{option} '{out}' is {description} of this command; writing "
                               f"{writes} there would destroy it: choose another file name",
                               EXIT_USAGE)
        if model and not has_model_header(out):
            raise CLIError(f"{option} '{out}' exists and is not a skinestimator model file; "
                           "refusing to replace it (train only replaces an existing model "
                           "file): delete it or choose another file name", EXIT_USAGE)
        if not model and has_model_header(out):
            raise CLIError(f"{option} '{out}' is a skinestimator model file; refusing to "
                           f"replace it with {writes}: choose another file name", EXIT_USAGE)
        # Only regular files: -o /dev/stdout or a named pipe has no kind to lose.
        if suffixes and out.is_file() and out.suffix.lower() not in suffixes:
            raise CLIError(f"{option} '{out}' is {_kind_of(out)}; refusing to replace it with "
                           f"{writes} (only an existing {_one_of(suffixes)} file is "
                           "replaced): delete it or choose another file name", EXIT_USAGE)
    # A new file too: predictions under photo.png or a report named model.skin would later pass
    # for an image or a model (an image folder would even pick it up as a training image).
    misleading = (*_image_suffixes(), ".skin")
    if model:
        suffixes = (".skin",)
    if out.suffix.lower() in misleading and suffixes and out.suffix.lower() not in suffixes:
        raise CLIError(f"{option} '{out}': refusing to write {writes} under the name of "
                       f"{'a model file' if out.suffix.lower() == '.skin' else 'an image'}; "
                       f"use a {_one_of(suffixes)} file name", EXIT_USAGE)
    for folder in out.parents:
        if folder.exists() or folder.is_symlink():
            if not folder.is_dir():
                what = "a file, not a folder" if folder.is_file() else "not a folder"
                raise CLIError(f"cannot write {option} '{out}': '{folder}' is {what}",
                               EXIT_USAGE)
            break
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        # Writing a probe file is the only reliable test (read-only mounts, ACLs, root).
        fd, probe = tempfile.mkstemp(dir=out.parent, prefix=".skinestimator-probe-")
        os.close(fd)
        os.unlink(probe)
        if out.exists() and not model and not os.access(out, os.W_OK):
            raise PermissionError(13, "Permission denied")
    except OSError as exc:
        raise CLIError(f"cannot write {option} '{out}': {exc.strerror or one_line(exc)}",
                       EXIT_USAGE) from exc
    return out


def _write_text(path: str | os.PathLike, text: str, option: str) -> None:
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:  # checked beforehand; this is for what changed in the meantime
        raise CLIError(f"cannot write {option} '{path}': {exc.strerror or one_line(exc)}",
                       EXIT_USAGE) from exc


def _distinct_outputs(*outputs: tuple[str | None, str]) -> None:
    """Refuse two output options naming the same file (the second would replace the first)."""
    given = [(path, option) for path, option in outputs if path]
    for i, (path, option) in enumerate(given):
        for other, other_option in given[i + 1:]:
            if Path(path).resolve() == Path(other).resolve():
                raise CLIError(f"{option} and {other_option} name the same file '{path}'",
                               EXIT_USAGE)


# ----------------------------------------------------------------------------------------------
# train


def add_grouping_options(p, purpose: str) -> None:
    """``--metadata``, ``--group-column`` and ``--id-column`` (``train``, ``tune``)."""
    p.add_argument("--metadata", metavar="CSV",
                   help=f"CSV with one row per image naming its group, {purpose}")
    p.add_argument("--group-column", default="lesion_id",
                   help="metadata column naming the group of each image")
    p.add_argument("--id-column", default="image_id",
                   help="metadata column matching the image file name without extension")


def _grouping(paths, metadata: str, group_column: str, id_column: str):
    """Group label of each image from a metadata CSV, matched on the image's file name."""
    try:
        with open(metadata, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            columns = reader.fieldnames or []
            for needed in (group_column, id_column):
                if needed not in columns:
                    raise CLIError(
                        f"metadata '{metadata}' has no column '{needed}' "
                        f"(columns: {', '.join(columns) or 'none'})",
                        EXIT_DATA,
                    )
            lookup = {row[id_column].strip(): row[group_column].strip() for row in reader}
    except FileNotFoundError:
        raise CLIError(f"metadata file not found: '{metadata}'", EXIT_DATA) from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise CLIError(f"metadata '{metadata}' is not a readable CSV: {one_line(exc)}",
                       EXIT_DATA) from exc
    groups, missing = [], []
    for p in paths:
        name = Path(p)
        group = lookup.get(name.stem, lookup.get(name.name))
        if group is None or group == "":
            missing.append(name.name)
        groups.append(group)
    if missing:
        raise CLIError(
            f"{len(missing)} image(s) have no row in '{metadata}' (matched on column "
            f"'{id_column}' = file name without extension), e.g. '{missing[0]}'",
            EXIT_DATA,
        )
    return np.asarray(groups, dtype=object)


def _grouped_holdout(labels, groups, fraction: float, seed: int, *,
                     group_column: str = "group") -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, valid)`` holding out about ``fraction`` of the images as whole groups.

    Raises ``CLIError`` (a data problem, exit 3) when the data are too few for that, saying
    what to change.
    """
    from skinestimator._validation import grouped_holdout

    n_groups = len(np.unique(groups))

    def enough_groups(share: float) -> bool:
        # With fewer groups than 1 / share, the part held out would be far above the share.
        return n_groups >= max(2, round(1.0 / share))

    def larger_fraction() -> str:
        # A larger share needs fewer stratified folds, hence fewer images per class and
        # fewer groups: name the smallest one that works on these data, if any does.
        for candidate in (0.2, 0.25, 0.3, 0.4, 0.5):
            if candidate > fraction and enough_groups(candidate):
                try:
                    grouped_holdout(labels, groups, candidate, seed=seed)
                except ValueError:
                    continue
                return f"--validation-fraction {candidate:g}, "
        return ""

    if not enough_groups(fraction):
        raise CLIError(
            f"only {n_groups} '{group_column}' groups in the metadata: too few to hold out "
            f"{fraction:.0%} of them for validation; use {larger_fraction()}images of more "
            f"groups, or "
            "--validation-fraction 0 to train without validation",
            EXIT_DATA,
        )
    try:
        return grouped_holdout(labels, groups, fraction, seed=seed)
    except ValueError as exc:
        # Stratified group folds need at least as many images in a class as folds, which a
        # few images per class do not give: a data problem, not a bug.
        raise CLIError(
            f"cannot hold out {fraction:.0%} of the '{group_column}' groups for validation: "
            f"{one_line(exc)}; use {larger_fraction()}more images per class, or "
            "--validation-fraction 0 to train without validation",
            EXIT_DATA,
        ) from exc


def _holdout(labels, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Indices ``(train, valid)`` holding out ``fraction`` of the images at random, stratified
    by class where the counts allow it: the rules of ``SkinLesionClassifier.fit``'s own split,
    seeded by ``seed``.

    ``valid`` is None when the images are too few to hold any out and still train on every
    class (the classifier learns its classes from what it trains on).
    """
    from skinestimator._validation import random_holdout

    n = len(labels)
    classes = np.unique(labels)
    n_valid = math.ceil(fraction * n)
    if n_valid < 1 or n - n_valid < len(classes):
        return np.arange(n), None
    train, valid = random_holdout(labels, n_valid, seed=seed)
    if len(np.unique(labels[train])) < len(classes):
        return np.arange(n), None
    return train, valid


@contextlib.contextmanager
def _interrupt_recorded():
    """Record a Ctrl+C (SIGINT) in the yielded list while still raising KeyboardInterrupt as
    Python's own handler does, so that an interruption something swallows is still known."""
    caught: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield caught  # signal handlers can only be set from the main thread
        return

    def record(signum, frame):
        caught.append(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, record)
    try:
        yield caught
    finally:
        signal.signal(signal.SIGINT, previous)


def cmd_train(args) -> int:
    from skinestimator import SkinLesionClassifier
    from skinestimator._validation import fit_seeds
    from skinestimator.deploy import save_model
    from skinestimator.training import launched_world_size

    from ._progress import epoch_progress, predict_proba_batched
    from ._report import coverage_note, evaluation_metrics

    paths, labels = _load_folder(args.data_dir)
    classes, counts = np.unique(labels, return_counts=True)
    if len(classes) < 2:
        raise CLIError(f"'{args.data_dir}' has one class folder ({classes[0]}); a classifier "
                       "needs at least two", EXIT_DATA)
    # Check the metadata before any output, so a mistake there is reported alone.
    groups = None
    if args.metadata:
        groups = _grouping(paths, args.metadata, args.group_column, args.id_column)
    # The validation split is computed here as well as inside fit because the model card
    # counts the images the network trained on, and the grouped report below needs its
    # indices; and this early because data too few to split are a data mistake, reported
    # alone too.
    # Seeded as fit(random_state=--seed) seeds its own split, so that the Python API given the
    # same seed and options holds out the same images and trains the same model.
    _, split_seed = fit_seeds(args.seed)
    train_idx = np.arange(len(paths))
    valid_idx = None
    if groups is not None and args.validation_fraction:
        # Whole groups are held out (images of one lesion on both sides would inflate the
        # score that picks the best epoch).
        train_idx, valid_idx = _grouped_holdout(labels, groups, args.validation_fraction,
                                                split_seed, group_column=args.group_column)
    elif args.validation_fraction:
        train_idx, valid_idx = _holdout(labels, args.validation_fraction, split_seed)
    # ... and the output before training, so that a bad -o does not cost a training run.
    inputs = [(args.metadata, "the metadata file")] if args.metadata else []
    inputs += [(p, "an input image") for p in paths]
    output = _check_output(args.output, "-o/--output", inputs=inputs, writes="the model",
                           model=True)
    _say(args, f"{len(paths)} images in {len(classes)} classes: "
               + ", ".join(f"{c} {n}" for c, n in zip(classes, counts)))
    processes = launched_world_size()
    if processes > 1:
        _say(args, f"data-parallel under torchrun: {processes} processes, each "
                   f"{args.batch_size // processes} images of the global batch of "
                   f"{args.batch_size}")

    params = dict(
        backbone=args.backbone, image_size=args.image_size, max_epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, finetune=args.finetune,
        patience=args.patience,
        augment=not args.no_augment, tta=args.tta, random_state=args.seed, device=args.device,
        validation_fraction=args.validation_fraction or None,
    )
    if args.patience == 0:  # documented: --patience 0 trains all --epochs
        params["patience"] = None
    if args.num_workers is not None:
        params["num_workers"] = args.num_workers
    if args.class_weight is not None:
        params["class_weight"] = None if args.class_weight == "none" else args.class_weight
    if args.logit_adjustment is not None:
        params["logit_adjustment"] = args.logit_adjustment
    if args.ema_decay is not None:
        params["ema_decay"] = args.ema_decay
    if args.color_constancy is not None:
        params["color_constancy"] = args.color_constancy
    if args.pretrained is not None:
        params["pretrained"] = args.pretrained
    if args.checkpoint_dir is not None:
        params["checkpoint_dir"] = args.checkpoint_dir

    metrics = None
    if valid_idx is not None and groups is not None:
        _say(args, f"validation: {len(valid_idx)} images of "
                   f"{len(np.unique(groups[valid_idx]))} '{args.group_column}' groups held "
                   "out (no group on both sides)")
    elif valid_idx is not None:
        _say(args, f"validation: {len(valid_idx)} images held out at random")
    elif args.validation_fraction:
        _say(args, f"too few images to hold out {args.validation_fraction:.0%} for "
                   "validation and still train on every class; training without validation")
    if valid_idx is None:
        # Nothing held out here: the classifier must not hold out images of its own either.
        params["validation_fraction"] = None
    try:
        clf = SkinLesionClassifier(**params)
        clf.set_params(callbacks=[epoch_progress(args.epochs, disable=_no_bar(args))])
        started = time.perf_counter()
        with warnings.catch_warnings(), _interrupt_recorded() as interrupted:
            warnings.simplefilter("ignore", UserWarning)
            # fit holds out the very images of valid_idx itself (same rule, same seed), and
            # so weighs the classes as a Python user's fit on this folder does.
            clf.fit(paths, labels, groups=groups if valid_idx is not None else None)
        elapsed = time.perf_counter() - started
        if interrupted:
            # skorch keeps a partly trained network after Ctrl+C and returns normally; saving
            # it would replace the model file with a half-trained one. Exit 130 instead.
            if args.checkpoint_dir:
                _note(f"the last finished epoch is saved in '{args.checkpoint_dir}': run the "
                      "same command again to resume from it")
            raise KeyboardInterrupt
    except _data_errors() as exc:
        raise CLIError(one_line(exc), EXIT_DATA) from exc
    except ValueError as exc:
        raise CLIError(f"cannot train: {one_line(exc)}", EXIT_USAGE) from exc
    # The progress callback is a property of this run, not of the model.
    clf.set_params(callbacks=None)
    if not _main_rank():
        return EXIT_OK  # rank 0 trained the same network; it scores and saves it

    if valid_idx is not None and groups is not None:
        proba = predict_proba_batched(clf, paths[valid_idx], desc="validating",
                                      disable=_no_bar(args))
        scores = evaluation_metrics(labels[valid_idx], proba, clf.classes_)
        note = coverage_note(scores)
        if note:
            _note(f"held-out validation images: {note}")
        metrics = {
            "balanced_accuracy": scores["balanced_accuracy"],
            "accuracy": scores["accuracy"],
            "macro_roc_auc": scores["macro_roc_auc"],
            "n_images": scores["n_images"],
            "split": f"hold-out of whole '{args.group_column}' groups "
                     f"({args.validation_fraction:.0%}), also used for early stopping",
        }
    # The images the network trained on: the held-out ones only scored epochs.
    train_counts = dict(zip(*np.unique(labels[train_idx], return_counts=True), strict=True))
    training_data = {
        "class_counts": {str(k): int(v) for k, v in train_counts.items()},
        "n_images": int(len(train_idx)),
        "n_validation": 0 if valid_idx is None else int(len(valid_idx)),
        "folder": Path(args.data_dir).name,
    }
    if args.metadata:
        training_data["grouped_by"] = args.group_column
    try:
        save_model(clf, output, metrics=metrics, training_data=training_data, notes=args.notes)
    except OSError as exc:  # checked before training; this is for what changed since
        raise CLIError(f"cannot write -o/--output '{output}': {exc.strerror or one_line(exc)}",
                       EXIT_USAGE) from exc

    summary = f"saved {output} ({len(clf.history_)} epochs, {elapsed:.0f} s)"
    if metrics:
        summary += (f"; held-out balanced accuracy {metrics['balanced_accuracy']:.3f} on "
                    f"{metrics['n_images']} images")
    elif clf.history_ and clf.history_[-1].get("valid_bacc") is not None:
        scores = [row["valid_bacc"] for row in clf.history_ if row.get("valid_bacc") is not None]
        if clf.patience is not None:  # early stopping kept the best epoch's weights
            summary += (f"; best validation balanced accuracy {max(scores):.3f}, the epoch "
                        "kept (split not grouped)")
        else:  # --patience 0: the last epoch's weights are the model
            summary += (f"; last epoch's validation balanced accuracy {scores[-1]:.3f} "
                        "(split not grouped)")
    print(summary)
    return EXIT_OK


# ----------------------------------------------------------------------------------------------
# evaluate


def _evaluate(clf, data_dir: str, *, args, report: str | None, model_name: str,
              outputs=(), model_path: str | None = None) -> dict:
    """Score ``clf`` on a class-per-folder tree; ``outputs`` are (path, option, what,
    suffixes) tuples checked (see ``_check_output``) once the images are known, before any
    prediction."""
    from ._progress import predict_proba_batched
    from ._report import coverage_note, evaluation_html, evaluation_metrics, metrics_table

    paths, labels = _load_folder(data_dir)
    inputs = [(model_path, "the model file")] if model_path else []
    inputs += [(p, "an input image") for p in paths]
    for path, option, what, suffixes in outputs:
        if path:
            _check_output(path, option, inputs=inputs, writes=what, suffixes=suffixes)
    known = {str(c) for c in clf.classes_}
    unknown = sorted(set(map(str, labels)) - known)
    if unknown:
        raise CLIError(
            f"'{data_dir}' has class folders the model was not trained on: "
            f"{', '.join(unknown)} (model classes: {', '.join(sorted(known))})",
            EXIT_DATA,
        )
    # Folder names are strings; map them onto the model's classes (which may be integers).
    by_name = {str(c): c for c in clf.classes_}
    y_true = np.asarray([by_name[str(label)] for label in labels], dtype=object)
    try:
        proba = predict_proba_batched(clf, paths, desc="evaluating", disable=_no_bar(args))
    except _data_errors() as exc:
        raise CLIError(one_line(exc), EXIT_DATA) from exc
    classes = np.asarray(clf.classes_, dtype=object)
    metrics = evaluation_metrics(y_true, proba, classes)
    print(metrics_table(metrics))
    note = coverage_note(metrics)
    if note:
        _note(f"'{data_dir}': {note}")
    if report:
        page = evaluation_html(metrics, getattr(clf, "model_card_", None),
                               model_name=model_name, data_name=str(data_dir),
                               y_true=y_true, proba=proba)
        Path(report).parent.mkdir(parents=True, exist_ok=True)
        _write_text(report, page, "--report")
        print(f"report written to {report}")
    return metrics


def cmd_evaluate(args) -> int:
    _distinct_outputs((args.report, "--report"), (args.json, "--json"))
    clf = _load_model(args.model)
    metrics = _evaluate(clf, args.data_dir, args=args, report=args.report,
                        model_name=Path(args.model).name, model_path=args.model,
                        outputs=[(args.report, "--report", "the report", _REPORT_SUFFIXES),
                                 (args.json, "--json", "the metrics", _JSON_SUFFIXES)])
    if args.json:
        _write_text(args.json, json.dumps(metrics, indent=2), "--json")
    return EXIT_OK


# ----------------------------------------------------------------------------------------------
# predict


def _format_predictions(paths, top, fmt: str, sets=None, refer=None) -> str:
    """``sets`` and ``refer`` (``predict --coverage``): each image's prediction set and flag."""
    if fmt == "json":
        rows = [{"image": p, "predictions": [{"label": c, "probability": round(q, 6)}
                                             for c, q in row]} for p, row in zip(paths, top)]
        for row, members, flag in zip(rows, sets or (), refer if sets else (), strict=False):
            row["prediction_set"], row["refer"] = members, bool(flag)
        return json.dumps(rows, indent=2)
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        extra = ["prediction_set", "refer"] if sets else []
        writer.writerow(["image", "rank", "label", "probability", *extra])
        for i, (p, row) in enumerate(zip(paths, top)):
            tail = [";".join(sets[i]), str(bool(refer[i])).lower()] if sets else []
            for rank, (c, q) in enumerate(row, start=1):
                writer.writerow([p, rank, c, f"{q:.6f}", *tail])
        return buffer.getvalue().rstrip("\n")
    width = max([len("image"), *(len(p) for p in paths)])
    k = len(top[0]) if top else 0
    label_width = min(24, max([len(c) for row in top for c, _ in row] + [5]))
    cell = label_width + 7
    header = f"{'image':<{width}}  " + "  ".join(f"{'top ' + str(i + 1):<{cell}}"
                                                  for i in range(k))
    lines = [header + ("  prediction set" if sets else "")]
    for i, (p, row) in enumerate(zip(paths, top)):
        cells = "  ".join(f"{c[:label_width]:<{label_width}} {100 * q:5.1f}%" for c, q in row)
        if sets:
            cells += "  {" + ", ".join(sets[i]) + "}" + ("  uncertain: refer" if refer[i] else "")
        lines.append(f"{p:<{width}}  {cells}".rstrip())
    return "\n".join(line.rstrip() for line in lines)


def cmd_predict(args) -> int:
    from ._progress import predict_proba_batched
    from ._sets import sets_and_referrals

    clf = _load_model(args.model)
    paths = _image_paths(args.images)
    if args.output:
        _check_output(args.output, "-o/--output", writes="the predictions",
                      suffixes=_TABLE_SUFFIXES, inputs=[(args.model, "the model file"),
                              *((p, "an input image") for p in paths)])
    try:
        proba = predict_proba_batched(clf, paths, desc="predicting", disable=_no_bar(args))
    except _data_errors() as exc:
        raise CLIError(one_line(exc), EXIT_DATA) from exc
    top = _top_k(proba, clf.classes_, args.top_k)
    sets, refer = sets_and_referrals(clf, proba, args)
    text = _format_predictions(paths, top, args.format, sets, refer)
    if args.output:
        _write_text(args.output, text + "\n", "-o/--output")
        _say(args, f"predictions for {len(paths)} images written to {args.output}")
    else:
        print(text)
    return EXIT_OK


# ----------------------------------------------------------------------------------------------
# explain


def _write_overlay(clf, image: str, output: str, *, target=None, alpha=0.45, size=384):
    from PIL import Image

    from skinestimator.explain import explain, overlay_heatmap

    try:
        arrays = clf.to_image_array([image])
    except _data_errors() as exc:
        raise CLIError(one_line(exc), EXIT_DATA) from exc
    proba = np.asarray(clf.predict_proba(arrays))[0]
    if target is None:
        label = clf.classes_[int(np.argmax(proba))]
    else:
        matches = [c for c in clf.classes_ if str(c) == str(target)]
        if not matches:
            raise CLIError(f"--target {target!r} is not one of the model's classes: "
                           f"{', '.join(map(str, clf.classes_))}", EXIT_USAGE)
        label = matches[0]
    heatmap = explain(clf, arrays, target=label)[0]
    height, width = arrays.shape[1:3]
    scale = size / max(height, width)
    overlay = overlay_heatmap(arrays[0], heatmap, alpha=alpha,
                              size=(round(height * scale), round(width * scale)))
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        Image.fromarray(overlay).save(out)
    except (ValueError, KeyError) as exc:
        raise CLIError(f"cannot write '{output}': use a .png or .jpg file name "
                       f"({one_line(exc)})", EXIT_USAGE) from exc
    except OSError as exc:
        raise CLIError(f"cannot write '{output}': {exc.strerror or one_line(exc)}",
                       EXIT_USAGE) from exc
    index = list(clf.classes_).index(label)
    return label, float(proba[index])


def cmd_explain(args) -> int:
    clf = _load_model(args.model)
    if not Path(args.image).is_file():
        raise CLIError(f"image file not found: '{args.image}'", EXIT_DATA)
    _check_output(args.output, "-o/--output", writes="the overlay",
                  suffixes=_image_suffixes(),
                  inputs=[(args.model, "the model file"), (args.image, "the input image")])
    label, p = _write_overlay(clf, args.image, args.output, target=args.target,
                              alpha=args.alpha, size=args.size)
    print(f"{args.output}: Grad-CAM of class '{label}' (probability {p:.3f}) for {args.image}")
    return EXIT_OK


# ----------------------------------------------------------------------------------------------
# serve / export / info


def cmd_serve(args) -> int:
    import socket

    from skinestimator.web import serve

    clf = _load_model(args.model)
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            # As uvicorn does: connections of a previous run in TIME_WAIT must not block us.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((args.host, args.port))
    except OSError as exc:
        raise CLIError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}; "
                       "choose another --port or --host", EXIT_USAGE) from exc
    serve(clf, host=args.host, port=args.port, top_k=args.top_k,
          max_upload_bytes=max(1, round(args.max_upload_mb * 1_000_000)),
          max_image_pixels=int(args.max_megapixels * 1_000_000))
    return EXIT_OK


def cmd_export(args) -> int:
    from skinestimator.deploy import export_onnx

    clf = _load_model(args.model)
    _check_output(args.output, "-o/--output", writes="the ONNX file",
                  suffixes=_ONNX_SUFFIXES, inputs=[(args.model, "the model file")])
    try:
        export_onnx(clf, args.output)
    except ImportError as exc:
        raise CLIError(one_line(exc), EXIT_USAGE) from exc
    print(f"wrote {args.output}: input 'image' uint8 (batch, {clf.image_size_[0]}, "
          f"{clf.image_size_[1]}, 3) RGB, output 'probabilities' for classes "
          f"{', '.join(map(str, clf.classes_))}")
    return EXIT_OK


def cmd_info(args) -> int:
    from skinestimator.deploy import ModelFileError, read_model_card

    try:
        card = read_model_card(args.model)
    except ModelFileError as exc:
        raise CLIError(one_line(exc), EXIT_MODEL) from exc
    if args.json:
        print(json.dumps(card, indent=2))
        return EXIT_OK
    pre = card.get("preprocessing") or {}
    data = card.get("training_data") or {}
    counts = data.get("class_counts") or {}
    # Earlier versions' save_model accepted counts in other shapes (a list): show them as given.
    trained_on = (", ".join(f"{k} {v}" for k, v in counts.items()) if isinstance(counts, dict)
                  else str(counts)) or "unknown"
    if data.get("n_validation"):
        # Cards written since n_validation exists count the training part only.
        trained_on += f" (and {data['n_validation']} images held out for validation)"
    lines = [
        # The whole digest, so that it can be compared with the one the model's author gives
        # (it detects corruption, not deliberate tampering: see save_model).
        f"model file   {args.model} (no corruption found)",
        f"sha256       {card['sha256']}",
        f"classes      {', '.join(map(str, card['classes']))}",
        f"backbone     {card.get('backbone')}, input {pre.get('image_size')}",
        f"trained on   {trained_on}",
        "metrics      " + (", ".join(
            f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
            for k, v in (card.get("metrics") or {}).items()) or "none recorded"),
        f"epochs       {len(card.get('history') or [])}",
        f"created      {card.get('created')} with "
        + ", ".join(f"{k} {v}" for k, v in (card.get("versions") or {}).items()),
    ]
    if card.get("notes"):
        lines.append(f"notes        {card['notes']}")
    print("\n".join(lines))
    return EXIT_OK


# ----------------------------------------------------------------------------------------------
# demo


_DEMO_IMAGES_PER_CLASS = 5


def cmd_demo(args) -> int:
    from skinestimator import SkinLesionClassifier, make_synthetic_lesions, save_image_folder
    from skinestimator.deploy import load_model, save_model

    from ._progress import epoch_progress

    # Fewer images leave classes with one image or none (and then a test folder with classes
    # the model never saw): say so instead of failing half-way.
    least = _DEMO_IMAGES_PER_CLASS * args.n_classes
    if args.n_samples < least:
        raise CLIError(f"--n-samples {args.n_samples} is too few for {args.n_classes} classes: "
                       f"give at least {least} ({_DEMO_IMAGES_PER_CLASS} images per class)",
                       EXIT_USAGE)
    out = Path(args.output_dir)
    if out.exists() and not out.is_dir():
        raise CLIError(f"-o/--output-dir '{out}' is a file, not a folder; give a folder name "
                       "(it is created if missing)", EXIT_USAGE)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CLIError(f"cannot create -o/--output-dir '{out}': "
                       f"{exc.strerror or one_line(exc)}", EXIT_USAGE) from exc
    size = args.image_size
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="skinestimator-demo-") as tmp:
        _say(args, f"1/4 drawing {args.n_samples} synthetic lesion images "
                   f"({args.n_classes} classes, {size[0]}x{size[1]} px) in {tmp}")
        X, y = make_synthetic_lesions(n_samples=args.n_samples, image_size=size,
                                      n_classes=args.n_classes, random_state=args.seed)
        X_test, y_test = make_synthetic_lesions(
            n_samples=max(args.n_classes * 10, args.n_samples // 3), image_size=size,
            n_classes=args.n_classes, random_state=args.seed + 1)
        train_dir, test_dir = Path(tmp) / "train", Path(tmp) / "test"
        save_image_folder(X, y, train_dir)
        save_image_folder(X_test, y_test, test_dir)

        _say(args, f"2/4 training a small CNN (seed_cnn) for up to {args.epochs} epochs "
                   "on the image files")
        paths, labels = _load_folder(str(train_dir))
        clf = SkinLesionClassifier(
            backbone="seed_cnn", image_size=size, max_epochs=args.epochs, batch_size=32,
            lr=3e-3, patience=None, random_state=args.seed, num_workers=0,
            callbacks=[epoch_progress(args.epochs, disable=_no_bar(args))],
        )
        clf.fit(paths, labels)
        clf.set_params(callbacks=None)
        model_path = out / "demo-model.skin"
        classes, counts = np.unique(labels, return_counts=True)
        save_model(clf, model_path, training_data={
            "class_counts": {str(c): int(n) for c, n in zip(classes, counts)},
            "n_images": int(len(labels)),
            "source": "make_synthetic_lesions (synthetic, not real lesions)",
        }, notes="Demo model trained on synthetic images by `skinestimator demo`.")

        _say(args, "3/4 evaluating the saved model on a separate synthetic test folder")
        clf = load_model(model_path)  # evaluate what was written, not what is in memory
        report = out / "demo-report.html"
        metrics = _evaluate(clf, str(test_dir), args=args, report=str(report),
                            model_name=model_path.name)

        _say(args, "4/4 explaining one test image with Grad-CAM")
        overlay = out / "demo-overlay.png"
        test_paths, _ = _load_folder(str(test_dir))
        label, p = _write_overlay(clf, test_paths[0], str(overlay))
    elapsed = time.perf_counter() - started
    print(
        f"demo finished in {elapsed:.0f} s: balanced accuracy {metrics['balanced_accuracy']:.3f}"
        f" on {metrics['n_images']} held-out synthetic images\n"
        f"  model   {model_path}\n  report  {report}\n  overlay {overlay} ('{label}', p={p:.2f})\n"
        f"next: skinestimator serve {model_path}"
    )
    return EXIT_OK


# ----------------------------------------------------------------------------------------------
# parser


class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Appends an option's default once, and only when it says something.

    Help that already states its default ("default: ...") keeps its own wording; defaults of
    None (meaning "not given") and of on/off flags are not shown.
    """

    def _get_help_string(self, action):
        text = action.help or ""
        if (not action.option_strings or "%(default)" in text or "default:" in text
                or action.default is None or action.default is argparse.SUPPRESS
                or isinstance(action.default, bool)):
            return text
        return f"{text} (default: %(default)s)"


class _Parser(argparse.ArgumentParser):
    """Reports a bad command line in one line, as every other error (docs/command_line.md).

    argparse's own report starts with the whole usage block, which buries the one line that
    says what is wrong; the hint names the command's --help instead.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {' '.join(message.split())} "
                              f"(see '{self.prog} --help')\n")


_MODEL_HELP = "model file written by 'skinestimator train' (e.g. model.skin)"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``skinestimator`` command."""
    from skinestimator import __version__

    parser = _Parser(
        prog=PROG,
        description="Train, evaluate, explain and serve skin-lesion image classifiers. "
                    "Research tool, not a diagnosis.",
        epilog="Exit codes: 0 success, 1 internal error, 2 invalid command line or option, "
               "3 problem with the images or data folder, 4 problem with the model file, "
               "130 interrupted. Run 'skinestimator COMMAND --help' for a command's options.",
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback when something fails")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name, help_text, description, func):
        p = sub.add_parser(name, help=help_text, description=description,
                           formatter_class=_Formatter)
        p.add_argument("-q", "--quiet", action="store_true",
                       help="no progress bars or status messages")
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show the full traceback when something fails")
        p.set_defaults(func=func)
        return p

    p = add("train", "train a model on a class-per-folder image tree",
            "Train a classifier on DATA_DIR/<class>/<image> and save it as one safe model "
            "file (safetensors weights + JSON model card).\n\nexample:\n  skinestimator train "
            "ham10000/images -o ham.skin --metadata HAM10000_metadata.csv "
            "--group-column lesion_id", cmd_train)
    p.add_argument("data_dir", metavar="DATA_DIR", help="folder with one sub-folder per class")
    p.add_argument("-o", "--output", required=True, metavar="MODEL",
                   help="model file to write (e.g. model.skin)")
    add_grouping_options(p, "used to hold out whole groups (lesions/patients) for validation")
    p.add_argument("--backbone", default="efficientnet_lite0",
                   help="efficientnet_lite0 (ImageNet weights), efficientnet_lite1 or "
                        "efficientnet_lite2 (larger; the 'weights' extra), seed_cnn (small, "
                        "from scratch) or a timm model name")
    p.add_argument("--image-size", type=_image_size, default=None, metavar="SIZE",
                   help="network input, SIZE or HEIGHTxWIDTH (default: the images' own size, "
                        "shorter side at most 224)")
    p.add_argument("--epochs", type=argparse_type("max_epochs", int),
                   default=15, help="maximum epochs")
    p.add_argument("--batch-size", type=argparse_type("batch_size", int),
                   default=32,
                   help="images per training step")
    p.add_argument("--lr", type=argparse_type("lr", float),
                   default=1e-3, help="peak learning rate")
    p.add_argument("--finetune", type=argparse_type("finetune", _stages),
                   default="all",
                   help="'all', 'head' (frozen backbone) or the number of last stages to train")
    p.add_argument("--no-pretrained", dest="pretrained", action="store_false", default=None,
                   help="start from random weights (default: the backbone's pretrained "
                        "weights where it has them)")
    p.add_argument("--class-weight", choices=("balanced", "none"), default=None,
                   help="'balanced' weighs classes inversely to their frequency in the loss "
                        "(for balanced accuracy), 'none' optimizes plain accuracy (default: "
                        "the classifier's default)")
    p.add_argument("--logit-adjustment", type=argparse_type("logit_adjustment", float),
                   default=None, metavar="TAU",
                   help="logit-adjusted loss: add TAU x log(class share) to the logits in "
                        "training, so that rare classes get wider margins (1: treat the "
                        "classes evenly, 0: off; default: the classifier's default)")
    p.add_argument("--ema-decay", type=argparse_type("ema_decay", float),
                   default=None, metavar="DECAY",
                   help="keep a moving average of the weights with this decay per step (e.g. "
                        "0.998) and fit that (default: the last weights)")
    p.add_argument("--color-constancy", type=argparse_type("color_constancy", float),
                   default=None, metavar="POWER",
                   help="shades-of-grey colour constancy inside the network: rescale each "
                        "image's colour channels so that its light, the POWER-mean of each "
                        "channel, becomes grey (6 is usual; default: off)")
    p.add_argument("--validation-fraction", type=argparse_type("validation_fraction", float),
                   default=0.1,
                   help="share held out to score each epoch (0: none); with --metadata whole "
                        "groups are held out")
    p.add_argument("--patience", type=_non_negative_int, default=5,
                   help="stop after this many epochs without a better validation score and "
                        "keep the best epoch (0: no early stopping, train all --epochs)")
    p.add_argument("--no-augment", action="store_true", help="no training augmentation")
    p.add_argument("--tta", action="store_true", help="test-time flip augmentation")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--device", type=_device, default="auto",
                   help="auto, cpu, cuda, cuda:N, mps or another torch device")
    p.add_argument("--num-workers", type=int, default=None, metavar="N",
                   help="image-decoding worker processes (default: automatic)")
    p.add_argument("--notes", default=None, metavar="TEXT",
                   help="free text stored in the model card")
    p.add_argument("--checkpoint-dir", default=None, metavar="DIR",
                   help="save every finished epoch in DIR; rerun the same command after a "
                        "kill or Ctrl+C to resume from the last one")

    from ._tune import add_tune_parser

    add_tune_parser(add)

    p = add("evaluate", "score a model on a labelled class-per-folder tree",
            "Score MODEL on DATA_DIR/<class>/<image>: accuracy, balanced accuracy, per-class "
            "precision/recall/AUC and the confusion matrix; optionally an HTML report.",
            cmd_evaluate)
    p.add_argument("model", metavar="MODEL", help=_MODEL_HELP)
    p.add_argument("data_dir", metavar="DATA_DIR",
                   help="folder with one sub-folder per class, classes the model knows")
    p.add_argument("--report", metavar="HTML", help="write a self-contained HTML report")
    p.add_argument("--json", metavar="FILE", help="write the metrics as JSON")

    p = add("predict", "top-k conditions for images or folders of images",
            "Predict the most probable conditions for each image (folders are searched "
            "recursively).", cmd_predict)
    p.add_argument("model", metavar="MODEL", help=_MODEL_HELP)
    p.add_argument("images", metavar="IMAGE_OR_DIR", nargs="+",
                   help="image files and folders of images")
    p.add_argument("--top-k", type=_positive_int, default=3, metavar="K",
                   help="how many of the most probable classes to show per image")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table",
                   help="output format")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    from ._sets import add_coverage_options

    add_coverage_options(p, unit_interval=_unit_interval, positive_int=_positive_int)

    p = add("explain", "Grad-CAM heatmap overlay for one image",
            "Write a Grad-CAM overlay showing which regions of IMAGE supported the predicted "
            "class (or --target).", cmd_explain)
    p.add_argument("model", metavar="MODEL", help=_MODEL_HELP)
    p.add_argument("image", metavar="IMAGE", help="image file to explain")
    p.add_argument("-o", "--output", required=True, metavar="PNG", help="overlay image to write")
    p.add_argument("--target", default=None, metavar="CLASS",
                   help="class to explain (default: the predicted one)")
    p.add_argument("--alpha", type=_unit_interval, default=0.45,
                   help="heatmap opacity, 0 (image only) to 1 (heatmap only)")
    p.add_argument("--size", type=_positive_int, default=384,
                   help="longest side of the overlay in pixels")

    p = add("serve", "local web page: upload a photo, see predictions and Grad-CAM",
            "Serve a web page for MODEL. It binds 127.0.0.1 (this computer only) unless "
            "--host says otherwise. Stop with Ctrl+C.", cmd_serve)
    p.add_argument("model", metavar="MODEL", help=_MODEL_HELP)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (0.0.0.0: every network interface; there is no login)")
    p.add_argument("--port", type=_port, default=8000, help="TCP port, 1 to 65535")
    p.add_argument("--top-k", type=_positive_int, default=3, metavar="K",
                   help="how many of the most probable classes the page shows")
    p.add_argument("--max-upload-mb", type=_positive_float, default=10.0, metavar="MB",
                   help="largest accepted upload in megabytes (1 MB = 1,000,000 bytes)")
    p.add_argument("--max-megapixels", type=_positive_float, default=50.0, metavar="MP",
                   help="largest accepted image in megapixels (width × height; larger uploads "
                        "are refused before decoding)")

    p = add("export", "export a model to ONNX for mobile / edge runtimes",
            "Write MODEL as an ONNX file: input 'image' uint8 (batch, H, W, 3) RGB at the "
            "model's size, output 'probabilities'.", cmd_export)
    p.add_argument("model", metavar="MODEL", help=_MODEL_HELP)
    p.add_argument("-o", "--output", required=True, metavar="ONNX",
                   help="ONNX file to write (e.g. model.onnx)")

    p = add("info", "show a model file's model card (and check its integrity)",
            "Verify MODEL's SHA-256 and print its model card.", cmd_info)
    p.add_argument("model", metavar="MODEL", help=_MODEL_HELP)
    p.add_argument("--json", action="store_true", help="print the whole card as JSON")

    p = add("demo", "end-to-end run on synthetic images, no data needed",
            "Draw a small synthetic lesion data set in a temporary folder, train a small CNN on "
            "it, save, evaluate and explain it, and write a report (under a minute on a "
            "two-core laptop CPU).", cmd_demo)
    p.add_argument("-o", "--output-dir", default="skinestimator-demo", metavar="DIR",
                   help="where the model, report and overlay go")
    p.add_argument("--n-samples", type=_positive_int, default=200, metavar="N",
                   help=f"synthetic training images, at least {_DEMO_IMAGES_PER_CLASS} per "
                        "class")
    p.add_argument("--n-classes", type=int, choices=range(2, 7), default=4, metavar="{2..6}",
                   help="number of synthetic lesion classes")
    p.add_argument("--image-size", type=_image_size, default=(40, 40), metavar="SIZE",
                   help="image size, SIZE or HEIGHTxWIDTH (default: 40)")
    p.add_argument("--epochs", type=_positive_int, default=8, help="training epochs")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``skinestimator`` command line; return the exit code.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name; ``sys.argv[1:]`` when omitted.

    Returns
    -------
    code : int
        0 success, 1 internal error, 2 invalid command line or option, 3 problem with the
        images or data folder, 4 problem with the model file, 130 interrupted.

    Examples
    --------
    >>> from skinestimator.cli import main
    >>> main(["predict", "model.skin", "photos/", "--format", "csv"])  # doctest: +SKIP
    0
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    name = f"{PROG} {args.command}"
    from skinestimator import keep_freed_memory

    # A command is a process of its own, so the process-wide allocator setting that about
    # doubles CPU training and inference speed is ours to choose (see keep_freed_memory).
    keep_freed_memory()
    try:
        return int(args.func(args) or EXIT_OK)
    except CLIError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"{name}: error: {exc.message}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `skinestimator predict ... | head` closes our stdout early: not an error.
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the final flush
        except OSError:
            pass
        return EXIT_OK
    except MemoryError:
        print(f"{name}: error: out of memory; try a smaller --batch-size or --image-size",
              file=sys.stderr)
        return EXIT_INTERNAL
    except Exception as exc:  # noqa: BLE001 - last resort: one line, traceback on --debug
        if args.debug:
            traceback.print_exc()
        print(f"{name}: internal error: {type(exc).__name__}: {one_line(exc)} "
              "(run with --debug for the traceback and please report it)", file=sys.stderr)
        return EXIT_INTERNAL
