"""Checkpoints of a training run, one per finished epoch, to resume it after a kill.

Why not skorch's ``Checkpoint`` / ``LoadInitState``: they write weights, optimizer and history
as separate files, in place, so a kill between two writes leaves a mix of two epochs, and they
keep neither the random number generators, the moving average, the learning-rate scheduler nor
early stopping's count. Here one file holds all of it and is replaced atomically (written to a
temporary file, fsynced, renamed, the folder fsynced), so it is always one whole finished epoch.

The file is named after a fingerprint of the hyperparameters that shape training and of the
training data, so the fits of a ``GridSearchCV`` or of the folds of ``cross_val_score`` keep one
checkpoint each in a shared folder, and a fit never resumes another one's run.
"""

from __future__ import annotations

import hashlib
import json
import numbers
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from skorch.callbacks import Callback, LRScheduler

from .._warnings import warn_user
from ._distributed import gather_objects

__all__ = ["TrainingCheckpoint", "fingerprint"]

_FORMAT = 1
# What changes how a fit trains; the rest (verbose, workers, cache, device, ...) only how fast
# it runs or what it prints. A resumed fit on another device continues, not bit for bit.
_NOT_TRAINING = frozenset({"verbose", "callbacks", "num_workers", "image_cache", "device",
                           "checkpoint_dir", "warm_start", "predict_batch_size"})


def _digest_array(digest, array) -> None:
    array = np.ascontiguousarray(array)
    if array.dtype == object:
        digest.update(json.dumps([str(v) for v in array.ravel()]).encode())
    else:
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(memoryview(array).cast("B"))


def _digest_images(digest, images, from_paths: bool) -> None:
    if not from_paths:
        _digest_array(digest, images)
        return
    for path in images:
        # Path, size and modification time: an edited or replaced file is new data.
        stat = os.stat(path)
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())


def fingerprint(estimator, images, from_paths, y, weights, groups, validation) -> dict:
    """What a checkpoint must match to be resumed: hyperparameters (as text) and a digest of
    the training data (images or file paths with sizes and times, labels, weights, groups,
    validation set)."""
    params = {name: repr(value) for name, value in sorted(estimator.get_params().items())
              if name not in _NOT_TRAINING}
    digest = hashlib.sha256()
    _digest_images(digest, images, from_paths)
    for part in (y, weights, groups):
        digest.update(b"\1")
        if part is not None:
            _digest_array(digest, np.asarray(part))
    if validation is not None:
        digest.update(b"\2")
        for part in validation:
            _digest_array(digest, np.asarray(part))
    return {"params": params, "data": digest.hexdigest()}


def _key(print_: dict) -> str:
    text = json.dumps(print_, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _plain(value):
    """``value`` as a type ``torch.load(weights_only=True)`` accepts, or None if it is not."""
    if value is None or isinstance(value, (bool, str, torch.Tensor)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, dict) and all(isinstance(v, torch.Tensor) for v in value.values()):
        return {k: v.detach().clone() for k, v in value.items()}
    return None


def _callback_states(net) -> dict:
    """The fitted state (attributes ending in ``_``) of each callback that has plain ones:
    early stopping's count and best weights, the scorers' best scores."""
    states = {}
    for name, callback in net.callbacks_:
        if isinstance(callback, (TrainingCheckpoint, LRScheduler)) or name == "ema":
            continue
        state = {}
        for key, value in vars(callback).items():
            if key.endswith("_") and not key.startswith("_"):
                plain = _plain(value)
                if plain is not None or value is None:
                    state[key] = plain
        if state:
            states[name] = state
    return states


def _atomic_save(payload: dict, path: Path) -> None:
    """Write, fsync, rename, fsync the folder: a kill at any moment leaves the old file or the
    new one, never part of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(payload, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


class TrainingCheckpoint(Callback):
    """Saves every finished epoch of a run into ``directory`` and restores a saved one.

    Put it last among the callbacks: at an epoch's end the others have updated their state
    (early stopping its count and best weights), and at the start of a run the others have
    reset theirs, which the restored state then overwrites.

    Parameters
    ----------
    directory : path-like
    print_ : dict
        The run's :func:`fingerprint`.
    """

    def __init__(self, directory, print_: dict):
        self.directory = directory
        self.print_ = print_

    @property
    def path(self) -> Path:
        return Path(self.directory) / f"fit-{_key(self.print_)}.ckpt"

    def load(self) -> dict | None:
        """The saved state of this run, or None (with a warning when the folder holds
        checkpoints of other runs, naming what differs from the newest)."""
        if self.path.is_file():
            state = torch.load(self.path, map_location="cpu", weights_only=True)
            if state.get("format") == _FORMAT and state.get("fingerprint") == self.print_:
                self.pending_ = state
                return state
        self._warn_about_others()
        return None

    def _warn_about_others(self) -> None:
        others = sorted(Path(self.directory).glob("fit-*.ckpt"), key=lambda p: p.stat().st_mtime)
        if not others:
            return
        try:
            other = torch.load(others[-1], map_location="cpu", weights_only=True)["fingerprint"]
        except Exception:  # noqa: BLE001 - an unreadable checkpoint is just not ours
            return
        changed = [f"{name}={other['params'].get(name, '?')} -> {value}"
                   for name, value in self.print_["params"].items()
                   if other["params"].get(name) != value]
        if other["data"] != self.print_["data"]:
            changed.append("the training data")
        warn_user(f"checkpoint_dir {os.fspath(self.directory)!r} holds checkpoints of other "
                  f"fits (the newest differs in {', '.join(changed) or 'its format'}); this "
                  "fit starts afresh and keeps them")

    def initialize(self):
        self.pending_ = getattr(self, "pending_", None)
        return self

    def on_train_begin(self, net, **kwargs):
        if self.pending_ is not None:
            restore(net, self.pending_)
            self.pending_ = None

    def on_epoch_end(self, net, **kwargs):
        # Under torchrun the ranks hold the same network: one writes it, all read it. Only
        # the random states differ (each rank augments its own images): rank 0 saves them all.
        rng = gather_objects(_rng_state(), net.world_size)
        if net.rank == 0:
            _atomic_save(self._state(net, finished=False, rng=rng), self.path)

    def on_train_end(self, net, **kwargs):
        # After Ctrl+C the last finished epoch stays the one to resume from.
        if getattr(net, "interrupted_", False):
            return
        rng = gather_objects(_rng_state(), net.world_size)
        if net.rank == 0:
            _atomic_save(self._state(net, finished=True, rng=rng), self.path)

    def _state(self, net, *, finished: bool, rng: list[dict] | None = None) -> dict:
        rng = rng or [_rng_state()]
        callbacks = dict(net.callbacks_)
        ema = callbacks["ema"]
        training_weights = ema.training_weights_ or net.module_.state_dict()
        schedulers = {name: {"state": cb.lr_scheduler_.state_dict(), "batch_idx": cb.batch_idx_}
                      for name, cb in net.callbacks_
                      if isinstance(cb, LRScheduler) and cb.lr_scheduler_ is not None}
        return {
            "format": _FORMAT, "fingerprint": self.print_, "finished": finished,
            "epochs": len(net.history), "shuffle_seed": int(net.shuffle_seed),
            "module": {k: v.detach().clone() for k, v in training_weights.items()},
            "final_module": net.module_.state_dict() if finished else None,
            "optimizer": net.optimizer_.state_dict(),
            "schedulers": schedulers,
            "ema": None if ema.average_ is None else ema.average_.state_dict(),
            "callbacks": _callback_states(net),
            "history": json.dumps(net.history.to_list(), default=float),
            "rng": rng[0],
            "rank_rng": rng,
            "scaler": None if net.scaler_ is None else net.scaler_.state_dict(),
        }

    def __getstate__(self):
        state = dict(self.__dict__)
        state["pending_"] = None
        return state


def _rng_state() -> dict:
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return rng


def restore(net, state: dict) -> None:
    """Put a saved run's state back into ``net``, whose callbacks were just reset."""
    callbacks = dict(net.callbacks_)
    net.module_.load_state_dict(state["module"])
    net.optimizer_.load_state_dict(state["optimizer"])
    for name, saved in state["schedulers"].items():
        callbacks[name].lr_scheduler_.load_state_dict(saved["state"])
        callbacks[name].batch_idx_ = saved["batch_idx"]
    ema = callbacks["ema"]
    if state["ema"] is not None and ema.average_ is not None:
        ema.average_.load_state_dict(state["ema"])
    for name, saved in state["callbacks"].items():
        if name in callbacks:
            vars(callbacks[name]).update(saved)
    if state["scaler"] is not None and net.scaler_ is not None:
        net.scaler_.load_state_dict(state["scaler"])
    # Each rank its own saved generators; a run resumed on more processes than it was saved
    # from gives the new ranks rank 0's (it continues, but not bit for bit).
    ranks = state.get("rank_rng") or [state["rng"]]
    rng = ranks[net.rank] if net.rank < len(ranks) else ranks[0]
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
