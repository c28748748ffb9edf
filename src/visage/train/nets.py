"""Small embedding networks for the triplet trainer.

:class:`ConvEncoder` is one architecture for signals, images and volumes: ``dim`` picks Conv1d,
Conv2d or Conv3d (and the matching batch norm and pooling); nothing else changes.
:class:`ProjectionHead` maps frozen encodings (e.g. dlib's 128-d) to a new embedding space.

Every network here is described by a ``spec`` dict (its class name and constructor arguments) so a
checkpoint can rebuild it with :func:`build_net`.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import VisageError

_LAYERS = {
    1: (nn.Conv1d, nn.BatchNorm1d, nn.MaxPool1d, nn.AdaptiveAvgPool1d),
    2: (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d, nn.AdaptiveAvgPool2d),
    3: (nn.Conv3d, nn.BatchNorm3d, nn.MaxPool3d, nn.AdaptiveAvgPool3d),
}


class ConvEncoder(nn.Module):
    """Conv → BN → ReLU → max-pool blocks, global average pooling, then a linear embedding.

    Input: (N, in_channels, *spatial) with ``len(spatial) == dim``. Output: (N, embedding_dim),
    not normalised (the loss and :func:`visage.train.trainer.embed` normalise).
    Channels double at each block, starting at ``width``.
    """

    def __init__(self, dim: int, in_channels: int = 1, embedding_dim: int = 64, width: int = 16,
                 depth: int = 3, kernel_size: int = 3):
        super().__init__()
        if dim not in _LAYERS:
            raise VisageError(f"ConvEncoder works in 1, 2 or 3 dimensions, not {dim}")
        conv, norm, pool, global_pool = _LAYERS[dim]
        self.spec = {"class": "ConvEncoder", "dim": dim, "in_channels": in_channels,
                     "embedding_dim": embedding_dim, "width": width, "depth": depth, "kernel_size": kernel_size}
        layers: list[nn.Module] = []
        channels = in_channels
        for i in range(depth):
            out = width * 2**i
            layers += [conv(channels, out, kernel_size, padding=kernel_size // 2, bias=False), norm(out),
                       nn.ReLU(inplace=True)]
            if i < depth - 1:
                layers.append(pool(2, ceil_mode=True))
            channels = out
        layers += [global_pool(1), nn.Flatten(), nn.Linear(channels, embedding_dim)]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class Rescale(nn.Module):
    """Multiplies each input dimension by its own learned weight (a diagonal linear map)."""

    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight


class ProjectionHead(nn.Module):
    """A map of frozen encodings: per-dimension weights, a linear map, or a one-hidden-layer MLP.

    ``diagonal`` learns one weight per dimension (``in_dim`` parameters: hard to overfit with few
    people). Otherwise, without a hidden layer and with ``out_dim == in_dim``, the linear map starts
    as the identity. Both start exactly at the frozen encoder's performance.
    """

    def __init__(self, in_dim: int, out_dim: int | None = None, hidden: int = 0, diagonal: bool = False):
        super().__init__()
        out_dim = out_dim or in_dim
        if diagonal and (hidden or out_dim != in_dim):
            raise VisageError("a diagonal head keeps the input size and has no hidden layer")
        self.spec = {"class": "ProjectionHead", "in_dim": in_dim, "out_dim": out_dim, "hidden": hidden,
                     "diagonal": diagonal}
        if diagonal:
            self.layers = nn.Sequential(Rescale(in_dim))
        elif hidden:
            self.layers = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out_dim))
        else:
            linear = nn.Linear(in_dim, out_dim)
            self.layers = nn.Sequential(linear)
            if out_dim == in_dim:
                with torch.no_grad():
                    linear.weight.copy_(torch.eye(in_dim))
                    linear.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


_CLASSES = {"ConvEncoder": ConvEncoder, "ProjectionHead": ProjectionHead}


def build_net(spec: dict) -> nn.Module:
    """A fresh network from its ``spec`` (as stored in checkpoints)."""
    spec = dict(spec)
    cls = _CLASSES.get(spec.pop("class", None))
    if cls is None:
        raise VisageError(f"unknown network spec {spec!r}")
    return cls(**spec)
