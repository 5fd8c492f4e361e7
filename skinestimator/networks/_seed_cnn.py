"""The from-scratch sequential CNN the project grew out of, made size-agnostic."""

from __future__ import annotations

from torch import nn

__all__ = ["SeedCNN"]


class SeedCNN(nn.Module):
    """Conv/pool feature extraction → dense layers, as in the original Keras-style model.

    Three blocks of ``conv 3x3 → batch norm → ReLU → max-pool 2`` (``width``, ``2*width``,
    ``4*width`` channels), then adaptive average pooling to 4×4 so any input size works, a dense
    layer and the class layer. Softmax over the classes is applied by the estimator's loss and
    ``predict_proba``. (Batch norm, absent in the original, makes it train in a few epochs.)

    Parameters
    ----------
    n_classes : int
    width : int, default=32
    dense : int, default=128
    dropout : float, default=0.3
    """

    def __init__(self, n_classes: int, *, width: int = 32, dense: int = 128, dropout: float = 0.3):
        super().__init__()
        blocks = []
        channels = 3
        for out_channels in (width, 2 * width, 4 * width):
            blocks.append(
                nn.Sequential(
                    nn.Conv2d(channels, out_channels, 3, padding=1, bias=False),
                    nn.BatchNorm2d(out_channels),
                    nn.ReLU(inplace=True),
                    # ceil_mode keeps a 1-pixel side at 1 instead of 0, so tiny inputs work.
                    nn.MaxPool2d(2, ceil_mode=True),
                )
            )
            channels = out_channels
        self.blocks = nn.Sequential(*blocks)
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
            nn.Linear(channels * 16, dense),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(dense, n_classes),
        )

    def forward_features(self, x):
        return self.blocks(x)

    def forward_head(self, feature_map):
        return self.classifier(feature_map)

    def forward(self, x):
        return self.forward_head(self.forward_features(x))
