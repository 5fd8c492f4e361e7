"""Training augmentation for skin photos, applied to whole batches with per-image randomness."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["BatchAugmentation"]

# RGB -> YIQ; a hue shift is a rotation of the (I, Q) chroma plane, so it is linear in RGB.
_RGB_TO_YIQ = torch.tensor(
    [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]]
)
_GREY = torch.tensor([0.299, 0.587, 0.114])


class BatchAugmentation:
    """Random flips, rotation, scale, shift and colour jitter for a batch ``(N, 3, H, W)``.

    Lesions have no canonical orientation, so flips on both axes and rotations of any angle keep
    the label; scale and shift mimic the distance and framing of the photo; brightness, contrast,
    saturation and hue jitter mimic cameras and lighting. Every image gets its own random draw.

    Why not torchvision.transforms.v2 or kornia: v2 draws one set of parameters per call, so it
    must run image by image (measured here: about 28 ms per 128 px image under load, more than
    the network's own training step), and kornia's batched pipeline cost 0.31 s per batch of 32.
    Here all geometry (flips included) is one affine matrix per image and one ``grid_sample``
    call, and all colour jitter is one 3×3 matrix per image plus the contrast blend: a few
    milliseconds per batch, on the CPU or on the GPU where the batch already is.

    Parameters
    ----------
    strength : float in (0, 1]
        Scales every range: rotations up to ±180°·strength, scale in
        [1 − 0.15·strength, 1 + 0.2·strength], shifts up to 6 %·strength of the side, brightness,
        contrast and saturation factors in 1 ± 0.25·strength, hue shifts up to ±0.03·strength of
        the colour circle. Flips on both axes are drawn with probability 1/2 at every strength:
        they change no pixel's value and no lesion's label, so there is nothing to scale.

    Examples
    --------
    >>> import torch
    >>> from skinestimator.data import BatchAugmentation
    >>> batch = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    >>> out = BatchAugmentation(1.0)(batch)
    >>> out.shape, out.dtype, bool(out.min() >= 0 and out.max() <= 1)
    (torch.Size([4, 3, 32, 32]), torch.float32, True)
    """

    def __init__(self, strength: float = 1.0):
        if not 0 < strength <= 1:
            raise ValueError(f"strength must be in (0, 1], got {strength!r}")
        self.strength = float(strength)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
        return self._colour(self._geometry(x))

    def _uniform(self, n, low, high, like):
        return torch.rand(n, device=like.device, dtype=like.dtype) * (high - low) + low

    def _geometry(self, x: torch.Tensor) -> torch.Tensor:
        n, _, height, width = x.shape
        s = self.strength
        angle = self._uniform(n, -math.pi * s, math.pi * s, x)
        scale = self._uniform(n, 1 - 0.15 * s, 1 + 0.2 * s, x)
        flip_x = torch.where(torch.rand(n, device=x.device) < 0.5, -1.0, 1.0).to(x)
        flip_y = torch.where(torch.rand(n, device=x.device) < 0.5, -1.0, 1.0).to(x)
        shift_x = self._uniform(n, -0.12 * s, 0.12 * s, x)  # normalized coords span 2
        shift_y = self._uniform(n, -0.12 * s, 0.12 * s, x)
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        # Output pixel -> input pixel in pixel units, then into grid_sample's [-1, 1] units,
        # where x is scaled by width/2 and y by height/2 (keeps rotations round on non-squares).
        aspect = height / width
        theta = torch.stack([
            torch.stack([cos * flip_x, -sin * flip_y * aspect, shift_x], dim=1),
            torch.stack([sin * flip_x / aspect, cos * flip_y, shift_y], dim=1),
        ], dim=1)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        # Reflection fills the corners with skin rather than black wedges.
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection",
                             align_corners=False)

    def _colour(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        s = self.strength
        brightness = self._uniform(n, 1 - 0.25 * s, 1 + 0.25 * s, x)
        contrast = self._uniform(n, 1 - 0.25 * s, 1 + 0.25 * s, x)
        saturation = self._uniform(n, 1 - 0.25 * s, 1 + 0.25 * s, x)
        hue = self._uniform(n, -0.03 * s, 0.03 * s, x) * 2 * math.pi
        to_yiq = _RGB_TO_YIQ.to(x)
        from_yiq = torch.linalg.inv(to_yiq)
        eye = torch.eye(3, device=x.device, dtype=x.dtype)
        grey = _GREY.to(x)
        rotate = torch.zeros(n, 3, 3, device=x.device, dtype=x.dtype)
        rotate[:, 0, 0] = 1
        rotate[:, 1, 1] = rotate[:, 2, 2] = torch.cos(hue)
        rotate[:, 1, 2], rotate[:, 2, 1] = -torch.sin(hue), torch.sin(hue)
        hue_matrix = from_yiq @ rotate @ to_yiq
        saturation_matrix = (saturation[:, None, None] * eye
                             + (1 - saturation)[:, None, None] * grey.expand(3, 3))
        matrix = brightness[:, None, None] * (saturation_matrix @ hue_matrix)
        # Contrast blends with the image's mean grey level, which is linear in the input too:
        # everything folds into out = (c·M) x + (1 − c)·grey·M·mean(x), one batched matmul.
        flat = x.reshape(n, 3, -1)
        mean_grey = ((grey @ matrix) * flat.mean(dim=2)).sum(dim=1)  # (n,)
        bias = ((1 - contrast) * mean_grey)[:, None, None].expand(n, 3, 1)
        out = torch.baddbmm(bias, contrast[:, None, None] * matrix, flat)
        return out.reshape(x.shape).clamp_(0.0, 1.0)
