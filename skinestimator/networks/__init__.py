"""Step 3 of the data's path: the networks (backbones, offline ImageNet weights)."""

from ._backbones import (
    BUILTIN_BACKBONES,
    build_network,
    lite0_imagenet_state_dict,
    lite_imagenet_state_dict,
)
from ._lesion_net import LesionNet, shades_of_grey
from ._seed_cnn import SeedCNN

__all__ = [
    "BUILTIN_BACKBONES",
    "LesionNet",
    "SeedCNN",
    "build_network",
    "lite0_imagenet_state_dict",
    "lite_imagenet_state_dict",
    "shades_of_grey",
]
