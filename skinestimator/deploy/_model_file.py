"""Safe single-file model format: safetensors weights plus a JSON model card.

A model file is a plain safetensors file (readable by any safetensors tool). Its string metadata
holds the model card as JSON and a SHA-256 digest over the card and every tensor. Loading parses
the file with safetensors (which only ever reads raw numbers), so nothing from the file is
unpickled or executed, unlike ``pickle`` / ``joblib`` / ``torch.load`` without
``weights_only=True``.

The digest is not keyed (no secret, no signature): it detects corruption and accidental edits,
but whoever changes a file on purpose can recompute it. To trust a file from someone else,
compare its ``sha256`` (``skinestimator info``, :func:`read_model_card`) with the value its
author gives you through a channel you trust.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import numbers
import os
import platform
import secrets
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

FORMAT_NAME = "skinestimator-model"
FORMAT_VERSION = 1
DEFAULT_SUFFIX = ".skin"

# A header bigger than this is not a model card: refusing early avoids allocating gigabytes
# because of one flipped byte in the length prefix.
_MAX_HEADER_BYTES = 64 * 1024 * 1024
_PICKLE_MAGIC = b"\x80"
_ZIP_MAGIC = b"PK\x03\x04"

__all__ = ["ModelFileError", "save_model", "load_model", "read_model_card"]


class ModelFileError(ValueError):
    """A model file is missing, truncated, corrupted or modified, malformed, or incompatible.

    Subclasses :class:`ValueError` so that callers catching bad input keep working. The message
    is one sentence meant for an end user and always names the file.
    """


# ----------------------------------------------------------------------------------------------
# saving


def save_model(
    clf: Any,
    path: str | os.PathLike,
    *,
    metrics: Mapping[str, float] | None = None,
    training_data: Mapping[str, Any] | None = None,
    notes: str | None = None,
) -> Path:
    """Save a fitted classifier as one safe file: safetensors weights plus a JSON model card.

    The file records the weights of the network, the classes, the preprocessing (input size),
    the backbone, the hyperparameters, the library / torch versions, a training-data summary
    and validation metrics when known, and a SHA-256 digest that :func:`load_model` checks to
    detect corruption and accidental modification. The digest is not a signature: anyone who
    edits the file on purpose can recompute it, so to trust a file from someone else compare its
    ``sha256`` (shown by ``skinestimator info``) with theirs through a channel you trust.
    Hyperparameters are stored with their types, including dicts keyed by strings, integers,
    floats or booleans (such as ``class_weight={0: 3.0}``); those JSON cannot hold (callables,
    modules, ``callbacks``) are not stored and are listed in the card's ``params_not_saved``.
    Loading it never unpickles or executes anything from the file, so a model file cannot
    run code (``pickle`` / ``joblib`` files can: load those only from sources you trust); it
    can still hold weights and a card that are not what they claim to be.

    Parameters
    ----------
    clf : SkinLesionClassifier
        A fitted classifier. A Pipeline is refused, because its other steps could not be
        stored: when they only read image files (``ImageLoader`` at the classifier's
        ``image_size_``), save ``pipeline[-1]``, which reads image paths itself; otherwise
        pickle / joblib the pipeline (and load it only from sources you trust).
    path : str or path-like
        Where to write. The conventional suffix is ``.skin``; an existing file is replaced
        atomically, so a crash never leaves a half-written model behind, and of two saves to
        the same path at once one complete file wins.
    metrics : mapping of str to float, optional
        Validation metrics to record in the model card, e.g. ``{"balanced_accuracy": 0.71}``
        (values are numbers, strings or None). When omitted, the validation scores in
        ``clf.history_`` of the weights the model keeps are recorded: the best epoch's when
        early stopping restored it (``patience`` set), else the last epoch's.
    training_data : mapping, optional
        Training-data summary to record, e.g. ``{"class_counts": {...}, "source": "..."}``.
        ``class_counts``, when given, maps each label to its number of images (a non-negative
        int): for counts in ``clf.classes_`` order, pass ``dict(zip(clf.classes_, counts))``.
        When omitted, the card has no training-data summary (``skinestimator info`` shows
        "trained on unknown"): a fitted classifier does not keep its training labels.
        ``skinestimator train`` records the class counts of the images it trained on.
    notes : str, optional
        Free text stored in the model card (intended use, data provenance, ...).

    Returns
    -------
    path : pathlib.Path
        The path written. Under ``torchrun`` every rank holds the same fitted network and
        only rank 0 writes the file; the other ranks check ``clf`` as rank 0 does and return
        the path without writing (call ``torch.distributed.barrier()`` before they read it).

    Raises
    ------
    ModelFileError
        If ``clf`` is not a fitted classifier with a named backbone, or its
        ``color_constancy`` was changed after ``fit``.
    ValueError
        If ``metrics`` or ``training_data`` is malformed (e.g. class counts that are not
        non-negative integers keyed by label).

    See Also
    --------
    load_model : Read the file back into a fitted classifier.
    read_model_card : Read only the model card.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from skinestimator import SkinLesionClassifier, make_synthetic_lesions
    >>> from skinestimator.deploy import save_model, load_model
    >>> X, y = make_synthetic_lesions(n_samples=40, image_size=(32, 32), random_state=0)
    >>> clf = SkinLesionClassifier(backbone="seed_cnn", max_epochs=1, image_size=(32, 32),
    ...                            random_state=0).fit(X, y)
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "model.skin"
    >>> _ = save_model(clf, path)
    >>> bool((load_model(path).predict_proba(X) == clf.predict_proba(X)).all())
    True
    """
    import torch
    from safetensors.torch import save as _st_save

    from ..training import is_main_process

    module = _fitted_module(clf)
    if not isinstance(getattr(clf, "backbone", None), str):
        # load_model rebuilds the network from its name; a user's factory function cannot be
        # stored without pickling it.
        raise ModelFileError(
            "save_model needs a named backbone (e.g. 'efficientnet_lite0', 'seed_cnn' or a timm "
            f"name), not {type(clf.backbone).__name__}; pickle/joblib can store such a model "
            "for trusted use"
        )
    _check_network_matches_params(clf, module)
    path = Path(path)
    _check_summaries(metrics, training_data)
    state = {
        name: tensor.detach().to("cpu").contiguous().clone()
        for name, tensor in module.state_dict().items()
    }
    if not state:
        raise ModelFileError("the classifier's network has no weights to save")
    for name, tensor in state.items():
        if not isinstance(tensor, torch.Tensor):  # pragma: no cover - torch guarantees tensors
            raise ModelFileError(f"state entry {name!r} is not a tensor and cannot be saved safely")

    card = _model_card(clf, metrics=metrics, training_data=training_data, notes=notes)
    card_json = json.dumps(card, sort_keys=True, ensure_ascii=False, allow_nan=False)
    if not is_main_process():
        return path  # checked as rank 0 checks it; hashing and serializing are rank 0's
    metadata = {
        "format": FORMAT_NAME,
        "format_version": str(FORMAT_VERSION),
        "model_card": card_json,
    }
    metadata["sha256"] = _digest(metadata, state)
    payload = _st_save(state, metadata=metadata)

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp, fd = _create_temp_beside(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        # Atomic: readers and a concurrent save see the old file or one whole new one.
        os.replace(tmp, path)
    except BaseException:
        # Only this call's own temporary file: a name shared with a concurrent save used to
        # let one call delete (or publish) the other's half-written file.
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
    return path


def _create_temp_beside(path: Path) -> tuple[Path, int]:
    """Create a new, uniquely named file in ``path``'s folder (for ``os.replace``, which must
    not cross file systems); return it with its open descriptor.

    Like ``tempfile.mkstemp`` (random name, ``O_EXCL``), but created with mode 0o666 so that the
    umask and the folder's default ACL apply as to any new file: mkstemp's 0o600 would make a
    shared model unreadable to others, and reading the umask (``os.umask``) is not thread-safe.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
        try:
            return tmp, os.open(tmp, flags, 0o666)
        except FileExistsError:  # pragma: no cover - 64 random bits
            continue
    raise FileExistsError(f"could not create a temporary file beside {path}")  # pragma: no cover


def _check_summaries(metrics, training_data) -> None:
    """Refuse metrics / training-data summaries that readers of the card could not use.

    Checked when saving, with a message for the caller, rather than written into the card for
    the web page or ``skinestimator info`` to trip over later.
    """
    if metrics is not None:
        if not isinstance(metrics, Mapping):
            raise ValueError(
                f"metrics must be a mapping of names to numbers, got {type(metrics).__name__}"
            )
        for key, value in metrics.items():
            if not isinstance(key, str):
                raise ValueError(f"metrics keys must be strings, got {key!r}")
            if not (value is None or isinstance(value, (str, numbers.Real, np.bool_))):
                raise ValueError(
                    f"metrics[{key!r}] must be a number (or a string / None), got "
                    f"{type(value).__name__}"
                )
    if training_data is None:
        return
    if not isinstance(training_data, Mapping):
        raise ValueError(
            "training_data must be a mapping such as {'class_counts': {...}, 'source': ...}, "
            f"got {type(training_data).__name__}"
        )
    counts = training_data.get("class_counts")
    if counts is None and "class_counts" not in training_data:
        return
    if not isinstance(counts, Mapping):
        raise ValueError(
            "training_data['class_counts'] must map each label to its number of images, got "
            f"{type(counts).__name__}; for counts in classes_ order pass "
            "dict(zip(clf.classes_, counts))"
        )
    for label, count in counts.items():
        if (
            isinstance(count, (bool, np.bool_))
            or not isinstance(count, numbers.Integral)
            or count < 0
        ):
            raise ValueError(
                f"training_data['class_counts'][{label!r}] must be a non-negative integer, "
                f"got {count!r}"
            )


def _check_is_classifier(clf: Any, action: str) -> None:
    """Refuse anything but a :class:`~skinestimator.SkinLesionClassifier`, saying what to do.

    ``action`` is ``"save_model"`` or ``"export_onnx"``. A Pipeline's other steps cannot go
    into a model file or an ONNX graph, so writing the classifier alone would silently drop
    them; the message says when that is harmless.
    """
    from sklearn.pipeline import Pipeline

    from skinestimator import SkinLesionClassifier

    if isinstance(clf, Pipeline):
        others = [
            type(step).__name__
            for _, step in clf.steps[:-1]
            if step is not None and step != "passthrough"
        ]
        listed = f" ({', '.join(others)})" if others else ""
        if action == "export_onnx":
            lost, verb = "would not be in the ONNX graph", "export"
            why = "the graph takes decoded pixels at image_size_, as ImageLoader gives them"
            otherwise = "the app running the graph must apply those steps to the pixels itself"
        else:
            lost, verb = "would not be saved", "save"
            why = "the classifier reads image paths itself and predicts the same"
            otherwise = (
                "store the whole pipeline with pickle/joblib (load such files only from "
                "sources you trust)"
            )
        raise ModelFileError(
            f"{action} takes a fitted SkinLesionClassifier, got a Pipeline: its other "
            f"steps{listed} {lost}. If they only read image files (an ImageLoader with the "
            f"classifier's image_size_ and resize), {verb} pipeline[-1]: {why}. "
            f"Otherwise {otherwise}"
        )
    if isinstance(clf, SkinLesionClassifier) or hasattr(clf, "net_"):
        return
    hint = (
        f"; for a fitted search pass its best_estimator_ ({type(clf.best_estimator_).__name__})"
        if hasattr(clf, "best_estimator_")
        else ""
    )
    raise ModelFileError(
        f"{action} takes a fitted SkinLesionClassifier, got {type(clf).__name__}{hint}"
    )


def _check_network_matches_params(clf: Any, module: Any) -> None:
    """Refuse a ``color_constancy`` changed by ``set_params`` after ``fit``: the network keeps
    the power it was fitted with, so the file would describe another model than the one that
    predicts (and load_model would rebuild that other one, without a word)."""
    wanted = getattr(clf, "color_constancy", None)
    fitted = getattr(module, "color_constancy", None)
    if wanted != fitted:
        raise ModelFileError(
            f"color_constancy is {wanted!r} but the network was fitted with {fitted!r} (it "
            "takes effect when the network trains next): refit the classifier, or set_params("
            f"color_constancy={fitted!r}) before saving"
        )


def _fitted_module(clf: Any):
    _check_is_classifier(clf, "save_model")
    net = getattr(clf, "net_", None)
    module = getattr(net, "module_", None)
    if module is None or not hasattr(clf, "classes_"):
        raise ModelFileError(
            f"{type(clf).__name__} is not fitted: call fit before saving it"
        )
    return module


def _model_card(clf, *, metrics, training_data, notes) -> dict[str, Any]:
    import sklearn
    import skorch
    import torch

    params, dropped, tuples, dicts = _serialisable_params(clf)
    classes = np.asarray(clf.classes_)
    class_kind = _classes_kind(classes)
    history = _json_safe(list(getattr(clf, "history_", []) or []))

    if metrics is None:
        metrics = _metrics_from_history(history, getattr(clf, "patience", None) is not None)
    image_size = [int(v) for v in clf.image_size_]
    module = clf.net_.module_

    card: dict[str, Any] = {
        "estimator": type(clf).__name__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "classes": classes.tolist(),
        "classes_kind": class_kind,
        # Object or fixed-width strings, as fit gave them: predict returns the same dtype.
        "classes_object": bool(classes.dtype.kind == "O"),
        "backbone": params.get("backbone", None),
        "preprocessing": _json_safe(
            {
                "image_size": image_size,
                "input": "RGB image, resized to image_size by the classifier",
                "channels": 3,  # the network's input; grey images are repeated to RGB
                "normalization": _normalization_of(module),
                # Done by the network itself (and by an exported ONNX graph), not by the caller.
                "color_constancy": getattr(module, "color_constancy", None),
            }
        ),
        "params": params,
        "params_tuples": tuples,
        "params_dicts": dicts,
        "params_not_saved": dropped,
        "training_data": _json_safe(dict(training_data)) if training_data else None,
        "metrics": _json_safe(dict(metrics)) if metrics else None,
        "history": history,
        "notes": notes,
        "versions": {
            "skinestimator": _library_version(),
            "torch": torch.__version__,
            "skorch": skorch.__version__,
            "scikit-learn": sklearn.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
        "n_parameters": int(sum(p.numel() for p in module.parameters())),
    }
    if hasattr(clf, "n_features_in_"):
        card["n_features_in"] = int(clf.n_features_in_)
    scores = getattr(clf, "conformal_scores_", None)
    card["uncertainty"] = {
        "temperature": float(getattr(clf, "temperature_", 1.0)),
        "conformal_scores": None if scores is None else scores.to_dict(),
    }
    return card


def _serialisable_params(
    clf,
) -> tuple[dict[str, Any], list[str], list[str], dict[str, list[list[Any]]]]:
    """Split the hyperparameters by how the model card stores them.

    Returns ``params`` (JSON-able values), ``dropped`` (names of values that cannot be stored:
    callbacks, callables, modules), ``tuples`` (names in ``params`` to restore as tuples) and
    ``dicts``: dicts whose keys are not all strings (such as ``class_weight={0: 3.0}``), stored
    as ``[key, value]`` pairs because a JSON object would turn every key into a string.
    """
    params, dropped, tuples, dicts = {}, [], [], {}
    for name, value in sorted(clf.get_params(deep=False).items()):
        if isinstance(value, tuple) and _is_plain(list(value)):
            params[name] = list(value)
            tuples.append(name)
        elif _is_plain(value):
            params[name] = _json_safe(value)
        elif _is_plain_keyed_dict(value):
            dicts[name] = [[_json_safe(k), _json_safe(v)] for k, v in value.items()]
        else:
            dropped.append(name)
    return params, dropped, tuples, dicts


def _is_plain_key(key) -> bool:
    """True for dict keys that keep their type and value as a JSON list item."""
    if isinstance(key, (bool, np.bool_, str, int, np.integer)):
        return True
    return isinstance(key, (float, np.floating)) and math.isfinite(float(key))


def _is_plain_keyed_dict(value) -> bool:
    return isinstance(value, dict) and all(
        _is_plain_key(k) and _is_plain(v) for k, v in value.items()
    )


def _is_plain(value) -> bool:
    """True for values that survive a JSON round trip unchanged (up to tuple/list)."""
    if value is None or isinstance(value, (bool, str)):
        return True
    if isinstance(value, (int, np.integer)):
        return True
    if isinstance(value, (float, np.floating)):
        return math.isfinite(float(value))
    if isinstance(value, (list, tuple)):
        return all(_is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return False


def _json_safe(value):
    """Numpy scalars and arrays to Python; non-finite floats to None; unknown objects to str."""
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return _json_safe(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, str):
        return value
    return str(value)


def _classes_kind(classes: np.ndarray) -> str:
    # Recorded so that predictions after loading have the same type as before saving.
    if classes.dtype.kind in "US" or (
        classes.dtype.kind == "O" and all(isinstance(c, str) for c in classes)
    ):
        return "str"
    if classes.dtype.kind == "b":
        return "bool"
    if classes.dtype.kind in "iu":
        return "int"
    if classes.dtype.kind == "f":
        return "float"
    raise ModelFileError(
        f"classes of type {classes.dtype} cannot be stored safely; use string or integer labels"
    )


def _metrics_from_history(history: list[dict], early_stopping: bool) -> dict[str, Any] | None:
    rows = [row for row in history if row.get("valid_bacc") is not None]
    if not rows:
        return None
    # Early stopping restores the best epoch's weights, so its scores describe the saved
    # model; without it the last epoch's weights are kept.
    row = max(rows, key=lambda r: r["valid_bacc"]) if early_stopping else rows[-1]
    found = {k: row[k] for k in ("valid_bacc", "valid_acc", "valid_loss") if k in row}
    found["epoch"] = row.get("epoch")
    # fit(groups=) holds out whole lesions and X_val is the user's own: the history does not
    # say which, so the card must not claim either (it used to say "not grouped" always).
    found["source"] = ("the validation scores recorded by fit; whether that validation set "
                       "held out whole lesions is not recorded")
    return found


def _normalization_of(module) -> dict[str, Any] | None:
    out = {}
    for name in ("mean", "std"):
        value = getattr(module, name, None)
        if value is None:
            continue
        try:
            out[name] = np.asarray(value.detach().cpu() if hasattr(value, "detach") else value)
            out[name] = out[name].reshape(-1).tolist()
        except Exception:  # noqa: BLE001 - informative only, never fatal
            continue
    return out or None


def _library_version() -> str:
    try:
        from skinestimator import __version__
    except Exception:  # noqa: BLE001 - a partial install must still be able to save
        return "unknown"
    return str(__version__)


def _digest(metadata: Mapping[str, str], tensors: Mapping[str, Any]) -> str:
    """SHA-256 over every metadata entry but the digest itself and every tensor's bytes.

    The digest is over the *content* (names, dtypes, shapes, bytes) rather than the file's
    layout, so it does not depend on how safetensors orders or aligns its header.
    """
    import torch

    def content(tensor) -> bytes:
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        return flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b""

    return _digest_of(metadata, (
        (name, str(tensors[name].dtype), list(tensors[name].shape), content(tensors[name]))
        for name in sorted(tensors)
    ))


# safetensors' dtype codes under the names torch gives them, which the digest hashes: with them
# a file's digest is computed from its own bytes, without torch (``skinestimator info`` starts in
# a fraction of the time). Tensors are stored little-endian, as torch holds them on the CPUs it
# runs on.
_TORCH_DTYPE_NAMES = {
    "F64": "torch.float64", "F32": "torch.float32", "F16": "torch.float16",
    "BF16": "torch.bfloat16", "I64": "torch.int64", "I32": "torch.int32", "I16": "torch.int16",
    "I8": "torch.int8", "U8": "torch.uint8", "BOOL": "torch.bool",
}


def _file_digest(metadata: Mapping[str, str], header: Mapping[str, Any],
                 data: bytes) -> str | None:
    """:func:`_digest` of a file's tensors read from its bytes, or None when a tensor has a
    dtype outside ``_TORCH_DTYPE_NAMES`` (the caller then hashes the tensors torch loads).

    A malformed tensor entry gives a digest that cannot match, so the caller's integrity check
    refuses the file."""
    start = 8 + struct.unpack("<Q", data[:8])[0]
    weights = memoryview(data)[start:]
    names = sorted(name for name in header if name != "__metadata__")
    entries = []
    for name in names:
        entry = header[name]
        try:
            dtype = _TORCH_DTYPE_NAMES.get(entry["dtype"])
            if dtype is None:
                return None
            begin, stop = (int(offset) for offset in entry["data_offsets"])
            shape = [int(size) for size in entry["shape"]]
        except (TypeError, KeyError, ValueError):
            return "malformed"
        entries.append((name, dtype, shape, weights[begin:stop]))
    return _digest_of(metadata, entries)


def _digest_of(metadata: Mapping[str, str], entries) -> str:
    """The SHA-256 of :func:`_digest`, from ``(name, dtype, shape, bytes)`` sorted by name."""
    h = hashlib.sha256()
    h.update(f"{FORMAT_NAME}/{FORMAT_VERSION}\0".encode())
    for key in sorted(metadata):
        if key == "sha256":
            continue
        h.update(key.encode() + b"\0" + metadata[key].encode() + b"\0")
    for name, dtype, shape, content in entries:
        h.update(f"{name}\0{dtype}\0{shape}\0".encode())
        h.update(content)
    return h.hexdigest()


# ----------------------------------------------------------------------------------------------
# loading


def read_model_card(path: str | os.PathLike) -> dict[str, Any]:
    """Read and verify a model file's model card without building the classifier.

    The check covers the SHA-256 digest (corruption, accidental modification; not deliberate
    tampering, see :func:`load_model`) and the structure of the card.

    Parameters
    ----------
    path : str or path-like
        A file written by :func:`save_model`.

    Returns
    -------
    card : dict
        Classes, preprocessing, backbone, hyperparameters, versions, training-data summary,
        metrics, training history and the file's ``sha256`` digest.

    Raises
    ------
    ModelFileError
        If the file is missing, is not a model file, is truncated, fails the integrity check
        (corrupted or modified), has a malformed model card or was written by an incompatible
        version.

    Examples
    --------
    >>> from skinestimator.deploy import read_model_card
    >>> read_model_card("model.skin")["classes"]  # doctest: +SKIP
    ['akiec', 'bcc', 'bkl', 'df', 'mel', 'nv', 'vasc']
    """
    card, _ = _read_verified(Path(path), with_tensors=False)
    return card


def load_model(path: str | os.PathLike):
    """Load a classifier saved by :func:`save_model`, checking its integrity first.

    Nothing in the file is unpickled or executed: the weights are raw tensors parsed by
    safetensors and the metadata is JSON. The estimator class is always
    :class:`~skinestimator.SkinLesionClassifier`, never a name read from the file. The tensors'
    names and shapes are compared with the network the card describes (built on torch's
    ``meta`` device, which allocates nothing) before that network is built, so a small file
    cannot make the loader allocate a huge one.

    The SHA-256 digest detects corruption and accidental modification, not deliberate
    tampering: anyone who edits a file can recompute it. To trust a file from someone else,
    compare its ``sha256`` (``clf.model_card_["sha256"]``, ``skinestimator info``) with theirs
    through a channel you trust.

    Parameters
    ----------
    path : str or path-like
        A file written by :func:`save_model`.

    Returns
    -------
    clf : SkinLesionClassifier
        A fitted classifier whose ``predict_proba`` equals the saved one's. Hyperparameters
        keep their saved values, including dicts whose keys are strings, integers, floats or
        booleans (such as ``class_weight={0: 3.0}``); those that could not be saved (such as
        callbacks, listed in the model card under ``params_not_saved``) take their default
        values. Two settings describe the machine that trained the model rather than the model,
        and become ``"auto"`` when this machine cannot honour them: ``device`` when it names a
        device this machine lacks (a CUDA GPU or its index, Apple's MPS, XPU, ...), and
        ``num_workers`` when it exceeds this machine's CPU count (``os.cpu_count()``). The
        model card is available as ``clf.model_card_``.

    Raises
    ------
    ModelFileError
        If the file is missing, is not a model file, is truncated or cut short, was modified
        or corrupted after saving (SHA-256 mismatch), has a malformed model card or an invalid
        hyperparameter value, or does not fit this version of skinestimator (a newer format
        version, unknown hyperparameters, weights that do not fit the network).

    Examples
    --------
    >>> from skinestimator.deploy import load_model
    >>> clf = load_model("model.skin")  # doctest: +SKIP
    >>> clf.predict(["lesion.jpg"])  # doctest: +SKIP
    array(['nv'], dtype=object)
    """
    path = Path(path)
    card, state = _read_verified(path)

    estimator = card.get("estimator")
    if estimator != "SkinLesionClassifier":
        raise ModelFileError(f"{path}: holds a {estimator!r}, which this version cannot load")
    from skinestimator import SkinLesionClassifier

    params = _params_from_card(card, path)
    known = SkinLesionClassifier().get_params(deep=False)
    unknown = sorted(set(params) - set(known))
    if unknown:
        version = (card.get("versions") or {}).get("skinestimator")
        raise ModelFileError(
            f"{path}: was written by skinestimator {version} "
            f"with hyperparameters this version does not know ({', '.join(unknown)}); "
            "upgrade skinestimator to load it"
        )
    _relax_machine_settings(params)
    clf = SkinLesionClassifier(**params)
    _check_hyperparameters(clf, params, path)
    classes = _classes_array(card["classes"], card.get("classes_kind", "str"), path)
    if card.get("classes_object"):
        classes = classes.astype(object)
    image_size = tuple(int(v) for v in card["preprocessing"]["image_size"])
    _check_weights_fit(clf, len(classes), state, path, card.get("backbone"))

    try:
        clf = clf._restore(
            classes=classes,
            image_size=image_size,
            state_dict=state,
            history=card.get("history") or [],
            n_features_in=card.get("n_features_in"),
            **_uncertainty_of(card, len(classes), path),
        )
    except ModelFileError:
        raise
    except (RuntimeError, ValueError, TypeError) as exc:
        first = _first_line(exc)
        if isinstance(exc, RuntimeError) and "loading state_dict" in first:
            # load_state_dict's report of missing / unexpected keys or shape mismatches (only
            # reached when the meta-device comparison above could not run).
            raise ModelFileError(
                f"{path}: the weights do not fit the {card.get('backbone')!r} network of this "
                f"skinestimator version ({first})"
            ) from exc
        raise ModelFileError(
            f"{path}: this skinestimator version cannot rebuild the {card.get('backbone')!r} "
            f"network the file describes ({first})"
        ) from exc
    clf.model_card_ = card
    return clf


def _relax_machine_settings(params: dict[str, Any]) -> None:
    """Turn the settings of the machine that trained the model into ``"auto"`` where this
    machine cannot honour them: a model trained on a GPU (CUDA, a second CUDA GPU, Apple's MPS,
    XPU, ...) must still open on a laptop, and a card's ``num_workers`` (or a crafted one asking
    for thousands) must not fork more data-loader processes than this machine has CPUs."""
    from skinestimator._runtime import resolve_device

    device = params.get("device")
    if isinstance(device, str):
        try:
            resolve_device(device)
        except ValueError:
            params["device"] = "auto"
    workers = params.get("num_workers")
    if (
        isinstance(workers, int)
        and not isinstance(workers, bool)
        and workers > (os.cpu_count() or 1)
    ):
        params["num_workers"] = "auto"


def _check_hyperparameters(clf, params: Mapping[str, Any], path: Path) -> None:
    """Refuse a card whose hyperparameter values this version rejects, naming the one at fault
    (a bad value is the card's problem, not the weights')."""
    from skinestimator import SkinLesionClassifier
    from skinestimator._runtime import resolve_device

    def problem(estimator) -> Exception | None:
        try:
            estimator._check_params()
            resolve_device(estimator.device)
        except (TypeError, ValueError) as exc:  # TypeError: e.g. a list where a name belongs
            return exc
        return None

    found = problem(clf)
    if found is None:
        return
    # Each value alone, against the defaults, to name the parameter at fault.
    for name in sorted(params):
        alone = problem(SkinLesionClassifier(**{name: params[name]}))
        if alone is not None:
            raise ModelFileError(
                f"{path}: the model card's hyperparameter {name!r} has an invalid value "
                f"{params[name]!r} ({_first_line(alone)})"
            ) from alone
    raise ModelFileError(
        f"{path}: the model card's hyperparameters are invalid together ({_first_line(found)})"
    ) from found


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _check_weights_fit(clf, n_classes: int, state: Mapping[str, Any], path: Path,
                       backbone: Any) -> None:
    """Refuse weights whose names or shapes differ from the network the card describes, before
    that network is built: a few-KB file naming a huge backbone or listing millions of classes
    used to make the loader allocate gigabytes first."""
    import torch

    n_numbers = sum(int(t.numel()) for t in state.values())
    if n_classes > n_numbers:
        # The classification head holds at least one number per class.
        raise ModelFileError(
            f"{path}: the model card lists {n_classes} classes but the weights hold only "
            f"{n_numbers} numbers: the weights do not fit the {backbone!r} network"
        )
    try:
        # On the meta device modules get shapes but no memory, and no initialization runs.
        # The very build _restore makes next, so that the two cannot drift apart.
        with torch.device("meta"):
            module = clf._network(pretrained=False, n_classes=n_classes)
        expected = {name: tuple(t.shape) for name, t in module.state_dict().items()}
    except Exception:  # noqa: BLE001 - the real build in _restore reports the problem
        return
    found = {name: tuple(t.shape) for name, t in state.items()}
    if found == expected:
        return
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    shapes = sorted(n for n in set(found) & set(expected) if found[n] != expected[n])

    def listed(names, describe=lambda n: n):
        shown = ", ".join(describe(n) for n in names[:3])
        return shown + (f" and {len(names) - 3} more" if len(names) > 3 else "")

    details = []
    if missing:
        details.append(f"missing {listed(missing)}")
    if unexpected:
        details.append(f"unexpected {listed(unexpected)}")
    if shapes:
        details.append("shape of " + listed(
            shapes, lambda n: f"{n} {list(found[n])} instead of {list(expected[n])}"))
    raise ModelFileError(
        f"{path}: the weights do not fit the {backbone!r} network of this skinestimator "
        f"version with {n_classes} classes ({'; '.join(details)})"
    )


def _params_from_card(card: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """The hyperparameters of a model card, with tuples and non-string-keyed dicts restored."""
    params = dict(card.get("params") or {})
    for name in card.get("params_tuples") or []:
        if isinstance(params.get(name), list):
            params[name] = tuple(params[name])
    dicts = card.get("params_dicts") or {}
    if not isinstance(dicts, dict):
        raise ModelFileError(f"{path}: the model card's params_dicts is not a mapping")
    for name, pairs in dicts.items():
        if not isinstance(pairs, list) or not all(
            isinstance(p, list) and len(p) == 2 and _is_plain_key(p[0]) for p in pairs
        ):
            raise ModelFileError(
                f"{path}: the model card stores hyperparameter {name!r} in an unknown form"
            )
        params[name] = {key: value for key, value in pairs}
    return params


def _classes_array(classes: list, kind: str, path: Path) -> np.ndarray:
    if kind == "str":
        return np.asarray([str(c) for c in classes])
    if kind in ("int", "float", "bool"):
        return np.asarray(classes, dtype={"int": np.int64, "float": np.float64, "bool": bool}[kind])
    raise ModelFileError(f"{path}: unknown class label type {kind!r}")


# The type each class label of a ``classes_kind`` has in the card's JSON.
_LABEL_CHECKS = {
    "str": lambda c: isinstance(c, str),
    "int": lambda c: isinstance(c, int) and not isinstance(c, bool) and -2**63 <= c < 2**63,
    "float": lambda c: (isinstance(c, (int, float)) and not isinstance(c, bool)
                        and math.isfinite(c)),
    "bool": lambda c: isinstance(c, bool),
}


def _check_card(card: Any, path: Path) -> None:
    """Check the structure of a model card in one place, so that a malformed card (a file from
    another writer, or edited) gives a ModelFileError naming the field instead of a TypeError
    deep inside loading (and "internal error" on the command line)."""

    def bad(field: str, expected: str, value: Any = None) -> ModelFileError:
        got = "" if value is None else f", got {type(value).__name__}"
        return ModelFileError(
            f"{path}: the model card is malformed: {field} must be {expected}{got}"
        )

    def is_int(value, minimum) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= minimum

    if not isinstance(card, dict):
        raise bad("the card", "a JSON object", card)
    for field in ("estimator", "backbone", "created", "notes"):
        if card.get(field) is not None and not isinstance(card[field], str):
            raise bad(f"'{field}'", "a string", card[field])
    classes, kind = card.get("classes"), card.get("classes_kind", "str")
    if not isinstance(classes, list) or not classes:
        raise bad("'classes'", "a non-empty list of labels", classes)
    if kind not in _LABEL_CHECKS:
        raise bad("'classes_kind'", "one of 'str', 'int', 'float' or 'bool'", kind)
    wrong = [c for c in classes if not _LABEL_CHECKS[kind](c)]
    if wrong:
        raise ModelFileError(
            f"{path}: the model card is malformed: 'classes' holds {wrong[0]!r}, which is not "
            f"a label of its 'classes_kind' {kind!r}"
        )
    if len(set(classes)) != len(classes):
        raise bad("'classes'", "distinct labels")
    if not isinstance(card.get("classes_object", False), bool):
        raise bad("'classes_object'", "true or false", card["classes_object"])
    preprocessing = card.get("preprocessing")
    if not isinstance(preprocessing, dict):
        raise bad("'preprocessing'", "a JSON object", preprocessing)
    size = preprocessing.get("image_size")
    if not (isinstance(size, list) and len(size) == 2 and all(is_int(v, 1) for v in size)):
        raise bad("'preprocessing.image_size'", "two positive integers [height, width]")
    if not isinstance(card.get("params"), dict):
        raise bad("'params'", "a JSON object", card.get("params"))
    for field in ("params_tuples", "params_not_saved"):
        value = card.get(field)
        if value is not None and not (
            isinstance(value, list) and all(isinstance(v, str) for v in value)
        ):
            raise bad(f"'{field}'", "a list of hyperparameter names", value)
    for field in ("params_dicts", "training_data", "metrics", "versions"):
        if card.get(field) is not None and not isinstance(card[field], dict):
            raise bad(f"'{field}'", "a JSON object", card[field])
    for name, pairs in (card.get("params_dicts") or {}).items():
        if not isinstance(pairs, list) or not all(
            isinstance(p, list) and len(p) == 2 and _is_plain_key(p[0]) for p in pairs
        ):
            raise bad(f"'params_dicts.{name}'", "a list of [key, value] pairs")
    history = card.get("history")
    if history is not None and not (
        isinstance(history, list) and all(isinstance(row, dict) for row in history)
    ):
        raise bad("'history'", "a list of JSON objects (one per epoch)")
    for field in ("n_features_in", "n_parameters"):
        if card.get(field) is not None and not is_int(card[field], 0):
            raise bad(f"'{field}'", "a non-negative integer", card[field])


def _uncertainty_of(card: dict, n_classes: int, path: Path) -> dict[str, Any]:
    """``temperature`` and ``conformal_scores`` for ``_restore`` (files of earlier versions
    have neither: temperature 1, no scores)."""
    from ..uncertainty import ConformalScores

    data = card.get("uncertainty") or {}
    temperature = data.get("temperature", 1.0)
    if not isinstance(temperature, numbers.Real) or isinstance(temperature, bool) \
            or not math.isfinite(temperature) or temperature <= 0:
        raise ModelFileError(f"{path}: the model card's 'uncertainty.temperature' must be a "
                             f"positive number, got {temperature!r}")
    scores = data.get("conformal_scores")
    if scores is not None:
        try:
            scores = ConformalScores.from_dict(scores)
            valid = (scores.n_classes == n_classes and scores.scores.ndim == 1
                     and len(scores.scores) == len(scores.labels)
                     and ((scores.labels >= 0) & (scores.labels < n_classes)).all())
        except (KeyError, TypeError, ValueError):
            valid = False
        if not valid:
            raise ModelFileError(f"{path}: the model card's 'uncertainty.conformal_scores' are "
                                 "malformed (scores and labels of the classes)")
    return {"temperature": float(temperature), "conformal_scores": scores}


def _read_verified(path: Path, *, with_tensors: bool = True
                   ) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The verified card, and the weights as torch tensors when ``with_tensors`` (otherwise None,
    but for a dtype the byte reader lacks: the card alone is read and verified without torch)."""
    if not path.exists():
        raise ModelFileError(f"{path}: model file not found")
    if path.is_dir():
        raise ModelFileError(f"{path}: is a folder, not a model file")
    data = path.read_bytes()
    header = _parse_header(path, data)
    metadata = header.get("__metadata__") or {}
    if not _is_model_metadata(metadata):
        raise ModelFileError(
            f"{path}: is a safetensors file but not a skinestimator model file "
            "(no model card); write one with skinestimator.deploy.save_model"
        )
    # A newer version before the digest: a newer format may compute its digest differently
    # (this one hashes its own version in), so checking the digest first called such files
    # corrupted. Anything else unexpected (missing, unreadable) is most likely damage, which
    # the digest check reports.
    try:
        version = int(metadata.get("format_version", "0"))
    except (TypeError, ValueError):
        version = -1
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: model file format version {metadata.get('format_version')!r} is newer "
            f"than this skinestimator reads (version {FORMAT_VERSION}); upgrade skinestimator "
            "to load it"
        )
    # The digest first, from the bytes: a damaged file is called damaged whichever reader
    # meets it, and the card alone never needs torch.
    digest = _file_digest(metadata, header, data)
    tensors = None
    if digest is None:
        tensors = _torch_tensors(path, data)
        digest = _digest(metadata, tensors)
    expected = metadata.get("sha256")
    if not isinstance(expected, str) or digest != expected:
        raise ModelFileError(
            f"{path}: integrity check failed (SHA-256 mismatch): the file was modified or "
            "corrupted after it was saved; refusing to load it"
        )
    if version != FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: model file format version {metadata.get('format_version')!r} is not "
            f"supported by this skinestimator (it reads version {FORMAT_VERSION}); "
            "use a matching skinestimator version"
        )
    try:
        card = json.loads(metadata["model_card"])
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path}: the model card is unreadable (not JSON)") from exc
    _check_card(card, path)
    card["sha256"] = expected
    if with_tensors and tensors is None:
        tensors = _torch_tensors(path, data)
    return card, tensors


def _torch_tensors(path: Path, data: bytes) -> dict[str, Any]:
    from safetensors import SafetensorError
    from safetensors.torch import load as _st_load

    try:
        return _st_load(data)
    except SafetensorError as exc:
        raise ModelFileError(f"{path}: the weights are damaged and cannot be read ({exc})") from exc


def _is_model_metadata(metadata) -> bool:
    """A model file's safetensors metadata: its format tag, or (the tag itself damaged) the
    digest and card, so that the digest check can say the file was modified."""
    return isinstance(metadata, dict) and (
        metadata.get("format") == FORMAT_NAME or ("sha256" in metadata and "model_card" in metadata)
    )


def has_model_header(path: str | os.PathLike) -> bool:
    """Whether ``path`` starts like a skinestimator model file: its header only, no digest
    check, so it is cheap to ask of any file (the command line does before writing over one)."""
    try:
        with open(path, "rb") as fh:
            prefix = fh.read(8)
            n_header = struct.unpack("<Q", prefix)[0] if len(prefix) == 8 else 0
            data = prefix + fh.read(min(n_header, _MAX_HEADER_BYTES))
        header = _parse_header_block(Path(path), data)
    except (OSError, ModelFileError):
        return False
    return _is_model_metadata(header.get("__metadata__"))


def _parse_header_block(path: Path, data: bytes) -> dict[str, Any]:
    """The safetensors header at the start of ``data`` (the whole file, or only its header),
    its framing checked here so that each failure gets its own message."""
    if len(data) == 0:
        raise ModelFileError(f"{path}: is empty, not a model file")
    if len(data) < 9:
        raise ModelFileError(f"{path}: is truncated ({len(data)} bytes), not a whole model file")
    (n_header,) = struct.unpack("<Q", data[:8])
    if data[8:9] != b"{" or n_header < 2 or n_header > _MAX_HEADER_BYTES:
        # Only now look for other formats: a safetensors length prefix may itself start with
        # 0x80, so the pickle test must not run on files that have a safetensors header.
        if data.startswith(_ZIP_MAGIC) or (data[:1] == _PICKLE_MAGIC and data[1:2] <= b"\x05"):
            raise ModelFileError(
                f"{path}: looks like a pickle / joblib / torch.save file, not a skinestimator "
                "model file; such files can run code and must only be loaded with joblib.load "
                "from a source you trust"
            )
        raise ModelFileError(
            f"{path}: is not a skinestimator model file (no safetensors header found)"
        )
    if 8 + n_header > len(data):
        raise ModelFileError(
            f"{path}: is truncated: its header alone needs {8 + n_header} bytes but the file "
            f"has {len(data)}; copy or download it again"
        )
    try:
        header = json.loads(data[8 : 8 + n_header].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(
            f"{path}: header is corrupted (not valid JSON): the file was modified or damaged"
        ) from exc
    if not isinstance(header, dict):
        raise ModelFileError(f"{path}: header is corrupted: the file was modified or damaged")
    return header


def _parse_header(path: Path, data: bytes) -> dict[str, Any]:
    """``_parse_header_block``, then the weights' offsets checked against the file's size."""
    header = _parse_header_block(path, data)
    (n_header,) = struct.unpack("<Q", data[:8])
    end = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            begin, stop = entry["data_offsets"]
            end = max(end, int(stop))
        except (TypeError, KeyError, ValueError) as exc:
            raise ModelFileError(
                f"{path}: header is corrupted (tensor {name!r} has no valid offsets)"
            ) from exc
    n_data = len(data) - 8 - n_header
    if n_data < end:
        raise ModelFileError(
            f"{path}: is truncated: it should hold {8 + n_header + end} bytes but has "
            f"{len(data)}; copy or download it again"
        )
    if n_data > end:
        raise ModelFileError(
            f"{path}: has {n_data - end} unexpected bytes after the weights: the file was "
            "modified or damaged"
        )
    return header
