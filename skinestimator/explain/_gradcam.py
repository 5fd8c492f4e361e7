"""Grad-CAM heatmaps for a fitted classifier and an overlay helper.

A focused implementation rather than a dependency: every network the estimator trains is a
``LesionNet`` that already splits into ``features`` (last convolutional map) and ``head``
(logits), which is exactly the cut Grad-CAM needs. With that split, Grad-CAM is one forward pass
of the head and one gradient, without forward/backward hooks, without a library that must guess
the target layer, and without running the backbone with gradients (so frozen backbones cost
inference time only). The tests check the result against captum's ``LayerGradCam``.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._warnings import warn_user

__all__ = ["explain", "overlay_heatmap", "gradcam"]


def gradcam(module, images, target_indices=None):
    """Grad-CAM of a ``LesionNet``-like module on one batch.

    Parameters
    ----------
    module : torch.nn.Module
        Has ``normalize(images)``, ``features(x)`` returning a ``(N, C, h, w)`` map and
        ``head(feature_map)`` returning logits.
    images : torch.Tensor of shape (N, 3, H, W)
        ``uint8`` (0–255) or floating point (0–1) pixels.
    target_indices : sequence of int or None
        Class index per image; ``None`` explains each image's highest-scoring class.

    Returns
    -------
    heatmaps : ndarray of shape (N, H, W), dtype float32
        In [0, 1], each scaled so its maximum is 1 (all zeros when no region speaks for the
        class).
    logits : ndarray of shape (N, n_classes)
    """
    import torch
    import torch.nn.functional as F

    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            feature_map = module.features(module.normalize(images))
        if feature_map.ndim != 4:
            raise ValueError(
                "Grad-CAM needs a convolutional feature map (N, C, h, w); this network's "
                f"features() returns shape {tuple(feature_map.shape)}"
            )
        # Gradients are needed only from the feature map onwards.
        feature_map = feature_map.detach().float().requires_grad_(True)
        with torch.enable_grad():
            logits = module.head(feature_map)
            if target_indices is None:
                target = logits.argmax(dim=1)
            else:
                target = torch.as_tensor(np.asarray(target_indices), dtype=torch.long)
            score = logits.gather(1, target.view(-1, 1)).sum()
            (gradients,) = torch.autograd.grad(score, feature_map)
        weights = gradients.mean(dim=(2, 3), keepdim=True)
        cam = torch.relu((weights * feature_map.detach()).sum(dim=1, keepdim=True))
        cam = F.interpolate(cam, size=tuple(images.shape[-2:]), mode="bilinear",
                            align_corners=False)[:, 0]
        peak = cam.flatten(1).amax(dim=1).view(-1, 1, 1)
        cam = torch.where(peak > 0, cam / peak.clamp_min(1e-12), torch.zeros_like(cam))
        return cam.cpu().numpy().astype(np.float32), logits.detach().cpu().numpy()
    finally:
        module.train(was_training)


def explain(clf: Any, images, target=None, *, batch_size: int = 32) -> np.ndarray:
    """Grad-CAM heatmaps: where in each image the network found evidence for a class.

    Parameters
    ----------
    clf : SkinLesionClassifier, Pipeline or search
        A fitted classifier; or a fitted :class:`~sklearn.pipeline.Pipeline` whose last step
        is one (``images`` go through the earlier steps' ``transform`` first, as in
        ``pipeline.predict``); or a fitted search (``GridSearchCV``,
        ``OptunaLesionSearchCV``, ...) refitted with ``refit=True``, whose
        ``best_estimator_`` (a classifier or such a Pipeline) is explained.
    images : array-like
        A batch, read as ``clf.predict_proba`` reads it: image paths, an array of RGB images
        ``(n, height, width, 3)``, grey images ``(n, height, width)`` or
        ``(n, height, width, 1)``, or flattened images ``(n, features)``. A 3-D array is a
        batch of grey images, so one RGB image ``(height, width, 3)`` is refused rather
        than read as ``height`` grey images 3 pixels wide: pass ``image[None]``.
    target : label, array-like of labels, or None, default=None
        The class to explain, as a label of ``clf.classes_`` (``"mel"``), not a column
        index: ``None`` explains each image's predicted class, the one ``clf.predict`` gives
        (with ``tta=True`` too, where it averages flipped views); one label explains that
        class for every image; an array gives one label per image. Labels may also be
        given as text (``"1"`` for the class ``1``).
    batch_size : int, default=32
        Images per forward pass (a positive integer).

    Returns
    -------
    heatmaps : ndarray of shape (n_images, height, width), dtype float32
        At ``clf.image_size_``, aligned with ``clf.to_image_array(images)``. For a Pipeline
        they are at its classifier's ``image_size_`` and aligned with the images the
        classifier sees, the transformed ones,
        ``pipeline[-1].to_image_array(pipeline[:-1].transform(images))``, not with
        ``images`` themselves (a cropping or resizing step moves the pixels). Values in [0, 1],
        1 at each image's strongest evidence for ``target``. A map is all zeros where the
        image holds no positive evidence for that class: Grad-CAM keeps only what speaks
        for the class (a ReLU), so a class the network sees nothing of, typically one
        other than the predicted class, can give an empty map.

    Raises
    ------
    ValueError
        If ``clf`` is not fitted or is none of the estimators above (the message says what to
        pass), ``batch_size`` is not a positive integer, ``images`` is
        empty (as for ``clf.predict_proba``) or one ``(height, width, 3)`` image, or
        ``target`` is not one of ``clf.classes_`` (the message lists them).

    See Also
    --------
    overlay_heatmap : Blend a heatmap onto its image for display.

    Notes
    -----
    Grad-CAM (Selvaraju et al., 2017) weights the channels of the last convolutional feature
    map by the mean gradient of the class score and keeps the positive part, so its resolution
    is that of the feature map (e.g. 1/8 of the input for ``seed_cnn``, 1/32 for
    EfficientNet), upsampled bilinearly. Each map is scaled to a maximum of 1, so maps show
    where, not how much: compare classes with the predicted probabilities, not the maps'
    peaks; a map that is all zeros means no positive evidence at all. It shows what the
    model used, not what is medically relevant: a model that learned a ruler or a skin marker
    will highlight it.

    Examples
    --------
    >>> from skinestimator import SkinLesionClassifier, make_synthetic_lesions
    >>> from skinestimator.explain import explain, overlay_heatmap
    >>> X, y = make_synthetic_lesions(n_samples=40, image_size=(32, 32), random_state=0)
    >>> clf = SkinLesionClassifier(backbone="seed_cnn", max_epochs=1, image_size=(32, 32),
    ...                            random_state=0).fit(X, y)
    >>> heatmaps = explain(clf, X[:2])
    >>> heatmaps.shape
    (2, 32, 32)
    >>> overlay_heatmap(clf.to_image_array(X[:1])[0], heatmaps[0]).shape
    (32, 32, 3)
    """
    import torch

    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or (
        batch_size < 1
    ):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    batch_size = int(batch_size)
    clf, transforms = _explained_classifier(clf)
    module = clf.net_.module_
    if not getattr(module, "has_feature_map", True):
        warn_user(
            "this network has no convolutional feature map (a backbone= factory without "
            "timm's forward_features / forward_head): the heatmaps weigh the input pixels "
            "(gradient x input), a pixel-level saliency map rather than Grad-CAM"
        )
    for transform in transforms:
        images = transform.transform(images)
    # Empty input and one (H, W, 3) image raise here, with the classifier's own messages.
    arrays = np.asarray(clf.to_image_array(images))
    n = len(arrays)
    if target is not None:
        indices = _target_indices(clf.classes_, target, n)
    elif getattr(clf, "tta", False):
        # Test-time augmentation averages four flipped views, whose top class can differ from
        # that of the single unflipped pass Grad-CAM runs: take the class predict gives.
        indices = np.argmax(clf.predict_proba(arrays), axis=1)
    else:
        indices = None  # the single pass's top class, which is what predict gives

    device = next(module.parameters()).device
    # Filled batch by batch (a list of batches, then their concatenation, held them twice).
    heatmaps = np.empty(arrays.shape[:3], dtype=np.float32)
    for start in range(0, n, batch_size):
        chunk = arrays[start : start + batch_size]
        batch = torch.from_numpy(np.ascontiguousarray(chunk.transpose(0, 3, 1, 2))).to(device)
        chunk_target = None if indices is None else indices[start : start + batch_size]
        cams, _ = gradcam(module, batch, chunk_target)
        heatmaps[start : start + len(chunk)] = cams
    return heatmaps


def _explained_classifier(estimator):
    """The fitted classifier that ``explain`` runs, and the fitted steps that prepare its input.

    Unwraps a search's ``best_estimator_`` and a Pipeline's last step (in any nesting), so
    that the classifier sees what it sees in ``estimator.predict``. Raises ``ValueError``
    naming what to pass when that is not a fitted classifier.
    """
    from sklearn.pipeline import Pipeline

    name = type(estimator).__name__
    transforms = []
    final = estimator
    while True:
        # best_estimator_ is absent before fit and with refit=False, or stale when a search
        # is fitted again with refit=False.
        if hasattr(final, "best_estimator_") and getattr(final, "refit", True) is not False:
            final = final.best_estimator_
        elif isinstance(final, Pipeline) and final.steps:
            if len(final.steps) > 1:
                transforms.append(final[:-1])
            final = final.steps[-1][1]
        else:
            break
    # A Pipeline's last step may be "passthrough" or None, which the type name would hide.
    final_name = repr(final) if final is None or isinstance(final, str) else type(final).__name__
    where = name if final is estimator else f"{name} (final estimator {final_name})"
    if hasattr(final, "to_image_array"):
        if getattr(getattr(final, "net_", None), "module_", None) is None or not hasattr(
            final, "classes_"
        ):
            raise ValueError(f"{where} is not fitted: call fit before explaining")
        return final, transforms
    expected = (
        "explain takes a fitted SkinLesionClassifier, a fitted Pipeline whose last step is "
        "one, or a search over one fitted with refit=True (its best_estimator_ is explained)"
    )
    if hasattr(final, "cv_results_"):
        raise ValueError(f"{expected}; {where} was fitted with refit=False: it has no "
                         "best_estimator_")
    # Only a wrapper (a search) would be explainable once fitted; for anything else,
    # "not fitted" would suggest that fitting it helps.
    unfitted_wrapper = hasattr(final, "estimator") and not _is_fitted(final)
    raise ValueError(f"{expected}; got {where}" + (", which is not fitted" if unfitted_wrapper
                                                   else ""))


def _is_fitted(estimator) -> bool:
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    try:
        check_is_fitted(estimator)
    except NotFittedError:
        return False
    except TypeError:  # not an estimator at all: "not fitted" would mislead
        return True
    return True


def _target_indices(classes, target, n: int) -> np.ndarray:
    classes = np.asarray(classes)
    lookup = {c: i for i, c in enumerate(classes.tolist())}
    if np.ndim(target) == 0:
        targets = [target] * n
    else:
        targets = list(np.asarray(target, dtype=object).tolist())
        if len(targets) != n:
            raise ValueError(f"target has {len(targets)} labels for {n} images")
    out = []
    for label in targets:
        if label not in lookup:
            # Labels may arrive as text (command line) for integer classes.
            matches = [i for c, i in lookup.items() if str(c) == str(label)]
            if not matches:
                known = ", ".join(map(repr, classes.tolist()))
                hint = ""
                if (
                    isinstance(label, numbers.Integral)
                    and not isinstance(label, bool)
                    and 0 <= label < len(classes)
                    and not any(isinstance(c, numbers.Integral) for c in lookup)
                ):
                    # An integer for a model with text labels is most likely a column index.
                    hint = (
                        f". target takes class labels, not column indices: column {label} "
                        f"is {classes.tolist()[label]!r}"
                    )
                raise ValueError(f"unknown class {label!r}; the model knows: {known}{hint}")
            out.append(matches[0])
        else:
            out.append(lookup[label])
    return np.asarray(out, dtype=np.int64)


def overlay_heatmap(
    image,
    heatmap,
    *,
    alpha: float = 0.45,
    colormap: str = "jet",
    size: Sequence[int] | None = None,
) -> np.ndarray:
    """Blend a heatmap onto its image as a coloured overlay.

    Parameters
    ----------
    image : ndarray of shape (H, W, 3)
        ``uint8`` (0–255) or float (0–1) RGB image, e.g. a row of ``clf.to_image_array(X)``.
    heatmap : ndarray of shape (h, w)
        Values in [0, 1], e.g. a row of :func:`explain`'s result; resized to the image.
    alpha : float, default=0.45
        Weight of the heatmap colours (0 shows only the image).
    colormap : str, default="jet"
        A matplotlib colormap name.
    size : (height, width) or None, default=None
        Output size; small model inputs are easier to read enlarged (e.g. ``(256, 256)``).

    Returns
    -------
    overlay : ndarray of shape (height, width, 3), dtype uint8

    Examples
    --------
    >>> import numpy as np
    >>> from skinestimator.explain import overlay_heatmap
    >>> image = np.full((32, 32, 3), 200, dtype=np.uint8)
    >>> heat = np.zeros((8, 8)); heat[2, 2] = 1.0
    >>> overlay_heatmap(image, heat, size=(128, 128)).shape
    (128, 128, 3)
    """
    import matplotlib
    from PIL import Image

    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must have shape (H, W, 3), got {image.shape}")
    if image.dtype != np.uint8:
        image = np.clip(np.asarray(image, dtype=np.float64) * 255.0 + 0.5, 0, 255)
        image = image.astype(np.uint8)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    heatmap = np.asarray(heatmap, dtype=np.float32)
    if heatmap.ndim != 2:
        raise ValueError(f"heatmap must have shape (h, w), got {heatmap.shape}")

    height, width = image.shape[:2] if size is None else (int(size[0]), int(size[1]))
    if (height, width) != image.shape[:2]:
        image = np.asarray(
            Image.fromarray(image).resize((width, height), Image.Resampling.BICUBIC)
        )
    if heatmap.shape != (height, width):
        heatmap = np.asarray(
            Image.fromarray(heatmap, mode="F").resize((width, height), Image.Resampling.BILINEAR)
        )
    heatmap = np.clip(np.nan_to_num(heatmap), 0.0, 1.0)
    colours = matplotlib.colormaps[colormap](heatmap)[..., :3] * 255.0
    blended = (1.0 - alpha) * image.astype(np.float64) + alpha * colours
    return np.clip(blended + 0.5, 0, 255).astype(np.uint8)
