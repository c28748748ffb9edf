"""Feature networks for style transfer: torchvision's VGG19 layout, and the memory-saving extract."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from visage.errors import ModelError, VisageError
from visage.nets.vgg import (
    VGG19_BLOCKS,
    VGG19_TORCHVISION_FILE,
    find_vgg19_weights,
    load_vgg16,
    load_vgg19,
    torchvision_key_map,
)
from visage.style.features import extract, load_feature_net


def _torchvision_layout_vgg19() -> nn.Sequential:
    """VGG19 ``features`` laid out as torchvision numbers it: conv, ReLU, ..., max pool per block."""
    layers: list[nn.Module] = []
    c_in = 3
    for widths in VGG19_BLOCKS:
        for width in widths:
            layers += [nn.Conv2d(c_in, width, 3, padding=1), nn.ReLU(inplace=True)]
            c_in = width
        layers.append(nn.MaxPool2d(2, 2))
    return nn.Sequential(*layers)


@pytest.fixture
def torch_cache(tmp_path, monkeypatch):
    """A torch cache holding a randomly initialised VGG19 saved as torchvision saves it."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.manual_seed(0)
    features = _torchvision_layout_vgg19()
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(4, 4)  # the full model's state dict has more; it is ignored
    path = tmp_path / "hub" / "checkpoints" / VGG19_TORCHVISION_FILE
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    load_feature_net.cache_clear()
    yield path, features
    load_feature_net.cache_clear()


def test_key_map_numbers_convs_like_torchvision():
    mapping = torchvision_key_map(VGG19_BLOCKS)
    assert mapping["features.0.weight"] == "layers.conv1_1.weight"
    assert mapping["features.5.bias"] == "layers.conv2_1.bias"  # after conv, relu, conv, relu, pool
    assert mapping["features.34.weight"] == "layers.conv5_4.weight"
    assert len(mapping) == 2 * 16


def test_vgg19_from_torchvision_layout_matches_that_network(torch_cache):
    path, features = torch_cache
    assert find_vgg19_weights() == path
    net = load_vgg19(check_hash=False)
    assert net.name == "vgg19-imagenet"
    x = torch.rand(1, 3, 40, 56)
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    normalised = (x - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
    with torch.no_grad():
        expected_relu3_1 = features[:12](normalised)   # up to and including relu3_1
        expected_relu5_4 = features[:36](normalised)   # the last ReLU
        got = net.extract(x, ["relu3_1", "relu5_4"])
    assert torch.allclose(got["relu3_1"], expected_relu3_1, atol=1e-5)
    assert torch.allclose(got["relu5_4"], expected_relu5_4, atol=1e-5)


def test_vgg19_hash_checked_and_auto_falls_back(torch_cache):
    with pytest.raises(ModelError, match="sha256"):
        load_vgg19()  # random weights do not have torchvision's hash
    with pytest.warns(UserWarning, match="vgg16-hed"):
        assert load_feature_net("auto").name == "vgg16-hed"


def test_vgg19_missing_or_wrong_layout(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert find_vgg19_weights() is None
    with pytest.raises(ModelError, match="not there"):
        load_vgg19()
    bad = tmp_path / "bad.pth"
    torch.save({"features.0.weight": torch.zeros(8, 3, 3, 3)}, bad)
    with pytest.raises(ModelError, match="layout"):
        load_vgg19(bad, check_hash=False)
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    with pytest.raises(ModelError, match="cannot read"):
        load_vgg19(tmp_path / "junk.pth", check_hash=False)


def test_unknown_network_name():
    with pytest.raises(VisageError, match="unknown feature network"):
        load_feature_net("alexnet")


def test_extract_matches_reference_values_and_gradients():
    net = load_vgg16()
    names = ["relu1_1", "conv2_1", "relu3_1", "relu4_2"]
    x = torch.rand(1, 3, 37, 45)
    with torch.no_grad():
        expected = net.extract(x, names)
    grads = []
    for checkpointing in (False, True):
        image = x.clone().requires_grad_(True)
        got = extract(net, image, names, checkpointing=checkpointing)
        for name in names:
            # Winograd convolutions (visage.nets.winograd) round differently: ~2e-5 of the range.
            assert (got[name] - expected[name]).abs().max() <= 1e-4 * expected[name].abs().max(), name
        sum(v.square().mean() for v in got.values()).backward()
        grads.append(image.grad)
    assert torch.allclose(grads[0], grads[1], rtol=1e-4, atol=1e-6)
    with pytest.raises(VisageError, match="no layer"):
        extract(net, x, ["relu9_9"])
