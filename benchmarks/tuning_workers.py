"""Tuning throughput: trials per hour of `skinestimator tune` with one worker and with two workers
sharing one study, on this CPU.

DermaMNIST's 28 px training images (real data; synthetic images when absent) written as a class
folder, the from-scratch seed CNN, 3-fold CV, 3 epochs per fit, the learning rate and weight
decay tuned. The study lives in a real PostgreSQL server started for the run in a temporary
folder (tests/_postgres.py), or in a SQLite file when no PostgreSQL binaries are installed. The
runs go one after the other in one invocation, so their ratio is what to read. Usage::

    python benchmarks/tuning_workers.py            # about 5 minutes on 2 CPU cores
    python benchmarks/tuning_workers.py --quick    # a smoke run, does not touch the docs
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import optuna
from _common import DATA_DIR, REPO, command_line, machine_summary, markdown_table, write_section

from skinestimator import load_dermamnist, make_synthetic_lesions, save_image_folder
from skinestimator.model_selection import open_storage

sys.path.insert(0, str(REPO))
from tests._postgres import postgres_binaries, running_postgres  # noqa: E402


def write_images(folder: Path, n_images: int) -> str:
    npz = DATA_DIR / "dermamnist28" / "dermamnist_28.npz"
    if npz.is_file():
        X, y = load_dermamnist(npz, split="train")
        rng = np.random.default_rng(0)
        keep = rng.permutation(len(y))[:n_images]
        save_image_folder(X[keep], y[keep], folder)
        return "DermaMNIST 28 px"
    X, y = make_synthetic_lesions(n_samples=n_images, image_size=(28, 28), random_state=0)
    save_image_folder(X, y, folder)
    return "synthetic 28 px"


@contextlib.contextmanager
def study_storage(folder: Path):
    if postgres_binaries()[0] is None:
        yield "SQLite", f"sqlite:///{folder / 'studies.db'}"
        return
    with running_postgres() as url:
        yield "PostgreSQL", url


def run_workers(images: Path, storage: str, study: str, space: Path, trials: list[int],
                epochs: int, threads: int | None) -> float:
    """Wall seconds of ``len(trials)`` workers started together on one study."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    command = [sys.executable, "-m", "skinestimator", "tune", str(images), "--storage", storage,
               "--study-name", study, "--space", str(space), "--cv", "3", "--backbone",
               "seed_cnn", "--image-size", "28", "--epochs", str(epochs), "--batch-size", "32",
               "--num-workers", "0", "--quiet"]
    started = time.perf_counter()
    workers = [subprocess.Popen(command + ["--n-trials", str(n)], env=env,
                                stdout=subprocess.DEVNULL) for n in trials]
    for worker in workers:
        if worker.wait() != 0:
            raise SystemExit(f"a worker failed: {worker.args}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n_images, n_trials, epochs = (300, 2, 1) if args.quick else (1500, 6, 3)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        source = write_images(folder / "images", n_images)
        space = folder / "space.json"
        space.write_text(json.dumps({"lr": {"low": 1e-3, "high": 3e-2, "log": True},
                                     "weight_decay": {"low": 1e-5, "high": 1e-2, "log": True}}))
        with study_storage(folder) as (kind, url):
            header = (f"{machine_summary()}; {source}, {n_images} images, seed_cnn, 3-fold CV, "
                      f"{epochs} epochs per fit, {n_trials} trials in all, study in {kind}")
            print(header, flush=True)
            configurations = [("1 worker", [n_trials], None),
                              ("2 workers", [n_trials // 2] * 2, None),
                              ("2 workers, 1 thread each", [n_trials // 2] * 2, 1)]
            for i, (name, trials, threads) in enumerate(configurations):
                study = f"benchmark-{i}"
                wall = run_workers(folder / "images", url, study, space, trials, epochs,
                                   threads)
                done = optuna.load_study(study_name=study, storage=open_storage(url)).trials
                rows.append({"workers": name, "trials": len(done), "wall_s": wall,
                             "trials_per_hour": 3600 * len(done) / wall,
                             "states": ", ".join(sorted({t.state.name for t in done}))})
                print(rows[-1], flush=True)
    for row in rows:
        row["ratio"] = row["trials_per_hour"] / rows[0]["trials_per_hour"]
    body = "\n".join([
        f"`{command_line()}` — {header}.", "",
        markdown_table(rows, ["workers", "trials", "wall_s", "trials_per_hour", "ratio",
                              "states"]), "",
        "`wall_s` includes each worker's start (importing torch, reading the images) and its "
        "share of the trials; `ratio` is trials per hour against one worker. On 2 cores two "
        "workers share the cores one worker already used.",
    ])
    print(body)
    if not args.quick:
        write_section("tuning-workers", body)


if __name__ == "__main__":
    main()
