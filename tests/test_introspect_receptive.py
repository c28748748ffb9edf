"""Receptive fields from the module graph agree with the brute force: the support of the input gradient."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from visage.errors import VisageError
from visage.introspect import receptive_fields, resolve_model
from visage.introspect.receptive import AxisField, analyse, clip_box, gradient_support

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def positive_twin(net: nn.Module) -> nn.Module:
    """A copy whose every path carries gradient: positive weights, large biases (no ReLU is ever dead),
    max-pooling replaced by average pooling of the same geometry. Receptive fields are unchanged."""
    twin = copy.deepcopy(net).double()
    for module in list(twin.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.MaxPool2d):
                setattr(module, child_name, nn.AvgPool2d(child.kernel_size, child.stride, child.padding,
                                                         ceil_mode=child.ceil_mode))
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in twin.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.copy_((torch.rand(m.weight.shape, generator=generator, dtype=torch.float64) + 0.5) / fan_in)
                if m.bias is not None:
                    m.bias.fill_(300.0)  # above any input a network takes, so no ReLU is ever dead
            elif isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.weight.fill_(1.0)
                m.bias.fill_(0.01)
                m.running_mean.zero_()
                m.running_var.fill_(1.0)
    return twin


def check_layers(net: nn.Module, size: tuple[int, int], layers: list[str] | None = None,
                 middle_only: tuple[str, ...] = ()) -> int:
    """Compare the field of the first, middle and last unit of each layer (the middle one only for
    ``middle_only`` layers) with the gradient support."""
    infos = analyse(net, size)
    twin = positive_twin(net)
    checked = 0
    for name, info in infos.items():
        if layers is not None and name not in layers:
            continue
        assert info.field is not None, f"{name}: {info.reason}"
        if len(info.shape) == 2 or info.field.whole_image:
            assert gradient_support(twin, name, 0, (0, 0), size) == (0, 0, size[0], size[1]), name
            checked += 1
            continue
        h, w = info.shape[2:]
        positions = {(h // 2, w // 3)} if name in middle_only else {(0, 0), (h // 2, w // 3), (h - 1, w - 1)}
        for i, j in positions:
            expected = info.visible_box(i, j)
            assert expected == clip_box(info.field.box(i, j), size)  # these nets drop no rows
            if info.exact:
                assert gradient_support(twin, name, 0, (i, j), size) == expected, (name, (i, j), info.field)
            elif (i, j) == (h // 2, w // 3):
                # Concatenated branches: each channel sees at most the field, and the widest sees all of it.
                boxes = [gradient_support(twin, name, c, (i, j), size) for c in range(info.channels)]
                assert all(inside(b, expected) for b in boxes), (name, boxes, expected)
                assert expected in boxes, (name, boxes, expected)
            checked += 1
    return checked


def inside(box, outer) -> bool:
    return outer[0] <= box[0] and outer[1] <= box[1] and box[2] <= outer[2] and box[3] <= outer[3]


def test_axis_arithmetic_matches_vgg16_published_fields():
    field = AxisField()
    for _ in range(2):
        field = field.through(3, 1, 1)
    assert field == AxisField(5, 1, -2)
    field = field.through(2, 2)
    assert (field.size, field.stride) == (6, 2)


@pytest.mark.slow
def test_vgg16_fields_agree_with_gradient_support():
    vgg = resolve_model("vgg16").net
    infos = receptive_fields("vgg16")
    # The sizes every VGG16 paper quotes.
    assert infos["layers.conv1_2"].field.size == (5, 5)
    assert infos["layers.conv3_3"].field.size == (40, 40)
    assert infos["layers.conv4_3"].field.size == (92, 92)
    assert infos["layers.conv5_3"].field.size == (196, 196)
    assert infos["layers.conv5_3"].field.stride == (16, 16)
    # At 100 px the ceil-mode pools give odd grids (100 → 50 → 25 → 13); conv4_3's 92 px field
    # fits inside the image only for the middle units.
    layers = ["layers.conv1_2", "layers.pool1", "layers.conv2_2", "layers.conv3_3", "layers.conv4_3"]
    assert check_layers(vgg, (100, 100), layers, middle_only=("layers.conv4_3",)) >= 13


class Shifted(nn.Module):
    """Two branches whose fields are offset in opposite directions, added: the union is wider than either."""

    def __init__(self, ch):
        super().__init__()
        self.a = nn.Conv2d(ch, ch, 3)
        self.b = nn.Conv2d(ch, ch, 3)

    def forward(self, x):
        return self.a(F.pad(x, (2, 0, 2, 0))) + self.b(F.pad(x, (0, 2, 0, 2)))


class Basic(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)) \
            if stride != 1 or cin != cout else None

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + (x if self.down is None else self.down(x)))


class Branches(nn.Module):
    """Inception-style: branches of different fields concatenated along channels."""

    def __init__(self, ch):
        super().__init__()
        self.one = nn.Conv2d(ch, ch, 1)
        self.dilated = nn.Conv2d(ch, ch, 3, padding=2, dilation=2)
        self.same = nn.Conv2d(ch, ch, (1, 5), padding="same")

    def forward(self, x):
        return torch.cat([self.one(x), self.dilated(x), self.same(x)], dim=1)


class TinyResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 7, 2, 3)
        self.pool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = Basic(4, 4, 1)
        self.layer2 = Basic(4, 6, 2)
        self.shifted = Shifted(6)
        self.mixed = Branches(6)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(18, 5))

    def forward(self, x):
        x = self.pool(self.stem(x))
        x = self.mixed(self.shifted(self.layer2(self.layer1(x))))
        return self.head(x)


def test_residual_inception_net_fields_agree_with_gradient_support():
    net = TinyResNet().eval()
    infos = analyse(net, (64, 64))
    # A residual block's output, a module used twice (relu) and the head are all addressable.
    for name in ["layer1", "layer2.relu", "layer2.relu@1", "layer2.down", "shifted", "mixed", "head.2"]:
        assert name in infos, name
    assert infos["head.2"].field.whole_image
    # Concatenated branches of different fields: a bound until a convolution mixes them again.
    assert not infos["mixed"].exact and infos["mixed.dilated"].exact
    assert infos["head.2"].exact and infos["layer2"].exact
    # The downsampling shortcut sees less than the main path, so the block's field is the main path's.
    assert infos["layer2"].field == infos["layer2.conv2"].field
    assert infos["layer2.down"].field.size < infos["layer2"].field.size
    # The shifted branches' union is 2 px wider than each branch.
    assert infos["shifted"].field.size[0] == infos["shifted.a"].field.size[0] + 2 * infos["layer2"].field.stride[0]
    assert check_layers(net, (64, 64)) >= 40


def test_unsupported_operation_is_named():
    class Up(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.after = nn.Conv2d(4, 4, 3)

        def forward(self, x):
            return self.after(F.interpolate(self.conv(x), scale_factor=2))

    target = resolve_model(Up())
    assert target.layer("conv").field.size == (3, 3)
    with pytest.raises(VisageError, match="interpolate"):
        target.layer("after")


def test_layer_names_resolve_by_suffix_and_errors_list_choices():
    target = resolve_model("vgg16")
    assert target.layer("conv3_3").name == "layers.conv3_3"
    with pytest.raises(VisageError, match="conv1_2"):
        target.layer("conv9_9")
    assert target.default_layers() == ["layers.conv1_2", "layers.conv3_3", "layers.conv5_3"]


@pytest.mark.parametrize("encoder, layers, middle_only", [
    ("dlib-torch", ["conv1", "pool1", "stages.0.0", "stages.1.0", "stages.2.1"], ("stages.2.1",)),
    ("facenet", ["conv2d_2b_3x3", "maxpool_3a_3x3", "conv2d_4b_3x3", "repeat.block35_2"], ("repeat.block35_2",)),
])
@pytest.mark.slow
def test_face_encoder_fields_agree_with_gradient_support(encoder, layers, middle_only):
    from visage.encoders import ENCODERS

    if encoder not in ENCODERS:
        pytest.skip(f"encoder {encoder} is not in this build")
    target = resolve_model(encoder)
    # dlib's residual sums pad the smaller input at the bottom right: the traced leaf keeps that exact.
    net = target.net
    infos = target.layers()
    assert all(infos[name].exact for name in layers)
    twin_infos = analyse(net, target.input_size, target.leaf_functions)
    assert {k: v.field for k, v in twin_infos.items()} == {k: v.field for k, v in infos.items()}
    checked = 0
    twin = positive_twin(net)
    for name in layers:
        info = infos[name]
        h, w = info.shape[2:]
        positions = {(h // 2, w // 3)} if name in middle_only else {(0, 0), (h // 2, w // 3), (h - 1, w - 1)}
        for i, j in positions:
            expected = info.visible_box(i, j)
            assert gradient_support(twin, name, 0, (i, j), target.input_size) == expected, (name, (i, j))
            checked += 1
    if encoder == "dlib-torch":
        # dlib's first layers (7×7 and 3×3 windows, stride 2, no padding) never see the last 3 rows
        # and columns of a 150 px chip, although the bottom-right units' boxes cover them.
        assert infos["pool1"].reach == (147, 147)
        info = infos["stages.0.0"]
        assert info.field.box(34, 34)[2] > 150 and info.visible_box(34, 34)[2:] == (147, 147)
    assert checked >= 3 * len(layers) - 2
