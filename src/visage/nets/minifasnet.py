"""MiniFASNet, the compact anti-spoofing network of Silent-Face-Anti-Spoofing (Apache-2.0), in PyTorch.

visage's own port, built from the published architecture: a MobileFaceNet-style stack of
depthwise-separable blocks on an 80×80 crop, ending in a 5×5 depthwise "global" convolution, a
128-d embedding and 3 logits (index 1 is "real"). The channel widths differ from one released
network to the next (they were pruned), so :func:`from_state_dict` reads every width from the
weights instead of keeping a table. ``V1SE`` adds a squeeze-and-excitation gate to the last block
of each residual stage; :func:`from_state_dict` sees it in the keys.

The parameter names follow the released weights so that a ``state_dict`` of theirs loads as is.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

#: Side of the square input crop, in pixels.
INPUT_SIZE = 80
#: The logit index that means "real" (bona fide) in the released 3-class heads.
REAL_INDEX = 1


class ConvBnPrelu(nn.Module):
    """Convolution, batch norm and a per-channel PReLU (``prelu`` absent for a linear block)."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 1, stride: int = 1, padding: int = 0,
                 groups: int = 1, activation: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride, padding, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(c_out)
        self.prelu = nn.PReLU(c_out) if activation else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return self.prelu(x) if self.prelu is not None else x


class SqueezeExcite(nn.Module):
    """Channel gate: global average, bottleneck of 1×1 convolutions with batch norm, sigmoid."""

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = x.mean((2, 3), keepdim=True)
        g = torch.sigmoid(self.bn2(self.fc2(torch.relu(self.bn1(self.fc1(g))))))
        return x * g


class SeparableBlock(nn.Module):
    """1×1 expansion, 3×3 depthwise (``stride``), linear 1×1 projection; a skip when ``residual``."""

    def __init__(self, c_in: int, hidden: int, c_out: int, stride: int, residual: bool, se_hidden: int = 0):
        super().__init__()
        self.conv = ConvBnPrelu(c_in, hidden)
        self.conv_dw = ConvBnPrelu(hidden, hidden, 3, stride, 1, groups=hidden)
        self.project = ConvBnPrelu(hidden, c_out, activation=False)
        self.se_module = SqueezeExcite(c_out, se_hidden) if se_hidden else None
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.conv_dw(self.conv(x)))
        if self.se_module is not None:
            y = self.se_module(y)
        return x + y if self.residual else y


class ResidualStage(nn.Module):
    """A run of residual separable blocks at one resolution."""

    def __init__(self, blocks: list[SeparableBlock]):
        super().__init__()
        self.model = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class MiniFASNet(nn.Module):
    """80×80 BGR crop (values 0–255) → 3 logits; :meth:`embed` gives the 128-d embedding before them."""

    STAGES = ("conv_3", "conv_4", "conv_5")
    DOWNS = ("conv_23", "conv_34", "conv_45")

    def __init__(self, widths: Mapping[str, list[tuple[int, int, int, int]]], classes: int = 3):
        super().__init__()
        stem = widths["stem"][0][0]
        self.conv1 = ConvBnPrelu(3, stem, 3, 2, 1)
        self.conv2_dw = ConvBnPrelu(stem, stem, 3, 1, 1, groups=stem)
        for down, stage in zip(self.DOWNS, self.STAGES):
            (c_in, hidden, c_out, _), = widths[down]
            setattr(self, down, SeparableBlock(c_in, hidden, c_out, stride=2, residual=False))
            setattr(self, stage, ResidualStage([SeparableBlock(c, h, o, 1, True, se) for c, h, o, se in widths[stage]]))
        last = widths["conv_5"][-1][2]
        wide = widths["head"][0][0]
        self.conv_6_sep = ConvBnPrelu(last, wide)
        self.conv_6_dw = ConvBnPrelu(wide, wide, 5, 1, 0, groups=wide, activation=False)
        self.linear = nn.Linear(wide, 128, bias=False)
        self.bn = nn.BatchNorm1d(128)
        self.drop = nn.Dropout(0.2)
        self.prob = nn.Linear(128, classes, bias=False)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The 128-d embedding of a batch of (N, 3, 80, 80) BGR crops."""
        x = self.conv2_dw(self.conv1(x))
        for down, stage in zip(self.DOWNS, self.STAGES):
            x = getattr(self, stage)(getattr(self, down)(x))
        x = self.conv_6_dw(self.conv_6_sep(x)).flatten(1)
        return self.bn(self.linear(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.prob(self.drop(self.embed(x)))


def strip_prefix(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state dict without DataParallel's ``module.`` prefix on its keys."""
    return {k.removeprefix("module."): v for k, v in state.items()}


def widths_from_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, list[tuple[int, int, int, int]]]:
    """Each part's block widths (in, hidden, out, squeeze-excite hidden or 0), read from weight shapes."""
    state = strip_prefix(state)

    def block(prefix: str) -> tuple[int, int, int, int]:
        expand = state[f"{prefix}.conv.conv.weight"]
        project = state[f"{prefix}.project.conv.weight"]
        se = state.get(f"{prefix}.se_module.fc1.weight")
        return int(expand.shape[1]), int(expand.shape[0]), int(project.shape[0]), 0 if se is None else int(se.shape[0])

    widths: dict[str, list[tuple[int, int, int, int]]] = {
        "stem": [(int(state["conv1.conv.weight"].shape[0]), 0, 0, 0)],
        "head": [(int(state["conv_6_sep.conv.weight"].shape[0]), 0, 0, 0)],
    }
    for down in MiniFASNet.DOWNS:
        widths[down] = [block(down)]
    for stage in MiniFASNet.STAGES:
        count = 1 + max(int(k.split(".")[2]) for k in state if k.startswith(f"{stage}.model."))
        widths[stage] = [block(f"{stage}.model.{i}") for i in range(count)]
    return widths


def from_state_dict(state: Mapping[str, torch.Tensor]) -> MiniFASNet:
    """A MiniFASNet shaped like ``state`` (either released variant, or a fine-tuned copy) with its weights."""
    state = strip_prefix(state)
    classes = int(state["prob.weight"].shape[0])
    net = MiniFASNet(widths_from_state_dict(state), classes=classes)
    net.load_state_dict(state, strict=True)
    return net.eval()


def live_logit(logits: torch.Tensor) -> torch.Tensor:
    """Log-odds of "real" against every other class, from (N, classes) logits."""
    others = torch.cat([logits[:, :REAL_INDEX], logits[:, REAL_INDEX + 1:]], dim=1)
    return logits[:, REAL_INDEX] - torch.logsumexp(others, dim=1)
