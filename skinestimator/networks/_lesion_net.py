"""``LesionNet``: the one module type the estimator trains, whatever the backbone."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["LesionNet", "shades_of_grey"]


class LesionNet(nn.Module):
    """Colour constancy (optional) → normalization → backbone features → head, returning logits.

    Parameters
    ----------
    body : torch.nn.Module
        The backbone with its classifier. When it has timm's ``forward_features`` and
        ``forward_head`` methods, :meth:`features` and :meth:`head` expose the last
        convolutional feature map (for Grad-CAM and cached-feature training); otherwise the whole
        body is the head.
    mean, std : sequence of 3 floats
        Per-channel normalization of 0–1 pixel values that the backbone's weights expect.
    channels_last : bool, default=True
        Run convolutions in NHWC memory order, about twice as fast on CPUs (oneDNN) and on
        tensor-core GPUs.
    frozen : sequence of torch.nn.Module, default=()
        Sub-modules whose parameters are not trained; their batch-norm statistics are frozen
        too (kept in eval mode when the net trains).
    color_constancy : float or None, default=None
        Minkowski power of shades-of-grey colour constancy applied to every image before the
        normalization (see :func:`shades_of_grey`), or None for none.

    Notes
    -----
    ``forward`` accepts ``uint8`` batches (0–255, scaled here, so data loaders move 4× fewer
    bytes) or floating-point batches already in 0–1.
    """

    def __init__(
        self,
        body: nn.Module,
        *,
        mean: Sequence[float],
        std: Sequence[float],
        channels_last: bool = True,
        frozen: Sequence[nn.Module] = (),
        color_constancy: float | None = None,
    ):
        super().__init__()
        self.body = body
        # A plain attribute, not a buffer: the weights files stay the same with or without it.
        self.color_constancy = None if color_constancy is None else float(color_constancy)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))
        self.channels_last = channels_last
        self._frozen = list(frozen)
        for module in self._frozen:
            for parameter in module.parameters():
                parameter.requires_grad_(False)
        if channels_last:
            self.to(memory_format=torch.channels_last)

    @property
    def has_feature_map(self) -> bool:
        """Whether :meth:`features` returns a real convolutional feature map."""
        return hasattr(self.body, "forward_features") and hasattr(self.body, "forward_head")

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """Scale a raw ``(N, 3, H, W)`` batch to the backbone's input distribution."""
        x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
        if self.color_constancy is not None:
            x = shades_of_grey(x, self.color_constancy)
        x = (x - self.mean) / self.std
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Last convolutional feature map ``(N, C, h, w)`` of a normalized batch."""
        if self.has_feature_map:
            return self.body.forward_features(x)
        return x

    def head(self, feature_map: torch.Tensor) -> torch.Tensor:
        """Logits from a feature map of :meth:`features`."""
        if self.has_feature_map:
            return self.body.forward_head(feature_map)
        return self.body(feature_map)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(self.normalize(images)))

    def train(self, mode: bool = True):
        super().train(mode)
        for module in self._frozen:
            module.eval()
        return self


def shades_of_grey(images: torch.Tensor, power: float = 6.0) -> torch.Tensor:
    """Shades-of-grey colour constancy of a float batch ``(N, 3, H, W)``, per image.

    The torch twin of :class:`~skinestimator.ColorConstancy` (same estimate, same gains; no
    rounding or clipping to ``uint8``), so that it runs inside the network: on the batch where
    it already is (GPU included), after the training augmentation (a photo taken under another
    light is what the network meets at prediction time), and inside exported ONNX graphs.

    Parameters
    ----------
    images : torch.Tensor of shape (N, 3, H, W), floating point
    power : float >= 1 or ``math.inf``
        Minkowski norm of the illuminant estimate (1: grey-world, ``inf``: max-RGB).

    Returns
    -------
    torch.Tensor
        The images with each channel scaled so that the estimated illuminant becomes a grey of
        the same norm (the image's overall brightness is kept).

    Examples
    --------
    >>> import torch
    >>> from skinestimator.networks import shades_of_grey
    >>> reddish = torch.tensor([0.8, 0.4, 0.4]).view(1, 3, 1, 1).expand(1, 3, 4, 4)
    >>> shades_of_grey(reddish)[0, :, 0, 0]
    tensor([0.5657, 0.5657, 0.5657])
    """
    magnitude = images.abs()
    peak = magnitude.amax(dim=(2, 3), keepdim=True)
    if math.isinf(power):
        illuminant = peak
    else:
        # Divided by the channel's peak first, so that no power can overflow float32.
        scale = torch.where(peak > 0, peak, torch.ones_like(peak))
        mean = (magnitude / scale).pow(power).mean(dim=(2, 3), keepdim=True)
        illuminant = torch.where(peak > 0, scale * mean.pow(1.0 / power), torch.zeros_like(peak))
    norm = illuminant.square().sum(dim=1, keepdim=True).sqrt()
    gain = norm / (math.sqrt(3.0) * illuminant.clamp_min(1e-12))
    gain = torch.where(norm > 0, gain, torch.ones_like(gain))
    return images * gain
