"""The torch dataset: arrays and paths, the shared decoded-image cache, augmentation."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from skinestimator.data import BatchAugmentation, ImageCache, ImageDataset
from skinestimator.data import _cache as cache_module

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX signals and fork")

# The child loads the cache module from its file: importing the package would load torch,
# seconds per process for a module that needs numpy only.
_LOAD_CACHE = f"""
import importlib.util, os, signal, sys, time
spec = importlib.util.spec_from_file_location("image_cache", {cache_module.__file__!r})
image_cache = importlib.util.module_from_spec(spec)
spec.loader.exec_module(image_cache)
ImageCache = image_cache.ImageCache
"""


def _start_child(body: str, directory: Path) -> tuple[subprocess.Popen, list[str]]:
    """Run ``body`` in a fresh interpreter; return the process and its first printed line."""
    process = subprocess.Popen([sys.executable, "-c", _LOAD_CACHE + body, str(directory)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = process.stdout.readline()  # the child prints once its cache exists, then sleeps
    assert line, process.communicate(timeout=10)[1]
    return process, line.split()


def _finish(process: subprocess.Popen, sig: int) -> str:
    process.send_signal(sig)
    out, err = process.communicate(timeout=10)
    return out + err


def test_dataset_from_paths_uses_the_cache(lesion_folder, tmp_path):
    _, paths, _ = lesion_folder
    cache = ImageCache(4, (32, 32, 3), directory=str(tmp_path))
    data = ImageDataset(paths[:4], np.arange(4), image_size=(32, 32), cache=cache)
    first, target = data[2]
    assert first.shape == (3, 32, 32) and first.dtype == torch.uint8 and target == 2
    assert cache.get(2) is not None and cache.get(1) is None
    # A copy of the dataset (as a spawned worker gets) reads the same cache files.
    clone = pickle.loads(pickle.dumps(data))
    np.testing.assert_array_equal(clone.cache.get(2), cache.get(2))
    cache.close()
    assert not any(tmp_path.iterdir())  # the cache files are gone


def test_dataset_items_with_sample_weight():
    images = np.zeros((3, 8, 8, 3), dtype=np.uint8)
    data = ImageDataset(images, np.array([0, 1, 1]), image_size=(8, 8),
                        sample_weight=np.array([1.0, 2.0, 3.0], dtype=np.float32))
    x, y = data[1]
    assert set(x) == {"images", "sample_weight"} and x["sample_weight"] == 2.0 and y == 1


def test_batch_augmentation_draws_per_image_and_keeps_the_range():
    image = torch.zeros(3, 32, 48, dtype=torch.uint8)
    image[:, 4:12, 4:12] = 200
    batch = image.expand(16, 3, 32, 48).contiguous()
    torch.manual_seed(0)
    out = BatchAugmentation(1.0)(batch)
    assert out.shape == (16, 3, 32, 48) and out.dtype == torch.float32
    assert 0 <= out.min() and out.max() <= 1
    assert len({o.numpy().tobytes() for o in out}) == 16  # every image its own draw
    with pytest.raises(ValueError, match="strength"):
        BatchAugmentation(0.0)


def test_batch_augmentation_geometry_is_a_flip_at_tiny_strength():
    torch.manual_seed(1)
    x = torch.rand(8, 3, 20, 30)
    out = BatchAugmentation(1e-6)(x)
    for original, augmented in zip(x, out):
        flips = (original, original.flip(-1), original.flip(-2), original.flip(-1).flip(-2))
        assert min(float((augmented - f).abs().max()) for f in flips) < 1e-3


@posix_only
def test_cache_is_removed_on_sigterm_but_not_by_a_forked_worker(tmp_path):
    # The child forks a worker (as DataLoader does), which inherits the handler: terminating
    # the worker must leave its parent's cache alone.
    process, (folder, worker_signal, kept) = _start_child("""
cache = ImageCache(4, (8, 8, 3), directory=sys.argv[1])
ready, tell = os.pipe()
worker = os.fork()
if worker == 0:
    os.write(tell, b"x")  # only now are signals handled in the child
    time.sleep(30)
    os._exit(0)
os.read(ready, 1)
os.kill(worker, signal.SIGTERM)
status = os.waitpid(worker, 0)[1]
print(cache.folder, os.WTERMSIG(status) if os.WIFSIGNALED(status) else -1,
      os.path.isdir(cache.folder), flush=True)
time.sleep(30)
""", tmp_path)
    assert (int(worker_signal), kept) == (signal.SIGTERM, "True")
    assert os.path.isdir(folder)
    output = _finish(process, signal.SIGTERM)
    assert process.returncode == -signal.SIGTERM, output
    assert not os.path.exists(folder) and not any(tmp_path.iterdir())


@posix_only
def test_cache_left_by_a_killed_process_is_removed_by_the_next(tmp_path):
    process, (folder,) = _start_child("""
cache = ImageCache(4, (8, 8, 3), directory=sys.argv[1])
print(cache.folder, flush=True)
time.sleep(30)
""", tmp_path)
    mine = ImageCache(2, (8, 8, 3), directory=str(tmp_path))
    _finish(process, signal.SIGKILL)
    assert process.returncode == -signal.SIGKILL and os.path.isdir(folder)
    fresh = ImageCache(2, (8, 8, 3), directory=str(tmp_path))
    try:
        assert not os.path.exists(folder)
        assert sorted(tmp_path.iterdir()) == sorted(map(Path, [mine.folder, fresh.folder]))
    finally:
        mine.close()
        fresh.close()


@posix_only
def test_users_sigterm_handler_is_kept_and_called(tmp_path):
    process, (folder,) = _start_child("""
def handler(signum, frame):
    print("user handler", flush=True)
    sys.exit(3)
signal.signal(signal.SIGTERM, handler)
cache = ImageCache(4, (8, 8, 3), directory=sys.argv[1])
assert signal.getsignal(signal.SIGTERM) is handler
print(cache.folder, flush=True)
time.sleep(30)
""", tmp_path)
    output = _finish(process, signal.SIGTERM)
    assert process.returncode == 3 and "user handler" in output, output
    assert not os.path.exists(folder)  # the user's exit runs the cache's finalizer


def test_stale_cache_sweep_keeps_what_may_be_alive(tmp_path):
    def fake(name, owner=None, age=0.0):
        folder = tmp_path / f"skinestimator-cache-{name}"
        folder.mkdir()
        if owner is not None:
            (folder / "owner.json").write_text(json.dumps(owner))
        os.utime(folder, (time.time() - age, time.time() - age))
        return folder

    me = {"pid": os.getpid(), "start": cache_module._start_time(os.getpid()),
          "host": cache_module._host()}
    alive = fake("alive", me, age=3600)
    young = fake("young")  # no record yet: may be being created
    old = fake("old", age=3600)  # no record and old: left by an older version
    other_host = fake("other", {**me, "start": "0", "host": "elsewhere/"}, age=3600)
    target = tmp_path / "target"
    target.mkdir()
    link = tmp_path / "skinestimator-cache-link"
    link.symlink_to(target, target_is_directory=True)
    os.utime(link, (0, 0), follow_symlinks=False)
    removed = [fake("garbage", "not json", age=3600)]
    if me["start"] is not None:  # Linux: the same pid but another start time was recycled
        removed.append(fake("recycled", {**me, "start": "0"}))

    cache = ImageCache(1, (2, 2, 3), directory=str(tmp_path))
    assert all(folder.is_dir() for folder in (alive, young, other_host, target))
    assert link.is_symlink() and not any(folder.exists() for folder in [old, *removed])
    cache.close()


def test_sigterm_handler_only_while_caches_are_open(tmp_path):
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        pytest.skip("the test runner has its own SIGTERM handler")
    first = ImageCache(1, (2, 2, 3), directory=str(tmp_path))
    second = ImageCache(1, (2, 2, 3), directory=str(tmp_path))
    assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    first.close()
    assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    second.close()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    # signal.signal works in the main thread only: elsewhere the cache installs nothing.
    caches = []
    thread = threading.Thread(target=lambda: caches.append(ImageCache(1, (2, 2, 3))))
    thread.start()
    thread.join()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    caches[0].close()


_AFTER_A_BAD_FILE = """
import sys
from skinestimator import SkinLesionClassifier, ImageReadError, load_image_folder
paths, labels = load_image_folder(sys.argv[1])
clf = SkinLesionClassifier(backbone="seed_cnn", image_size=(32, 32), max_epochs=1,
                           random_state=0, num_workers=2, predict_batch_size=8).fit(paths, labels)
try:
    clf.predict_proba(list(paths[:30]) + [sys.argv[2]] + list(paths[30:]))
except ImageReadError as error:
    print("refused:", error)
for _ in range(3):
    clf.predict_proba(paths[:24])
print("done")
"""


def test_predictions_after_an_unreadable_file_leave_no_worker_behind(lesion_folder, tmp_path):
    import subprocess
    import sys

    root, _, _ = lesion_folder
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    result = subprocess.run([sys.executable, "-c", _AFTER_A_BAD_FILE, str(root), str(bad)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"refused: cannot read image '{bad}'" in result.stdout
    assert result.stdout.strip().endswith("done")
    # The failed prediction's DataLoader workers were shut down with it, in this process.
    assert "can only test a child process" not in result.stderr
    assert "Exception ignored" not in result.stderr
