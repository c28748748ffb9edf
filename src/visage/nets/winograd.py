"""3×3 convolutions of frozen networks through NNPACK's Winograd kernels, on the CPU.

A stride-1 3×3 convolution computed by Winograd's minimal filtering takes fewer multiplications
than the direct method. oneDNN, which PyTorch uses by default on the CPU, has such kernels only for
AVX-512; NNPACK, which ships inside PyTorch's CPU build, has them for AVX2. On an AVX2 CPU it
computes VGG's convolutions in about half the time, and agrees with the direct method to about
2e-5 relative.

PyTorch calls NNPACK only for batches of 16 or more and gives it no backward pass, so visage calls
it directly. Only the gradient with respect to the input is provided, which is all that an
optimisation over the input image, such as style transfer, needs: the weights must be frozen.
:func:`conv2d` falls back to the module itself whenever NNPACK cannot serve a
call, and convolves large inputs in strips of rows so that NNPACK's buffers stay small.

Set ``VISAGE_WINOGRAD=0`` in the environment to always use PyTorch's default convolution.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from ..config import winograd_enabled

__all__ = ["conv2d", "is_available", "serves"]

#: NNPACK's transform buffers take about 3.6× the input's size, and PyTorch keeps them allocated
#: for the rest of the process. Larger inputs are convolved in horizontal strips of at most this
#: many elements, so that about 240 MB at most stay held: a long-running service does not keep
#: gigabytes after one 2048-px job.
MAX_INPUT_ELEMENTS = 2**24
#: On small maps NNPACK's tiles are mostly padding, and it was slower than PyTorch here (a batch
#: of 8 maps of 512 × 16 × 16: 0.11 s against 0.09 s); smaller maps go to PyTorch.
MIN_PLANE_PIXELS = 2048


@functools.cache
def is_available() -> bool:
    """Whether NNPACK can run here; asking also initialises it, which must happen before any call."""
    if not winograd_enabled():
        return False
    try:
        return bool(torch.backends.nnpack.is_available())
    except (AttributeError, RuntimeError):
        return False


def serves(conv: nn.Conv2d, x: torch.Tensor) -> bool:
    """Whether :func:`conv2d` will run ``conv`` on ``x`` through NNPACK rather than PyTorch."""
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and x.dim() == 4
        and x.shape[-2] * x.shape[-1] >= MIN_PLANE_PIXELS
        and conv.weight.dtype == torch.float32
        and not conv.weight.requires_grad
        and (conv.bias is None or not conv.bias.requires_grad)
        and conv.kernel_size == (3, 3)
        and conv.stride == (1, 1)
        and conv.padding == (1, 1)
        and conv.dilation == (1, 1)
        and conv.groups == 1
        and conv.padding_mode == "zeros"
        and is_available()
    )


def conv2d(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)``, computed by NNPACK's Winograd kernels where :func:`serves` allows, and
    differentiable with respect to ``x``; otherwise ``conv(x)`` itself."""
    if not serves(conv, x):
        return conv(x)
    return _WinogradConv3x3.apply(x, conv.weight, conv.bias)


def _nnpack(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """A "same" 3×3 convolution on NNPACK, in strips of rows when the input is large.

    Each strip carries one row of its neighbours on either side; the output rows computed from
    those halo rows (whose own neighbours NNPACK zero-pads) are dropped, so the result is exact.
    """
    weight = weight.contiguous()
    n, c, h, w = x.shape
    rows = max(1, MAX_INPUT_ELEMENTS // max(1, n * c * w) - 2)
    if rows >= h:
        return torch._nnpack_spatial_convolution(x.contiguous(), weight, bias, [1, 1], [1, 1])
    strips = []
    for top in range(0, h, rows):
        bottom = min(h, top + rows)
        lo, hi = max(0, top - 1), min(h, bottom + 1)
        out = torch._nnpack_spatial_convolution(x[:, :, lo:hi].contiguous(), weight, bias, [1, 1], [1, 1])
        strips.append(out[:, :, top - lo: out.shape[2] - (hi - bottom)])
    return torch.cat(strips, dim=2)


class _WinogradConv3x3(torch.autograd.Function):
    """Stride-1, padding-1 3×3 convolution with frozen weights.

    The gradient of a "same" 3×3 convolution with respect to its input is the same kind of
    convolution of the output gradient, with the kernel flipped in space and its in/out channels
    swapped, so the backward pass runs on NNPACK too.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(weight)
        try:
            return _nnpack(x, weight, bias)
        except RuntimeError:  # NNPACK refuses some shapes (its status is not passed on)
            ctx.direct = True
            return F.conv2d(x, weight, bias, padding=1)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        (weight,) = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None
        flipped = weight.transpose(0, 1).flip(2, 3)
        if getattr(ctx, "direct", False):
            return F.conv2d(grad_output, flipped, None, padding=1), None, None
        try:
            return _nnpack(grad_output, flipped, None), None, None
        except RuntimeError:
            return F.conv2d(grad_output, flipped, None, padding=1), None, None
