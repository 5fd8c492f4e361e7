"""``skinestimator tune``: cross-validated Optuna trials, shared by every worker started with the
same ``--storage`` and ``--study-name``; the best trial refit into a model file."""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import numpy as np

from .._parameters import argparse_type
from ._errors import EXIT_DATA, EXIT_OK, EXIT_USAGE, CLIError, one_line

__all__ = ["add_tune_parser", "cmd_tune"]

_EXAMPLE = """\
examples:
  # one machine, one worker, the study in a SQLite file
  skinestimator tune lesions/ --storage tune.db --n-trials 20 -o best.skin
  # many machines, one study: start the same command on each
  skinestimator tune ham10000/ --storage postgresql://tuner@db-host/studies \\
      --study-name ham-lite0 --n-trials 10 -o best.skin"""


def add_tune_parser(add) -> None:
    """Register ``tune`` through ``add(name, help, description, function)`` (cli/_main.py)."""
    from ._main import _device as device
    from ._main import _image_size as image_size
    from ._main import _positive_int as positive_int
    from ._main import add_grouping_options

    p = add("tune", "search hyperparameters with Optuna, shared by many workers",
            "Run --n-trials Optuna trials, each a --cv fold cross-validation of a classifier "
            "on DATA, in the study --study-name of --storage. Commands started with the same "
            "storage and study name, on one machine or many, share the study: each runs its "
            "trials, pruning compares them all, and a worker's death fails and re-queues its "
            "running trial. With -o the best trial of the study is refit on all of DATA and "
            "saved when this command's trials are done.\n\n" + _EXAMPLE, cmd_tune)
    p.add_argument("data_dir", metavar="DATA",
                   help="folder with one sub-folder per class, or a HAM10000 folder "
                        "(HAM10000_metadata.csv beside images/<dx>/), grouped by lesion")
    p.add_argument("--storage", default=None, metavar="URL",
                   help="where the study lives: postgresql://user@host/db, mysql://..., "
                        "sqlite:///file.db (or a plain path), journal:FILE for a shared disk "
                        "(default: in memory, this command alone)")
    p.add_argument("--study-name", default="skinestimator-search", metavar="NAME",
                   help="study to create or join")
    p.add_argument("--n-trials", type=positive_int, default=10, metavar="N",
                   help="trials this worker runs (the study holds those of all workers)")
    p.add_argument("--timeout", type=float, default=None, metavar="S",
                   help="start no trial after S seconds")
    p.add_argument("--cv", type=positive_int, default=3, metavar="K",
                   help="cross-validation folds per trial (grouped by lesion when known)")
    p.add_argument("--scoring", default="balanced_accuracy",
                   help="scikit-learn scorer name for the folds")
    p.add_argument("--space", metavar="FILE.json",
                   help="search space: {parameter: [choices] | {\"low\": a, \"high\": b, "
                        "\"log\": true} | an Optuna distribution as JSON} (default: learning "
                        "rate, weight decay, batch size, augmentation, depth, image size)")
    p.add_argument("-o", "--output", metavar="MODEL",
                   help="refit the study's best trial on all of DATA and save it here")
    add_grouping_options(p, "so that no group is split between the folds of a trial")
    p.add_argument("--backbone", default="efficientnet_lite0",
                   help="efficientnet_lite0, seed_cnn or a timm model name")
    p.add_argument("--image-size", type=image_size, default=None, metavar="SIZE",
                   help="network input, SIZE or HEIGHTxWIDTH (unless the space tunes it)")
    p.add_argument("--epochs", type=argparse_type("max_epochs", int), default=10,
                   help="maximum epochs of each fit")
    p.add_argument("--batch-size", type=argparse_type("batch_size", int), default=32,
                   help="images per step (unless the space tunes it)")
    p.add_argument("--validation-fraction", type=argparse_type("validation_fraction", float),
                   default=0.2, help="inner hold-out of each fit, scored each epoch for "
                                     "early stopping and pruning")
    p.add_argument("--patience", type=int, default=3,
                   help="early-stopping patience in epochs (0: train all --epochs)")
    p.add_argument("--heartbeat", type=positive_int, default=60, metavar="S",
                   help="a database records each running trial's heartbeat every S seconds; "
                        "a trial silent for 2 S is failed and re-queued")
    p.add_argument("--threads", type=positive_int, default=None, metavar="N",
                   help="torch threads of this worker; with several workers on one machine, "
                        "give each its share of the cores (oversubscribed cores train about "
                        "10x slower; see docs/tuning_many_machines.md)")
    p.add_argument("--seed", type=int, default=0, help="random seed of each fit")
    p.add_argument("--device", type=device, default="auto",
                   help="auto, cpu, cuda, cuda:N, mps or another torch device")
    p.add_argument("--num-workers", type=int, default=None, metavar="N",
                   help="image-decoding worker processes (default: automatic)")


def _data(args):
    """Paths, labels, groups (or None) and what the groups are."""
    from ._main import _grouping, _load_folder

    folder = Path(args.data_dir)
    if (folder / "HAM10000_metadata.csv").is_file():
        from skinestimator import load_ham10000

        try:
            paths, labels, groups = load_ham10000(folder)
        except (FileNotFoundError, ValueError) as exc:
            raise CLIError(one_line(exc), EXIT_DATA) from exc
        return np.asarray(paths), np.asarray(labels), np.asarray(groups), "lesion_id"
    paths, labels = _load_folder(args.data_dir)
    if len(np.unique(labels)) < 2:
        raise CLIError(f"'{args.data_dir}' has one class folder; a classifier needs at least "
                       "two", EXIT_DATA)
    if args.metadata:
        return paths, labels, _grouping(paths, args.metadata, args.group_column,
                                        args.id_column), args.group_column
    return paths, labels, None, None


def _distribution(name: str, spec, source: str):
    from optuna.distributions import FloatDistribution, IntDistribution, json_to_distribution

    try:
        if isinstance(spec, list) and spec:
            return [tuple(v) if isinstance(v, list) else v for v in spec]
        if isinstance(spec, dict) and "name" in spec:
            return json_to_distribution(json.dumps(spec))
        if isinstance(spec, dict) and {"low", "high"} <= set(spec):
            options = {k: spec[k] for k in ("log", "step") if k in spec}
            numbers = (spec["low"], spec["high"], spec.get("step") or 1)
            if all(isinstance(v, int) and not isinstance(v, bool) for v in numbers):
                return IntDistribution(spec["low"], spec["high"], **options)
            return FloatDistribution(float(spec["low"]), float(spec["high"]), **options)
    except (TypeError, ValueError, KeyError) as exc:
        raise CLIError(f"--space '{source}': '{name}': {one_line(exc)}", EXIT_USAGE) from exc
    raise CLIError(
        f"--space '{source}': '{name}' must be a non-empty list of choices, "
        f'{{"low": ..., "high": ..., "log": true|false}} or an Optuna distribution as JSON '
        f"(e.g. {{\"name\": \"FloatDistribution\", \"attributes\": {{...}}}}), got {spec!r}",
        EXIT_USAGE)


def _space(path: str, estimator) -> dict:
    try:
        with open(path, encoding="utf-8") as file:
            entries = json.load(file)
    except FileNotFoundError:
        raise CLIError(f"--space file not found: '{path}'", EXIT_USAGE) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CLIError(f"--space '{path}' is not a readable JSON file: {one_line(exc)}",
                       EXIT_USAGE) from exc
    if not isinstance(entries, dict) or not entries:
        raise CLIError(f"--space '{path}' must hold a non-empty JSON object of parameter "
                       "names", EXIT_USAGE)
    known = estimator.get_params()
    unknown = sorted(set(entries) - set(known))
    if unknown:
        raise CLIError(f"--space '{path}' names {unknown}, which are not parameters of "
                       f"SkinLesionClassifier (e.g. lr, weight_decay, batch_size, augment, "
                       "max_epochs, image_size)", EXIT_USAGE)
    return {name: _distribution(name, spec, path) for name, spec in entries.items()}


def _params_text(params: dict) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in sorted(params.items()))


def _trial_logger(args, started: float):
    from ._main import _say

    def log(study, trial) -> None:
        state = trial.state.name.lower()
        value = f" {args.scoring} {trial.value:.4f}" if trial.value is not None else ""
        _say(args, f"trial {trial.number} {state}{value}  {_params_text(trial.params)}  "
                   f"(worker {trial.user_attrs.get('worker', '?')}, "
                   f"{time.perf_counter() - started:.0f} s)")

    return log


def _best_table(study, scoring: str, k: int = 5) -> str:
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    states = {state: sum(t.state == state for t in trials) for state in TrialState}
    workers = {t.user_attrs.get("worker") for t in trials} - {None}
    best = sorted((t for t in trials if t.state == TrialState.COMPLETE),
                  key=lambda t: -t.value)[:k]
    lines = [f"study '{study.study_name}': {len(trials)} trials ("
             + ", ".join(f"{n} {s.name.lower()}" for s, n in states.items() if n)
             + f") from {len(workers)} worker(s); best {len(best)}:",
             f"{'trial':>6}  {scoring:>18}  {'worker':<24}  params"]
    lines += [f"{t.number:>6}  {t.value:>18.4f}  {t.user_attrs.get('worker', '?'):<24}  "
              f"{_params_text(t.params)}" for t in best]
    return "\n".join(lines)


def _classifier(args):
    from skinestimator import SkinLesionClassifier

    params = dict(backbone=args.backbone, image_size=args.image_size, max_epochs=args.epochs,
                  batch_size=args.batch_size, validation_fraction=args.validation_fraction,
                  patience=args.patience or None, random_state=args.seed, device=args.device)
    if args.num_workers is not None:
        params["num_workers"] = args.num_workers
    return SkinLesionClassifier(**params)


def cmd_tune(args) -> int:
    from skinestimator.deploy import save_model
    from skinestimator.model_selection import OptunaLesionSearchCV
    from skinestimator.model_selection._storage import redacted

    from ._main import _check_output, _data_errors, _say

    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    paths, labels, groups, grouped_by = _data(args)
    estimator = _classifier(args)
    space = _space(args.space, estimator) if args.space else None
    output = None
    if args.output:
        output = _check_output(args.output, "-o/--output",
                               inputs=[(p, "an input image") for p in paths],
                               writes="the model", model=True)
    classes, counts = np.unique(labels, return_counts=True)
    _say(args, f"{len(paths)} images in {len(classes)} classes"
               + (f", {len(np.unique(groups))} '{grouped_by}' groups" if grouped_by else "")
               + f"; study '{args.study_name}' in {redacted(args.storage or 'memory')}")
    search = OptunaLesionSearchCV(
        estimator, space, default_space=space is None, n_trials=args.n_trials,
        timeout=args.timeout, cv=args.cv, scoring=args.scoring, refit=output is not None,
        storage=args.storage, study_name=args.study_name, heartbeat_interval=args.heartbeat,
        callbacks=[_trial_logger(args, time.perf_counter())])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            search.fit(paths, labels, groups=groups)
    except _data_errors() as exc:
        raise CLIError(one_line(exc), EXIT_DATA) from exc
    except (ValueError, TypeError, RuntimeError) as exc:
        raise CLIError(f"cannot tune: {one_line(exc)}", EXIT_USAGE) from exc
    print(_best_table(search.study_, args.scoring))
    if output is not None:
        best = search.best_trial_
        save_model(search.best_estimator_, output, metrics={
            f"cv_{args.scoring}": float(best.value),
            "split": f"{search.n_splits_}-fold cross-validation"
                     + (f" grouped by '{grouped_by}'" if grouped_by else "")
                     + f", trial {best.number} of study '{args.study_name}'",
        }, training_data={
            "class_counts": {str(c): int(n) for c, n in zip(classes, counts, strict=True)},
            "n_images": int(len(paths)), "folder": Path(args.data_dir).name,
            **({"grouped_by": grouped_by} if grouped_by else {}),
        })
        print(f"saved {output}: trial {best.number}'s parameters refit on all {len(paths)} "
              f"images ({_params_text(search.best_params_)})")
    return EXIT_OK

