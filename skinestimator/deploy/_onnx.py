"""ONNX export of a fitted classifier for mobile, edge and non-Python runtimes."""

from __future__ import annotations

import contextlib
import io
import json
import numbers
import os
from pathlib import Path
from typing import Any

import numpy as np

from ._model_file import _check_is_classifier

__all__ = ["export_onnx"]


def _probability_model(module, tta: bool = False, temperature: float = 1.0):
    """Wrap the network so the ONNX graph takes raw pixels and returns probabilities.

    Putting the layout change, the scaling and the softmax inside the graph means a mobile app
    only has to decode and resize the photo: the normalization the network was trained with
    travels with the file and cannot be forgotten or done differently.
    """
    import torch

    class _Probabilities(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, image):  # image: uint8 (N, H, W, 3)
            x = image.permute(0, 3, 1, 2).to(torch.float32) / 255.0
            if not tta:
                return torch.softmax(self.net(x) / temperature, dim=1)
            # The classifier's test-time augmentation: mean probability over the four flips,
            # then its temperature (on the log of the mean, as the classifier does).
            views = (x, x.flip(-1), x.flip(-2), x.flip(-1).flip(-2))
            mean = torch.stack([torch.softmax(self.net(v), dim=1) for v in views]).mean(0)
            return torch.softmax(mean.clamp_min(1e-12).log() / temperature, dim=1)

    return _Probabilities(module).eval()


def export_onnx(clf: Any, path: str | os.PathLike, *, opset_version: int | None = None) -> Path:
    """Export a fitted classifier to one ONNX file that outputs class probabilities.

    The graph's input ``image`` is a ``uint8`` array of shape ``(batch, height, width, 3)``:
    RGB pixels 0–255 already resized to ``clf.image_size_``, and only ``uint8``: runtimes
    reject other dtypes. ``clf.to_image_array(X)`` gives exactly this for image files and
    ``uint8`` arrays, but ``float32`` 0–1 pixels for float arrays: convert those with
    ``(images * 255).round().astype(np.uint8)`` (the probabilities then differ from
    ``predict_proba`` by the 8-bit rounding of the pixels). Normalization, softmax and (when
    ``clf.tta`` is set) the flip test-time augmentation are part of the graph; its output
    ``probabilities`` has shape ``(batch, n_classes)`` in the order of ``clf.classes_``. The
    file's metadata holds the classes (JSON list, key ``classes``), the image size and the
    skinestimator version.

    Parameters
    ----------
    clf : SkinLesionClassifier
        A fitted classifier. A Pipeline is refused (``ModelFileError``, a ``ValueError``): the
        graph would leave out its other steps; export ``pipeline[-1]`` when they only read
        image files (``ImageLoader`` at the classifier's ``image_size_``).
    path : str or path-like
        Where to write the ``.onnx`` file (weights included; one file).
    opset_version : int, optional
        ONNX opset (of the default ``ai.onnx`` domain); the exporter's default when omitted
        (opset 20 with torch 2.14). The exporter builds the graph in its own opset (18 with
        torch 2.14) and converts it when asked for another, which fails for some networks
        (EfficientNet-Lite below 18): then a ``ValueError`` says so and no file is written,
        rather than a file in another opset than requested.

    Returns
    -------
    path : pathlib.Path
        The path written.

    Raises
    ------
    ValueError
        If ``clf`` is not fitted, or the graph could not be written in ``opset_version``.

    Notes
    -----
    Needs the ``onnx`` and ``onnxscript`` packages (``pip install skinestimator[onnx]``); run
    the file with ``onnxruntime`` or any ONNX runtime.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import onnxruntime as ort
    >>> from skinestimator import SkinLesionClassifier, make_synthetic_lesions
    >>> from skinestimator.deploy import export_onnx
    >>> X, y = make_synthetic_lesions(n_samples=40, image_size=(32, 32), random_state=0)
    >>> clf = SkinLesionClassifier(backbone="seed_cnn", max_epochs=1, image_size=(32, 32),
    ...                            random_state=0).fit(X, y)
    >>> path = export_onnx(clf, pathlib.Path(tempfile.mkdtemp()) / "model.onnx")
    >>> session = ort.InferenceSession(str(path))
    >>> proba = session.run(None, {"image": clf.to_image_array(X[:4])})[0]
    >>> proba.shape
    (4, 3)
    """
    import torch

    _check_is_classifier(clf, "export_onnx")
    if opset_version is not None and (
        isinstance(opset_version, bool) or not isinstance(opset_version, numbers.Integral)
    ):
        raise ValueError(f"opset_version must be an int or None, got {opset_version!r}")
    try:
        import onnx
        import onnxscript  # noqa: F401 - the torch.export-based exporter needs it
    except ImportError as exc:
        raise ImportError(
            "export_onnx needs the 'onnx' and 'onnxscript' packages: "
            "pip install 'skinestimator[onnx]'"
        ) from exc

    net = getattr(clf, "net_", None)
    module = getattr(net, "module_", None)
    if module is None or not hasattr(clf, "image_size_"):
        raise ValueError(f"{type(clf).__name__} is not fitted: call fit before exporting it")

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = (int(v) for v in clf.image_size_)
    was_training = module.training
    module.eval()
    wrapper = _probability_model(module, tta=bool(getattr(clf, "tta", False)),
                                 temperature=float(getattr(clf, "temperature_", 1.0)))
    example = torch.zeros((2, height, width, 3), dtype=torch.uint8)
    batch = torch.export.Dim("batch", min=1)
    try:
        # The exporter narrates its steps on stdout; a library call should stay quiet.
        with contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
            program = torch.onnx.export(
                wrapper,
                (example,),
                input_names=["image"],
                output_names=["probabilities"],
                dynamic_shapes=({0: batch},),
                opset_version=opset_version,
                dynamo=True,
                external_data=False,
                verbose=False,
            )
    finally:
        module.train(was_training)

    model = program.model_proto
    written = _main_opset(model)
    if opset_version is not None and written != int(opset_version):
        # The exporter only logs a failed conversion and returns the graph in its own opset:
        # a runtime that needs the requested opset would then reject the file.
        network = type(getattr(module, "body", module)).__name__
        raise ValueError(
            f"the ONNX exporter could not convert this {network} network "
            f"to opset {int(opset_version)} (it produced opset {written}); pass "
            f"opset_version={written}, or leave it None for the exporter's default"
        )
    meta = {
        "classes": json.dumps(np.asarray(clf.classes_).tolist()),
        "image_size": json.dumps([height, width]),
        "input": "uint8 RGB (batch, height, width, 3) resized to image_size",
        "output": "class probabilities (batch, n_classes) in the order of 'classes'",
        "producer": "skinestimator",
        "skinestimator_version": _library_version(),
    }
    del model.metadata_props[:]
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save_model(model, str(path))
    return path


def _main_opset(model) -> int | None:
    """The opset version of the default ONNX domain (``""`` / ``"ai.onnx"``) a model declares."""
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    return None


def _library_version() -> str:
    try:
        from skinestimator import __version__
    except Exception:  # noqa: BLE001
        return "unknown"
    return str(__version__)
