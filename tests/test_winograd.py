"""NNPACK's Winograd convolution for frozen networks: same values and input gradients as PyTorch's."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from visage.nets import winograd
from visage.style.features import extract, load_feature_net

needs_nnpack = pytest.mark.skipif(not winograd.is_available(), reason="NNPACK is not available in this torch build")


def _frozen_conv(c_in: int, c_out: int, **kw) -> nn.Conv2d:
    torch.manual_seed(0)
    return nn.Conv2d(c_in, c_out, 3, padding=1, **kw).requires_grad_(False)


def assert_matches_direct_convolution(conv: nn.Conv2d, x: torch.Tensor) -> None:
    """conv2d() on NNPACK gives F.conv2d's values and input gradient, to 1e-4 of their range."""
    assert winograd.serves(conv, x)
    image = x.clone().requires_grad_(True)
    got = winograd.conv2d(conv, image)
    upstream = torch.randn_like(got)
    got.backward(upstream)
    plain = x.clone().requires_grad_(True)
    expected = F.conv2d(plain, conv.weight, conv.bias, padding=1)
    expected.backward(upstream)
    assert got.shape == expected.shape
    assert (got - expected).abs().max() <= 1e-4 * expected.abs().max()
    assert (image.grad - plain.grad).abs().max() <= 1e-4 * plain.grad.abs().max()


@needs_nnpack
@pytest.mark.parametrize("shape", [(1, 3, 37, 45), (2, 16, 20, 9), (1, 64, 1, 1)])
def test_values_and_input_gradient_match_direct_convolution(shape, monkeypatch):
    monkeypatch.setattr(winograd, "MIN_PLANE_PIXELS", 1)  # small maps too, to test the kernels
    conv = _frozen_conv(shape[1], 24)
    x = torch.rand(*shape)
    assert_matches_direct_convolution(conv, x)


def test_other_convolutions_are_left_to_pytorch():
    x = torch.rand(1, 8, 16, 16)
    trainable = nn.Conv2d(8, 8, 3, padding=1)
    assert not winograd.serves(trainable, x)  # no weight gradient is provided
    assert not winograd.serves(_frozen_conv(8, 8, stride=2), x)
    assert not winograd.serves(_frozen_conv(8, 8, dilation=2), x)
    assert not winograd.serves(nn.Conv2d(8, 8, 5, padding=2).requires_grad_(False), x)
    assert not winograd.serves(_frozen_conv(8, 8), x.double())
    assert not winograd.serves(_frozen_conv(8, 8), x)  # 16 × 16: too small to gain
    assert winograd.serves(_frozen_conv(8, 8), torch.rand(1, 8, 48, 64)) == winograd.is_available()
    strided = _frozen_conv(8, 8, stride=2)
    assert torch.equal(winograd.conv2d(strided, x), strided(x))


@needs_nnpack
@pytest.mark.parametrize("limit", [8 * 45 * 5, 8 * 45 * 12, 1])
def test_large_inputs_are_convolved_in_exact_strips(monkeypatch, limit):
    """Above MAX_INPUT_ELEMENTS the rows are split into strips with a one-row halo; values and
    input gradients must still equal one whole convolution, whatever the strip height."""
    monkeypatch.setattr(winograd, "MAX_INPUT_ELEMENTS", limit)
    monkeypatch.setattr(winograd, "MIN_PLANE_PIXELS", 1)
    conv = _frozen_conv(8, 6)
    x = torch.rand(2, 8, 37, 45)
    assert_matches_direct_convolution(conv, x)


@needs_nnpack
def test_feature_network_runs_on_winograd_and_optimises_the_same_objective():
    """extract() on VGG16 agrees with a plain PyTorch forward pass, and so do input gradients."""
    net = load_feature_net("vgg16-hed")
    names = ["relu1_1", "relu2_1", "relu3_1", "relu4_2"]
    x = torch.rand(1, 3, 64, 80, generator=torch.Generator().manual_seed(0))
    image = x.clone().requires_grad_(True)
    got = extract(net, image, names)
    sum(v.square().mean() for v in got.values()).backward()
    plain = x.clone().requires_grad_(True)
    expected = net.extract(plain, names)
    sum(v.square().mean() for v in expected.values()).backward()
    for name in names:
        assert (got[name] - expected[name]).abs().max() <= 1e-4 * expected[name].abs().max(), name
    # A near-tie in a max-pool may route a few gradients differently: compare whole gradients.
    assert (image.grad - plain.grad).norm() <= 1e-3 * plain.grad.norm()
