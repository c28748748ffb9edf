"""dlib's 128-d face encoder (``dlib_face_recognition_resnet_model_v1``) as a PyTorch module.

dlib stores a network with its own ``serialize`` format; this module reads that file, checks it
layer by layer against the architecture below, and converts it once into a PyTorch state dict
cached under ``$VISAGE_HOME/converted``.

The network (dlib's ``anet_type`` from ``dnn_face_recognition_ex.cpp``) maps a 150×150 RGB chip
to 128 numbers:

* input: ``(pixel − mean_rgb) / 256`` with the per-channel means stored in the file;
* stem: conv 7×7/2 (32, no padding) → affine → relu → max pool 3×3/2 (no padding);
* 15 residual blocks of two 3×3 convs, each followed by an affine (batch norm frozen into a
  scale and a shift), widths 32×3, 64×4, 128×3, 256×3, 256×1. The first block of each new width
  has a stride-2 first conv (no padding: dlib pads only stride-1 convs) and a 2×2/2 average-pooled
  shortcut. When the two branches differ in size, dlib adds them as if the smaller were
  zero-padded at the bottom/right and in the trailing channels (this happens in the last two
  stages: 3×3 + 4×4 and 1×1 + 2×2);
* global average pool → fully connected 256 → 128 without bias.

Format notes (all integers use dlib's variable-length code: one control byte holding the byte
count and a sign bit, then little-endian bytes; a real number is two such integers, mantissa and
base-2 exponent; a bool is the character ``'0'`` or ``'1'``; a tensor is a version, four
dimensions and raw little-endian float32 values). A layer wrapper writes its version, then the
whole subnetwork below it, then its own details, so the version numbers of every wrapper come
first, outermost first, and the layers' contents follow innermost (input side) first.
"""

from __future__ import annotations

import builtins
import copy
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ModelError
from . import converted
from .layers import extract_layers

MODEL_NAME = "dlib_resnet_encoder"
CHIP_SIZE = 150
#: (width, blocks, first block downsamples) per stage, input side first, as in dlib's alevel4..alevel0.
STAGES: list[tuple[int, int, bool]] = [(32, 3, False), (64, 4, True), (128, 3, True), (256, 3, True), (256, 1, True)]
STEM_WIDTH = 32
EMBEDDING_DIM = 128
#: Bumped when the conversion changes, so old cached state dicts are rebuilt.
_CONVERTER_VERSION = 1


# ------------------------------------------------------------------------------------------
# The PyTorch network


class Affine(nn.Module):
    """Per-channel ``x * weight + bias``: dlib's ``affine`` layer, i.e. batch norm frozen for inference."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.bias.view(1, -1, 1, 1), x, self.weight.view(1, -1, 1, 1))


def add_padded(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a + b`` as dlib's ``add_prev`` does it: the result has the larger size in every dimension
    and the smaller operand counts as zero where it has no values (bottom/right, trailing channels)."""
    if a.shape == b.shape:
        return a + b
    c, h, w = (max(a.shape[i], b.shape[i]) for i in (1, 2, 3))

    def grow(t: torch.Tensor) -> torch.Tensor:
        return F.pad(t, (0, w - t.shape[3], 0, h - t.shape[2], 0, c - t.shape[1]))

    return grow(a) + grow(b)


class ResidualBlock(nn.Module):
    """conv → affine → relu → conv → affine, plus the shortcut, then relu (dlib's ``ares``/``ares_down``)."""

    def __init__(self, in_ch: int, out_ch: int, downsample: bool):
        super().__init__()
        self.downsample = downsample
        stride, pad = (2, 0) if downsample else (1, 1)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=pad)
        self.affine1 = Affine(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.affine2 = Affine(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.affine2(self.conv2(F.relu(self.affine1(self.conv1(x)))))
        shortcut = F.avg_pool2d(x, 2, 2) if self.downsample else x
        return F.relu(add_padded(y, shortcut))


class DlibFaceResNet(nn.Module):
    """dlib's face-recognition ResNet: (N, 3, 150, 150) RGB in 0–255 → (N, 128) embeddings.

    Named children, in forward order: ``conv1``, ``affine1``, ``relu1``, ``pool1``, ``stages``
    (``stages.<s>.<b>`` is block ``b`` of stage ``s``), ``fc``. :meth:`extract` returns the
    outputs of named layers for introspection.
    """

    input_mean: torch.Tensor  # a buffer: the per-channel means stored in dlib's file

    def __init__(self):
        super().__init__()
        self.register_buffer("input_mean", torch.zeros(3))
        self.conv1 = nn.Conv2d(3, STEM_WIDTH, 7, stride=2, padding=0)
        self.affine1 = Affine(STEM_WIDTH)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(3, 2, padding=0)
        stages = []
        in_ch = STEM_WIDTH
        for width, blocks, down in STAGES:
            stage = [ResidualBlock(in_ch if i == 0 else width, width, down and i == 0) for i in range(blocks)]
            stages.append(nn.Sequential(*stage))
            in_ch = width
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(in_ch, EMBEDDING_DIM, bias=False)

    def preprocess(self, rgb: torch.Tensor) -> torch.Tensor:
        """RGB 0–255 (any float or uint8 tensor, N×3×H×W) → the network input, (x − mean) / 256."""
        return (rgb.float() - self.input_mean.view(1, 3, 1, 1)) / 256.0

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu1(self.affine1(self.conv1(self.preprocess(rgb)))))
        x = self.stages(x)
        return self.fc(x.mean(dim=(2, 3)))

    def conv_affine_pairs(self) -> list[tuple[nn.Module, str, str]]:
        """(owner, conv attribute, affine attribute) for every conv followed by an affine."""
        pairs: list[tuple[nn.Module, str, str]] = [(self, "conv1", "affine1")]
        for stage in self.stages:
            for block in cast(nn.Sequential, stage):
                pairs += [(block, "conv1", "affine1"), (block, "conv2", "affine2")]
        return pairs

    def for_inference(self) -> DlibFaceResNet:
        """A copy that computes the same function faster on CPUs: each affine folded into the conv
        before it (the affine becomes an identity, so :meth:`extract` still names it), weights
        stored channels-last for oneDNN. Feed it channels-last input (see :meth:`as_input`)."""
        fast = copy.deepcopy(self)
        with torch.no_grad():
            for owner, conv_name, affine_name in fast.conv_affine_pairs():
                conv, affine = getattr(owner, conv_name), getattr(owner, affine_name)
                if isinstance(affine, Affine):
                    conv.weight.mul_(affine.weight.view(-1, 1, 1, 1))
                    conv.bias.mul_(affine.weight).add_(affine.bias)
                    setattr(owner, affine_name, nn.Identity())
        # Module.to documents memory_format=, but torch's overloads leave it out.
        return fast.to(memory_format=torch.channels_last)  # type: ignore[call-overload]

    @staticmethod
    def as_input(chips: np.ndarray) -> torch.Tensor:
        """(N, H, W, 3) uint8 RGB chips → an (N, 3, H, W) channels-last view, without copying."""
        return torch.from_numpy(np.ascontiguousarray(chips)).permute(0, 3, 1, 2)

    def layer_names(self) -> list[str]:
        """Names accepted by :meth:`extract`, in forward order."""
        return [name for name, _ in self._steps()]

    def _steps(self) -> list[tuple[str, Callable[[torch.Tensor], torch.Tensor]]]:
        blocks = [(f"stages.{s}.{b}", blk) for s, stage in enumerate(self.stages)
                  for b, blk in enumerate(cast(nn.Sequential, stage))]
        return [("conv1", self.conv1), ("affine1", self.affine1), ("relu1", self.relu1), ("pool1", self.pool1),
                *blocks, ("avgpool", lambda t: t.mean(dim=(2, 3))), ("fc", self.fc)]

    def extract(self, rgb: torch.Tensor, names: list[str]) -> dict[str, torch.Tensor]:
        """Outputs of the named layers (see :meth:`layer_names`), from one forward pass that stops
        after the deepest of them."""
        return extract_layers(self.preprocess(rgb), self._steps(), names)


# ------------------------------------------------------------------------------------------
# dlib's serialization


class _Reader:
    """Sequential reader of dlib's serialize() primitives over an in-memory file."""

    def __init__(self, data: bytes, path: Path):
        self.data = data
        self.pos = 0
        self.path = path
        self.context = "the file header"

    def fail(self, what: str) -> ModelError:
        return ModelError(f"{self.path}: not a dlib face-recognition ResNet file ({what} at byte {self.pos}, "
                          f"while reading {self.context}); reinstall face_recognition_models==0.3.0")

    def take(self, n: int) -> memoryview:
        if self.pos + n > len(self.data):
            raise self.fail(f"file ends early, truncated or corrupt: needs {n} more bytes, {len(self.data) - self.pos} left")
        view = memoryview(self.data)[self.pos:self.pos + n]
        self.pos += n
        return view

    def int(self) -> int:
        control = self.take(1)[0]
        size = control & 0x0F
        if size == 0 or size > 8 or control & 0x70:
            raise self.fail(f"bad integer control byte 0x{control:02x}")
        value = int.from_bytes(self.take(size), "little")
        return -value if control & 0x80 else value

    def real(self) -> float:
        """A float or double in dlib's portable form: mantissa · 2**exponent."""
        mantissa, exponent = self.int(), self.int()
        special = {32000: float("inf"), 32001: float("-inf"), 32002: float("nan")}
        if exponent in special:
            return special[exponent]
        return float(np.ldexp(np.float64(mantissa), exponent))

    def bool(self) -> bool:
        ch = bytes(self.take(1))
        if ch not in (b"0", b"1"):
            raise self.fail(f"bad bool byte {ch!r}")
        return ch == b"1"

    def string(self) -> str:
        n = self.int()
        if not 0 <= n <= 256:
            raise self.fail(f"implausible string length {n}")
        try:
            return bytes(self.take(n)).decode("ascii")
        except UnicodeDecodeError:
            raise self.fail("non-ASCII string") from None

    def expect_string(self, expected: str) -> None:
        got = self.string()
        if got != expected:
            raise self.fail(f"expected {expected!r}, found {got!r}")

    # In this class body ``int`` is the method above, so annotations spell out builtins.int.
    def expect_int(self, expected: builtins.int | tuple[builtins.int, ...], what: str) -> builtins.int:
        got = self.int()
        if got not in (expected if isinstance(expected, tuple) else (expected,)):
            raise self.fail(f"{what} is {got}, expected {expected}")
        return got

    def tensor(self) -> np.ndarray:
        """A dlib tensor (version 2: raw little-endian float32) as an (n, k, nr, nc) float32 array."""
        self.expect_int(2, "tensor format version")
        shape = tuple(self.int() for _ in range(4))
        if any(d < 0 for d in shape):
            raise self.fail(f"negative tensor shape {shape}")
        count = int(np.prod(shape, dtype=np.int64))
        raw = self.take(4 * count)
        return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(shape)

    def alias(self) -> tuple[builtins.int, builtins.int, builtins.int, builtins.int]:
        self.expect_int(1, "alias_tensor version")
        return self.int(), self.int(), self.int(), self.int()


def _block_of(params: np.ndarray, offset: int, shape: tuple[int, ...], reader: _Reader) -> np.ndarray:
    """The slice of a layer's flat parameter tensor that an alias_tensor points at, reshaped."""
    flat = params.reshape(-1)
    size = int(np.prod(shape))
    if offset + size > flat.size:
        raise reader.fail(f"parameter block of {shape} at offset {offset} overruns {flat.size} parameters")
    return flat[offset:offset + size].reshape(shape)


# The layer sequence as dlib's type spells it (outermost first), so the reader can check every
# wrapper version and layer name against the architecture. Kinds: "add" (add_layer around the
# layer named in the second field), "tag", "skip"; the innermost add_layer sits on the input.
@dataclass
class _Wrapper:
    kind: str  # "add", "tag" or "skip"
    layer: str = ""  # for "add": con, affine, relu, max_pool, avg_pool, add_prev, fc
    name: str = ""  # where its weights go in the PyTorch state dict
    args: dict = field(default_factory=dict)


def _expected_layers() -> list[_Wrapper]:
    """dlib's anet_type as a list of wrappers, input side first."""
    seq: list[_Wrapper] = [
        _Wrapper("add", "con", "conv1", {"size": 7, "stride": 2, "in": 3, "out": STEM_WIDTH}),
        _Wrapper("add", "affine", "affine1"),
        _Wrapper("add", "relu"),
        _Wrapper("add", "max_pool", args={"size": 3, "stride": 2}),
    ]
    in_ch = STEM_WIDTH
    for s, (width, blocks, down) in enumerate(STAGES):
        for b in range(blocks):
            prefix = f"stages.{s}.{b}"
            is_down = down and b == 0
            seq += [
                _Wrapper("tag"),  # tag1
                _Wrapper("add", "con", f"{prefix}.conv1",
                         {"size": 3, "stride": 2 if is_down else 1, "in": in_ch, "out": width}),
                _Wrapper("add", "affine", f"{prefix}.affine1"),
                _Wrapper("add", "relu"),
                _Wrapper("add", "con", f"{prefix}.conv2", {"size": 3, "stride": 1, "in": width, "out": width}),
                _Wrapper("add", "affine", f"{prefix}.affine2"),
            ]
            if is_down:  # tag2, skip1, avg_pool 2×2/2 of the block input
                seq += [_Wrapper("tag"), _Wrapper("skip"), _Wrapper("add", "avg_pool", args={"size": 2, "stride": 2})]
            seq += [_Wrapper("add", "add_prev"), _Wrapper("add", "relu")]
            in_ch = width
    seq += [_Wrapper("add", "avg_pool", args={"size": 0, "stride": 1}),  # avg_pool_everything
            _Wrapper("add", "fc", "fc", {"out": EMBEDDING_DIM})]
    return seq


def _read_layer(r: _Reader, w: _Wrapper, state: dict[str, np.ndarray]) -> None:
    """One layer's details, checked against the expected architecture; weights go into ``state``."""
    if w.layer == "con":
        r.expect_string("con_4")
        params = r.tensor()
        size, stride = w.args["size"], w.args["stride"]
        pad = 0 if stride != 1 else size // 2  # dlib pads only stride-1 convs
        for what, want in [("filter count", w.args["out"]), ("filter rows", size), ("filter columns", size),
                           ("row stride", stride),
                           ("column stride", stride), ("row padding", pad), ("column padding", pad)]:
            r.expect_int(want, what)
        filters, biases = r.alias(), r.alias()
        if filters != (w.args["out"], w.args["in"], size, size) or biases != (1, filters[0], 1, 1):
            raise r.fail(f"conv shapes {filters} / {biases} do not fit {w.name}")
        state[f"{w.name}.weight"] = _block_of(params, 0, filters, r)
        state[f"{w.name}.bias"] = _block_of(params, int(np.prod(filters)), (filters[0],), r)
        for _ in range(4):  # learning-rate and weight-decay multipliers
            r.real()
    elif w.layer == "affine":
        r.expect_string("affine_")
        params = r.tensor()
        gamma, beta = r.alias(), r.alias()
        r.expect_int(0, "affine mode (0: per channel, dlib CONV_MODE)")
        if gamma != beta or gamma[0] != 1 or gamma[2:] != (1, 1):
            raise r.fail(f"affine shapes {gamma} / {beta} are not per-channel")
        channels = gamma[1]
        state[f"{w.name}.weight"] = _block_of(params, 0, (channels,), r)
        state[f"{w.name}.bias"] = _block_of(params, channels, (channels,), r)
    elif w.layer in ("max_pool", "avg_pool"):
        r.expect_string(f"{w.layer}_2")
        size, stride = w.args["size"], w.args["stride"]
        for what, want in [("window rows", size), ("window columns", size), ("row stride", stride),
                           ("column stride", stride), ("row padding", 0), ("column padding", 0)]:
            r.expect_int(want, what)
    elif w.layer in ("relu", "add_prev"):
        r.expect_string(f"{w.layer}_")
    elif w.layer == "fc":
        r.expect_string("fc_2")
        outputs, inputs = r.expect_int(w.args["out"], "fc outputs"), r.int()
        params = r.tensor()
        weights, biases = r.alias(), r.alias()
        r.expect_int(1, "fc bias mode (1 = no bias)")
        if weights != (inputs, outputs, 1, 1) or biases != (0, 0, 0, 0):
            raise r.fail(f"fc shapes {weights} / {biases} do not fit {inputs}→{outputs} without bias")
        # dlib multiplies (N, inputs) by a (inputs, outputs) matrix; nn.Linear stores its transpose.
        state[f"{w.name}.weight"] = _block_of(params, 0, (inputs, outputs), r).T.copy()
        for _ in range(4):
            r.real()
    else:  # pragma: no cover - _expected_layers only produces the kinds above
        raise AssertionError(w.layer)


def read_dlib_resnet(path: os.PathLike | str) -> dict[str, torch.Tensor]:
    """Parse dlib's ``dlib_face_recognition_resnet_model_v1.dat`` into a :class:`DlibFaceResNet` state dict.

    Returns tensors keyed as in ``DlibFaceResNet().state_dict()``. Raises :class:`ModelError`
    (naming the file and the byte offset) when the file is truncated, corrupt, or holds another
    network.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"{path}: cannot read the dlib model: {exc.strerror or exc}") from None
    r = _Reader(data, path)
    layers = _expected_layers()

    r.context = "the loss layer"
    r.expect_int(1, "add_loss_layer version")
    r.expect_string("loss_metric_2")
    r.real(), r.real()  # margin and distance threshold: training-only
    # Wrapper versions, outermost first: add_layer 2 (3 for the one on the input), tag/skip 1.
    versions = []
    for i, w in enumerate(reversed(layers)):
        r.context = f"the version of wrapper {len(layers) - i} ({w.layer or w.kind})"
        innermost = i == len(layers) - 1
        versions.append(r.expect_int((2, 3) if innermost else (2 if w.kind == "add" else 1), "layer wrapper version"))
    input_wrapper_version = versions[-1]

    r.context = "the input layer"
    r.expect_string("input_rgb_image_sized")
    mean = [r.real() for _ in range(3)]
    r.expect_int(CHIP_SIZE, "input rows"), r.expect_int(CHIP_SIZE, "input columns")
    state: dict[str, np.ndarray] = {"input_mean": np.asarray(mean, dtype=np.float32)}

    for i, w in enumerate(layers):
        if w.kind != "add":
            continue
        r.context = f"layer {w.name or w.layer} (wrapper {i + 1} from the input)"
        _read_layer(r, w, state)
        for _ in range(3):  # setup-called, gradient-stale, output-disabled flags
            r.bool()
        r.tensor(), r.tensor()  # x_grad, cached_output
        r.tensor()  # params_grad, or grad_final for the layer on the input
        if i == 0 and input_wrapper_version == 3:
            r.int()  # sample expansion factor
    r.context = "the end of the file"
    if r.pos != len(data):
        raise r.fail(f"{len(data) - r.pos} unexpected trailing bytes")
    return {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in state.items()}


# ------------------------------------------------------------------------------------------
# Conversion cache and loading


def converted_path() -> Path:
    """Where the converted state dict is cached (see :mod:`visage.nets.converted`)."""
    return converted.converted_path(MODEL_NAME, _CONVERTER_VERSION)


def load_dlib_resnet() -> DlibFaceResNet:
    """dlib's face-recognition ResNet with its pretrained weights, in eval mode, weights frozen."""
    net = DlibFaceResNet()
    try:
        net.load_state_dict(converted.converted_state(MODEL_NAME, _CONVERTER_VERSION, read_dlib_resnet), strict=True)
    except RuntimeError as exc:
        raise ModelError(f"converted dlib ResNet at {converted_path()} does not fit the network: {exc}; "
                         "delete it to rebuild") from None
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net
