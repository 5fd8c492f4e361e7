"""Data-parallel training under torchrun (training/_distributed.py): real torchrun, two processes
on the CPU (gloo), the command line and a Python script."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from skinestimator import load_image_folder, load_model
from skinestimator.training._distributed import check_batch_size
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(),
                                reason="this torch build has no torch.distributed")


def _torchrun() -> list[str]:
    beside = Path(sys.executable).with_name("torchrun")
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("torchrun")
    return [found] if found else [sys.executable, "-m", "torch.distributed.run"]


def _run(command, cwd, timeout=300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    env.pop("WORLD_SIZE", None)
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_torchrun_train_writes_one_model_file_that_predict_reads(lesion_folder, tmp_path):
    root, _, _ = lesion_folder
    output = tmp_path / "out" / "model.skin"
    trained = _run(_torchrun() + [
        "--nproc_per_node=2", "-m", "skinestimator", "train", str(root), "-o", str(output),
        "--backbone", "seed_cnn", "--image-size", "32", "--epochs", "4", "--batch-size", "16",
        "--seed", "0"], cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    # Rank 0 alone speaks and writes.
    assert trained.stdout.count("saved ") == 1
    assert trained.stderr.count("images in 3 classes") == 1
    assert "2 processes" in trained.stderr
    assert sorted(p.name for p in output.parent.iterdir()) == ["model.skin"]

    predictions = tmp_path / "predictions.csv"
    predicted = _run([sys.executable, "-m", "skinestimator", "predict", str(output), str(root),
                      "-o", str(predictions)], cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr
    paths, labels = load_image_folder(root)
    assert len(predictions.read_text().splitlines()) == len(paths) + 1
    model = load_model(output)
    assert len(model.history_) == 4
    # Learned, not just written: the synthetic task is easy.
    assert model.score(paths, labels) >= 0.9


_SCRIPT = """
import hashlib, json, os, sys
from skinestimator import SkinLesionClassifier, make_synthetic_lesions

X, y = make_synthetic_lesions(n_samples=150, image_size=(32, 32), random_state=0)
clf = SkinLesionClassifier(backbone="seed_cnn", max_epochs=8, batch_size=16, random_state=0,
                           validation_fraction=0.2, patience=2, ema_decay=0.9, augment=True,
                           checkpoint_dir=sys.argv[1])
clf.fit(X, y)
weights = b"".join(v.numpy().tobytes() for v in clf.net_.module_.state_dict().values())
first_epoch = clf.net_.history[0]["batches"]
json.dump({
    "world_size": int(os.environ.get("WORLD_SIZE", "1")),
    "weights": hashlib.sha256(weights).hexdigest(),
    "history": [{k: v for k, v in row.items() if k != "dur"} for row in clf.history_],
    "batch_sizes": [batch["train_batch_size"] for batch in first_epoch
                    if "train_batch_size" in batch],
    "score": clf.score(X, y),
}, open(sys.argv[2] + "-" + os.environ.get("RANK", "single") + ".json", "w"))
"""


def test_a_script_calling_fit_under_torchrun_trains_one_network_on_every_rank(tmp_path):
    script = tmp_path / "fit_script.py"
    script.write_text(_SCRIPT)
    checkpoints = tmp_path / "checkpoints"
    trained = _run(_torchrun() + ["--standalone", "--nproc_per_node=2", str(script),
                                  str(checkpoints), str(tmp_path / "rank")], cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    single = _run([sys.executable, str(script), str(tmp_path / "single-checkpoints"),
                   str(tmp_path / "rank")], cwd=tmp_path)
    assert single.returncode == 0, single.stderr

    rank0, rank1, alone = (json.loads((tmp_path / f"rank-{name}.json").read_text())
                           for name in ("0", "1", "single"))
    # One network: gradients averaged, batch-norm statistics and validation scores from rank 0,
    # so early stopping ends both ranks at the same epoch and keeps the same one.
    assert rank0["weights"] == rank1["weights"]
    assert rank0["history"] == rank1["history"]
    # Each rank reads half of every global batch of 16: as many steps, half the images.
    assert max(rank0["batch_sizes"]) == 8 and max(alone["batch_sizes"]) == 16
    assert len(rank0["batch_sizes"]) == len(alone["batch_sizes"])
    assert 2 * sum(rank0["batch_sizes"]) == sum(alone["batch_sizes"])
    # One checkpoint, written by rank 0 (and no temporary file left behind).
    assert [p.suffix for p in checkpoints.iterdir()] == [".ckpt"]
    # The data-parallel model learns the task as the single-process one does.
    assert rank0["score"] >= 0.9 and alone["score"] >= 0.9
    assert abs(rank0["score"] - alone["score"]) <= 0.1


def test_the_global_batch_must_split_evenly_over_the_processes():
    assert check_batch_size(32, 2) == 16
    with pytest.raises(ValueError, match="batch_size=30 is the global batch.*4 processes"):
        check_batch_size(30, 4)
    with pytest.raises(ValueError, match="at least 2 images"):
        check_batch_size(2, 2)


def test_without_torchrun_fit_runs_in_one_process(monkeypatch):
    from skinestimator.training._distributed import join_process_group, launched_rank

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert join_process_group("cpu") is None
    assert launched_rank() == 0
    assert not torch.distributed.is_initialized()


_RESUMED_SCRIPT = """
import hashlib, json, os, sys
from skorch.callbacks import Callback
from skinestimator import SkinLesionClassifier, make_synthetic_lesions

class CrashAtEpoch(Callback):
    def on_epoch_end(self, net, **kwargs):
        if len(net.history) == 3 and sys.argv[2] == "crash":
            raise RuntimeError("simulated crash")

X, y = make_synthetic_lesions(n_samples=96, image_size=(32, 32), random_state=0)
clf = SkinLesionClassifier(backbone="seed_cnn", max_epochs=5, batch_size=16, random_state=0,
                           patience=None, augment=True, checkpoint_dir=sys.argv[1],
                           callbacks=[CrashAtEpoch()])
clf.fit(X, y)
weights = b"".join(v.numpy().tobytes() for v in clf.net_.module_.state_dict().values())
with open(sys.argv[3] + "-" + os.environ["RANK"], "w") as out:
    json.dump([hashlib.sha256(weights).hexdigest(), len(clf.history_)], out)
"""


def test_a_data_parallel_run_resumed_after_a_crash_ends_bit_identical(tmp_path):
    script = tmp_path / "resumed.py"
    script.write_text(_RESUMED_SCRIPT)
    launch = _torchrun() + ["--standalone", "--nproc_per_node=2", str(script)]
    crashed = _run(launch + [str(tmp_path / "a"), "crash", str(tmp_path / "crashed")],
                   cwd=tmp_path)
    assert crashed.returncode != 0 and "simulated crash" in crashed.stderr
    resumed = _run(launch + [str(tmp_path / "a"), "go", str(tmp_path / "resumed")],
                   cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    whole = _run(launch + [str(tmp_path / "b"), "go", str(tmp_path / "whole")], cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr
    results = {name: [json.loads((tmp_path / f"{name}-{rank}").read_text()) for rank in "01"]
               for name in ("resumed", "whole")}
    # Every rank's random state is in the checkpoint (each augments its own images), so the
    # resumed run repeats the uninterrupted one exactly, on both ranks.
    assert results["resumed"] == results["whole"]
    assert results["whole"][0][1] == 5
