"""``LesionNet``: the one module type the estimator trains, whatever the backbone."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["LesionNet"]


class LesionNet(nn.Module):
    """Normalization → backbone features → classification head, returning logits.

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
    ):
        super().__init__()
        self.body = body
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
