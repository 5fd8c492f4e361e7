"""Grad-CAM explanations: which part of an image made the classifier decide."""

from ._gradcam import explain, gradcam, overlay_heatmap

__all__ = ["explain", "gradcam", "overlay_heatmap"]
