"""Shared fixtures: tiny synthetic lesion images, on disk and in memory, and the real data."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from skinestimator import SkinLesionClassifier, make_synthetic_lesions, save_image_folder

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("SKINESTIMATOR_DATA", REPO_ROOT.parent / "shared" / "data"))
HAM10000_DIR = DATA_DIR / "ham10000"
DERMAMNIST_DIR = DATA_DIR / "dermamnist28"


def require_ham10000() -> Path:
    if not (HAM10000_DIR / "HAM10000_metadata.csv").is_file():
        pytest.skip(f"HAM10000 not found at {HAM10000_DIR} (set SKINESTIMATOR_DATA)")
    return HAM10000_DIR


def require_dermamnist() -> Path:
    if not any(DERMAMNIST_DIR.glob("dermamnist*.npz")):
        pytest.skip(f"DermaMNIST not found at {DERMAMNIST_DIR} (set SKINESTIMATOR_DATA)")
    return DERMAMNIST_DIR


@pytest.fixture(scope="session")
def lesions_train():
    """A learnable 3-class synthetic task, 32x32 pixels, 150 images."""
    return make_synthetic_lesions(n_samples=150, image_size=(32, 32), random_state=0)


@pytest.fixture(scope="session")
def lesions_test():
    return make_synthetic_lesions(n_samples=90, image_size=(32, 32), random_state=1)


@pytest.fixture(scope="session")
def lesion_folder(tmp_path_factory, lesions_train):
    """The training images written as a class-per-folder tree of PNG files."""
    root = tmp_path_factory.mktemp("lesions")
    X, y = lesions_train
    paths = save_image_folder(X, y, root)
    return root, paths, y


def tiny_classifier(**params) -> SkinLesionClassifier:
    """A from-scratch CNN on 32 px images that trains in about a second."""
    defaults = dict(
        backbone="seed_cnn",
        image_size=(32, 32),
        max_epochs=2,
        batch_size=16,
        validation_fraction=0.25,
        patience=None,
        augment=0.0,
        num_workers=0,
        random_state=0,
    )
    return SkinLesionClassifier(**{**defaults, **params})


def peak_memory(function, *args, **kwargs):
    """``(result, peak bytes)`` of ``function(*args, **kwargs)``, as traced by tracemalloc
    (numpy's allocations included, torch's not)."""
    import tracemalloc

    tracemalloc.start()
    try:
        result = function(*args, **kwargs)
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def run_python(code: str) -> str:
    """Run ``code`` in a fresh interpreter (what it imports starts from nothing) and return what
    it printed; it must exit 0."""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=False, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.fixture(scope="session")
def postgres_url():
    """URL of a real PostgreSQL server started for this test session (tests/_postgres.py)."""
    from tests._postgres import postgres_binaries, running_postgres

    binaries, reason = postgres_binaries()
    if binaries is None:
        pytest.skip(reason)
    with running_postgres() as url:
        yield url
