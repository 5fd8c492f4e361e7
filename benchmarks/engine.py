"""The training engine: cost of a checkpoint per epoch, resume correctness, bf16 against float32,
and data-parallel training on two processes against one.

EfficientNet-Lite0 on HAM10000 files (150x200, a lesion-grouped split); synthetic images when
the data are absent. Everything runs in one process, interleaved, and is reported as ratios,
because these machines are noisy; the data-parallel part runs the same fit as one process and
under ``torchrun --standalone --nproc_per_node=2``, one after the other. Usage::

    python benchmarks/engine.py                 # about 15 minutes on 2 CPU cores
    python benchmarks/engine.py --data-parallel # about 6 minutes
    python benchmarks/engine.py --quick         # a smoke run, does not touch the docs
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from _common import DATA_DIR, command_line, machine_summary, markdown_table, write_section
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import GroupShuffleSplit
from skorch.callbacks import Callback

from skinestimator import (
    SkinLesionClassifier,
    keep_freed_memory,
    load_ham10000,
    make_synthetic_lesions,
    save_image_folder,
)
from skinestimator.training._checkpoint import _atomic_save

# The training part of one 5-fold split of HAM10000 (the epochs docs/benchmarks.md measures).
HAM10000_TRAIN_IMAGES = 8012


def data(n_train: int, n_test: int, folder: str):
    ham = DATA_DIR / "ham10000"
    if (ham / "HAM10000_metadata.csv").is_file():
        paths, labels, groups = load_ham10000(ham)
        split = GroupShuffleSplit(n_splits=1, train_size=n_train, test_size=n_test,
                                  random_state=0)
        train, test = next(split.split(paths, labels, groups))
        # The files are listed class by class: mix them, so that any prefix has every class.
        rng = np.random.default_rng(0)
        train, test = rng.permutation(train), rng.permutation(test)
        return "HAM10000", paths[train], labels[train], paths[test], labels[test]
    X, y = make_synthetic_lesions(n_samples=n_train + n_test, image_size=(150, 200),
                                  random_state=0)
    paths = np.asarray(save_image_folder(X, y, folder))
    return "synthetic", paths[:n_train], y[:n_train], paths[n_train:], y[n_train:]


def timed_fit(params, X, y, **extra):
    clf = SkinLesionClassifier(**params, **extra)
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        clf.fit(X, y)
    return clf, time.perf_counter() - started


def checkpoint_cost(params, X, y, repeats: int) -> dict:
    """Seconds per epoch (history) and per checkpoint save of the fitted network."""
    with tempfile.TemporaryDirectory() as folder:
        clf, wall_with = timed_fit(params, X, y, checkpoint_dir=folder)
        net = clf.net_
        checkpoint = dict(net.callbacks_)["checkpoint"]
        saves = []
        for _ in range(repeats):
            started = time.perf_counter()
            _atomic_save(checkpoint._state(net, finished=False), checkpoint.path)
            saves.append(time.perf_counter() - started)
        size = checkpoint.path.stat().st_size
    _, wall_without = timed_fit(params, X, y)
    epoch = float(np.mean([row["dur"] for row in clf.history_]))
    per_image = epoch / len(X)
    save = float(np.median(saves))
    return {"images": len(X), "epoch_s": epoch, "save_s": save, "size_mb": size / 2**20,
            "ham_epoch_s": per_image * HAM10000_TRAIN_IMAGES,
            "overhead_pct": 100 * save / (per_image * HAM10000_TRAIN_IMAGES),
            "fit_ratio": wall_with / wall_without}


class CrashAtEpoch(Callback):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, net, **kwargs):
        if len(net.history) == self.epoch:
            raise RuntimeError("simulated crash")


def resume_difference(params, X, y, X_test) -> float:
    whole, _ = timed_fit(params, X, y)
    with tempfile.TemporaryDirectory() as folder:
        try:
            timed_fit(params, X, y, checkpoint_dir=folder, callbacks=[CrashAtEpoch(1)])
        except RuntimeError:
            pass
        resumed, _ = timed_fit(params, X, y, checkpoint_dir=folder)
    return float(np.abs(whole.predict_proba(X_test) - resumed.predict_proba(X_test)).max())


def precision_row(precision, params, X, y, X_test, y_test) -> dict:
    clf, wall = timed_fit(params, X, y, precision=precision)
    started = time.perf_counter()
    predicted = clf.predict(X_test)
    predict_s = time.perf_counter() - started
    epoch = float(np.mean([row["dur"] for row in clf.history_]))
    return {"precision": precision, "train_img_s": len(X) / epoch,
            "predict_img_s": len(X_test) / predict_s,
            "balanced_accuracy": balanced_accuracy_score(y_test, predicted), "fit_s": wall}


def data_parallel_worker(output: str, quick: bool, seed: int) -> None:
    """One fit, as one process or as a rank of torchrun; rank 0 saves what it measured."""
    n_train, n_test, epochs = (96, 48, 2) if quick else (1100, 400, 3)
    params = dict(max_epochs=epochs, random_state=seed, validation_fraction=None, patience=None,
                  batch_size=32)
    with tempfile.TemporaryDirectory() as folder:
        _, X, y, X_test, y_test = data(n_train, n_test, folder)
        clf, wall = timed_fit(params, X, y)
        if os.environ.get("RANK", "0") == "0":
            np.savez(output, proba=clf.predict_proba(X_test), y_test=np.asarray(y_test, str),
                     classes=np.asarray(clf.classes_, str), wall=wall,
                     epoch_s=[row["dur"] for row in clf.history_])


def data_parallel(quick: bool) -> None:
    """The same fit in one process and in two under torchrun: speed, accuracy, agreement."""
    runs = {}
    with tempfile.TemporaryDirectory() as folder:
        # The one-process fit of another seed says how far two equally good models differ.
        for processes, seed in ((1, 0), (2, 0), (1, 1)):
            output = str(Path(folder) / f"{processes}-{seed}.npz")
            launcher = ([sys.executable] if processes == 1 else
                        [sys.executable, "-m", "torch.distributed.run", "--standalone",
                         f"--nproc_per_node={processes}"])
            command = launcher + [__file__, "--worker", output, "--seed", str(seed)]
            subprocess.run(command + ["--quick"] * quick, check=True,
                           env={**os.environ, "PYTHONWARNINGS": "ignore"})
            runs[processes, seed] = dict(np.load(output, allow_pickle=False))
    n_train = 96 if quick else 1100
    rows = []
    reference = runs[1, 0]
    for (processes, seed), run in runs.items():
        predicted = run["classes"][run["proba"].argmax(1)]
        rows.append({
            "processes": processes, "seed": seed,
            "train_img_s": n_train / float(np.mean(run["epoch_s"])),
            "fit_s": float(run["wall"]),
            "balanced_accuracy": balanced_accuracy_score(run["y_test"], predicted),
            "max_proba_diff": float(np.abs(run["proba"] - reference["proba"]).max()),
            "same_prediction": float((run["proba"].argmax(1)
                                      == reference["proba"].argmax(1)).mean()),
        })
        print(rows[-1], flush=True)
    body = "\n".join([
        f"`{command_line()}` — {machine_summary()}; {n_train} training images, "
        f"EfficientNet-Lite0, {3 if not quick else 2} epochs, global batch 32 (2 processes: 16 "
        "each, gloo, one thread each as torchrun sets it, against one process of 2 threads).",
        "",
        markdown_table(rows, ["processes", "seed", "train_img_s", "fit_s", "balanced_accuracy",
                              "max_proba_diff", "same_prediction"]),
        "",
        "`max_proba_diff` and `same_prediction`: against the one-process model of seed 0, on "
        "the test images; the one-process model of seed 1 shows how far two equally good "
        "models differ. One process and two are not the same computation: each rank's "
        "batch-norm statistics come from its 16 images, not 32, and each rank draws its own "
        "augmentations.",
    ])
    print(body)
    if not quick:
        write_section("engine-data-parallel", body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--data-parallel", action="store_true",
                        help="compare one process with two under torchrun")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    keep_freed_memory()
    if args.worker:
        data_parallel_worker(args.worker, args.quick, args.seed)
        return
    if args.data_parallel:
        data_parallel(args.quick)
        return
    n_train, n_test, epochs = (96, 48, 2) if args.quick else (1100, 400, 3)
    params = dict(max_epochs=epochs, random_state=0, validation_fraction=None, patience=None)
    with tempfile.TemporaryDirectory() as folder:
        source, X, y, X_test, y_test = data(n_train, n_test, folder)
        header = (f"{machine_summary()}; {source}: {len(X)} training and {len(X_test)} test "
                  f"images (lesion-grouped), EfficientNet-Lite0, {epochs} epochs, batch 32")
        print(header, flush=True)
        timed_fit(dict(params, max_epochs=1), X[:64], y[:64])  # first-fit costs, not timed
        cost = checkpoint_cost(params, X, y, repeats=5)
        print(cost, flush=True)
        resume = resume_difference(dict(params, max_epochs=2), X[:256], y[:256], X_test[:64])
        print(f"resume: max |predict_proba difference| = {resume:.3g}", flush=True)
        rows = []
        for precision in ("32", "bf16"):
            rows.append(precision_row(precision, params, X, y, X_test, y_test))
            print(rows[-1], flush=True)
    with open("/proc/cpuinfo") as info:
        cpu_flags = info.read()
    native_bf16 = "avx512_bf16" in cpu_flags or "amx_bf16" in cpu_flags
    body = "\n".join([
        f"`{command_line()}` — {header}.", "",
        "Checkpoint per epoch (one atomic file: weights, optimizer, schedule, history, random "
        "states):", "",
        markdown_table([cost], ["images", "epoch_s", "save_s", "size_mb", "ham_epoch_s",
                                "overhead_pct", "fit_ratio"]), "",
        f"`ham_epoch_s`: this run's seconds per image × {HAM10000_TRAIN_IMAGES} (a HAM10000 "
        "training fold); `overhead_pct`: one save against that epoch (target ≤ 3 %); "
        "`fit_ratio`: the whole fit's wall time with checkpoints against without.", "",
        f"Resume after a crash in epoch 2 (256 images, 2 epochs): largest difference of "
        f"`predict_proba` against the uninterrupted fit: {resume:.3g}.", "",
        f"bf16 against float32 (this CPU {'has' if native_bf16 else 'lacks'} native bfloat16 "
        "instructions, AVX-512 BF16 / AMX):", "",
        markdown_table(rows, ["precision", "train_img_s", "predict_img_s", "balanced_accuracy",
                              "fit_s"]),
    ])
    print(body)
    if not args.quick:
        write_section("engine", body)


if __name__ == "__main__":
    main()
