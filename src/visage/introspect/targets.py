"""What ``--model`` names: VGG16, a PyTorch face encoder, or a user's saved PyTorch model.

Every model becomes an :class:`Inspectable`: a torch module to hook, the function that turns RGB
images in [0, 1] into its input, its natural input size, and for face encoders the encoder that
makes the aligned face chips it was trained on.
"""

from __future__ import annotations

import copy
import os
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np
import torch
from torch import nn

from ..errors import VisageError
from .receptive import LayerInfo, ScriptLeaf, analyse

if TYPE_CHECKING:
    from ..encoders.base import Encoder

#: Per-channel mean and standard deviation of RGB in [0, 1] that torchvision's ImageNet models expect.
IMAGENET_NORMALIZATION = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


@dataclass
class Inspectable:
    """A network ready for introspection.

    ``net`` takes ``preprocess(x)`` where ``x`` is RGB in [0, 1], shape (N, 3, H, W); ``preprocess``
    must act on each pixel alone (scaling, channel order), so receptive fields are those of ``net``.
    ``encoder`` is set for face encoders: their images are the aligned chips it makes.
    """

    name: str
    net: nn.Module
    input_size: tuple[int, int] = (224, 224)
    preprocess: Callable[[torch.Tensor], torch.Tensor] | None = None
    encoder: Encoder | None = None
    #: Functions fx records as one element-wise call (see :func:`visage.introspect.receptive.trace`).
    leaf_functions: tuple = ()
    _layers: dict[tuple[int, int], dict[str, LayerInfo]] = field(default_factory=dict, repr=False)

    def on(self, device: str | torch.device) -> Inspectable:
        """This model on ``device``: itself when already there, else with a copy of the network
        moved there (the original, which an encoder may share, stays where it was)."""
        device = torch.device(device)
        param = next(self.net.parameters(), None)
        current = param.device if param is not None else torch.device("cpu")
        if current.type == device.type and (device.index is None or current.index == device.index):
            return self
        return replace(self, net=copy.deepcopy(self.net).to(device))

    def net_input(self, rgb01: torch.Tensor) -> torch.Tensor:
        """The network's input for RGB images in [0, 1]."""
        return self.preprocess(rgb01) if self.preprocess is not None else rgb01

    def layers(self, size: int | tuple[int, int] | None = None) -> dict[str, LayerInfo]:
        """Every layer with image features, in forward order, with its receptive field, for images of
        ``size`` (default: the model's input size); computed once per size."""
        size = _size_pair(size) if size is not None else self.input_size
        if size not in self._layers:
            self._layers[size] = analyse(self.net, size, self.leaf_functions)
        return self._layers[size]

    def layer(self, name: str, size: int | tuple[int, int] | None = None) -> LayerInfo:
        """The layer called ``name``, or the one whose qualified name ends with ``.name``, for images
        of ``size``.

        Raises VisageError for an unknown or ambiguous name, or a layer without a receptive field.
        """
        layers = self.layers(size)
        info = layers.get(name)
        if info is None:
            matches = [key for key in layers if key.endswith("." + name)]
            if len(matches) > 1:
                raise VisageError(f"layer {name!r} of {self.name} is ambiguous: {', '.join(matches[:8])}")
            if not matches:
                shown = ", ".join(_short_names(layers)[:60])
                raise VisageError(f"{self.name} has no layer {name!r}; its layers are: {shown}")
            info = layers[matches[0]]
        if info.field is None:
            raise VisageError(f"layer {info.name} of {self.name} has no receptive field: {info.reason}")
        return info

    def default_layers(self) -> list[str]:
        """An early, a middle and the last layer whose receptive field fits in the input: a short
        tour from edges to parts.

        Chosen among the network's top-level blocks when it has several (Inception-style nets),
        else among its convolutions.
        """
        spatial = {k: v for k, v in self.layers().items() if v.field is not None and v.exact and len(v.shape) == 4
                   and not v.field.whole_image}
        # Layers whose fields outgrow the input show whole images, which teach nothing about parts.
        fits = {k: v for k, v in spatial.items() if v.field is not None and v.field.fits(self.input_size)}
        spatial = fits or spatial
        top_level = [k for k in spatial if "." not in k and "@" not in k]
        picks = top_level if len(top_level) >= 6 else [k for k, v in spatial.items() if v.kind == "Conv2d"]
        picks = picks or list(spatial)
        if not picks:
            raise VisageError(f"{self.name} has no convolutional layer to inspect")
        chosen = [picks[min(1, len(picks) - 1)], picks[len(picks) // 2], picks[-1]]
        return list(dict.fromkeys(chosen))


def _short_names(layers: dict[str, LayerInfo]) -> list[str]:
    return [k for k, v in layers.items() if v.field is not None]


class Normalize(nn.Module):
    """(x − mean) / std per channel, for networks trained on standardised inputs."""

    mean: torch.Tensor  # buffers
    std: torch.Tensor

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x)) / self.std.to(x)


def resolve_model(
    spec: str | os.PathLike | nn.Module | Inspectable,
    *,
    input_size: int | tuple[int, int] | None = None,
    normalize: str | tuple | None = None,
) -> Inspectable:
    """Turn a model name, a saved model's path or a module into an :class:`Inspectable`.

    ``spec`` is ``"vgg16"`` (or any ``load_<name>`` in :mod:`visage.nets.vgg`), the name of a face
    encoder in :data:`visage.encoders.ENCODERS` that runs in PyTorch, the path of a saved model
    (a whole pickled ``nn.Module`` or a TorchScript file), or an ``nn.Module``. ``input_size``
    overrides the model's natural size; ``normalize`` (``"imagenet"`` or ``(mean, std)``) is for
    user models trained on standardised inputs. Raises VisageError for anything unknown.
    """
    if isinstance(spec, Inspectable):
        return spec
    size = None if input_size is None else _size_pair(input_size)
    preprocess = _normalizer(normalize)
    builtin_or_encoder = isinstance(spec, str) and not Path(spec).suffix and os.sep not in spec and not Path(spec).exists()
    if preprocess is not None and builtin_or_encoder:
        raise VisageError(f"{spec} brings its own input normalisation; normalize is for user models")
    if isinstance(spec, nn.Module):
        return Inspectable(type(spec).__name__, _ready(spec), size or (224, 224), preprocess)
    text = str(spec)
    path = Path(text).expanduser()
    if not builtin_or_encoder:
        if not path.is_file():
            raise VisageError(f"{text}: no such model file")
        net = load_user_model(path)
        return Inspectable(path.name, net, size or (224, 224), preprocess)
    builtin = _builtin(text.lower())
    if builtin is not None:
        target = builtin()
    else:
        target = _encoder_target(text)
    if size is not None:
        target.input_size = size
    return target


def _builtin(name: str) -> Callable[[], Inspectable] | None:
    from ..nets import vgg

    loader = getattr(vgg, f"load_{name}", None)
    if loader is None or not name.startswith("vgg"):
        return None
    return lambda: Inspectable(name, _ready(loader()), (224, 224))


def _encoder_target(name: str) -> Inspectable:
    from ..encoders import ENCODERS, get_encoder

    if name not in ENCODERS:
        from ..nets import vgg

        vggs = [n[len("load_"):] for n in dir(vgg) if n.startswith("load_vgg")]
        raise VisageError(f"unknown model {name!r}: give one of {', '.join(vggs + list(ENCODERS))}, "
                          "or the path of a saved PyTorch model")
    encoder = get_encoder(name)
    net = getattr(encoder, "net", None)
    if not isinstance(net, nn.Module):
        torch_encoders = [n for n in ENCODERS if n != name]
        raise VisageError(f"encoder {name!r} does not run in PyTorch, so its units cannot be hooked; "
                          f"inspect a PyTorch encoder ({', '.join(torch_encoders) or 'none installed'}) instead")
    preprocess = getattr(encoder, "net_input", None) or _encoder_input(name)
    return Inspectable(name, _ready(net), chip_size(encoder), preprocess, encoder, _leaf_functions(net))


def _encoder_input(name: str) -> nn.Module | None:
    """How the known encoders' networks want their input, from RGB in [0, 1].

    An encoder can instead say it itself with a ``net_input(rgb01)`` method.
    """
    if name == "dlib-torch":
        return Normalize((0.0, 0.0, 0.0), (1 / 255,) * 3)  # the net takes RGB 0–255 and centres it itself
    if name == "facenet":
        from ..encoders.facenet import PIXEL_MEAN, PIXEL_SCALE

        return Normalize((PIXEL_MEAN / 255,) * 3, (1 / (PIXEL_SCALE * 255),) * 3)
    return None


def _leaf_functions(net: nn.Module) -> tuple:
    """Element-wise helpers written with Python control flow, which fx must not trace into."""
    import importlib

    module = importlib.import_module(type(net).__module__)
    add_padded = getattr(module, "add_padded", None)  # dlib's residual sum over unequal sizes
    return (add_padded,) if callable(add_padded) else ()


def chip_size(encoder) -> tuple[int, int]:
    """(height, width) of the aligned chips ``encoder`` makes."""
    size = getattr(encoder, "chip_size", None)
    if size is None:
        from ..media.images import load_image

        # Chips of no face still have the chip geometry in their shape.
        empty = encoder.chips(load_image(np.zeros((8, 8, 3), np.uint8)), [])
        size = empty.shape[1:3]
    return _size_pair(size)


def load_user_model(path: str | os.PathLike) -> nn.Module:
    """A saved model: a TorchScript file, or a whole ``nn.Module`` saved with ``torch.save``.

    Unpickling runs code from the file, so load only files you trust. Raises VisageError naming
    the file when it holds only weights (a state dict) or no model at all.
    """
    path = Path(path)
    try:
        script = torch.jit.load(str(path), map_location="cpu")
    except Exception:  # noqa: BLE001 -- not TorchScript, whatever the reason: try torch.load next
        script = None
    if script is not None:
        return _ready(script_chain(script, path.name))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 -- unpickling can raise anything; the error names the file
        raise VisageError(f"{path}: cannot load a PyTorch model ({type(exc).__name__}: {exc})") from None
    if isinstance(obj, nn.Module):
        return _ready(obj)
    if isinstance(obj, dict):
        raise VisageError(f"{path}: holds a state dict (weights only); save the whole model with "
                          "torch.save(model, path) or torch.jit.script(model).save(path)")
    raise VisageError(f"{path}: holds a {type(obj).__name__}, not a PyTorch model")


def script_chain(script: torch.jit.ScriptModule, label: str = "TorchScript model") -> nn.Module:
    """A TorchScript model rebuilt as nested ``nn.Sequential`` of hookable leaves.

    Works for models whose submodules run one after another (Sequential stacks, or modules whose
    children are called in order); the rebuilt chain is checked to give the same output. Raises
    VisageError otherwise.
    """
    chain = _rebuild(script)
    probe = torch.rand(1, 3, 64, 64)
    try:
        with torch.no_grad():
            same = torch.allclose(chain(probe), script(probe), rtol=1e-4, atol=1e-5)
    except Exception:  # noqa: BLE001 -- a chain that fails to run is not the same model
        same = False
    if not same:
        raise VisageError(f"{label}: this TorchScript model is not a plain chain of layers, so its inner layers "
                          "cannot be reached; save the Python model with torch.save(model, path) instead")
    return chain


def _rebuild(module: torch.jit.ScriptModule) -> nn.Module:
    children = list(module.named_children())
    if not children:
        return ScriptLeaf(module)
    # A TorchScript module's children are TorchScript modules too.
    return nn.Sequential(OrderedDict((name, _rebuild(cast(torch.jit.ScriptModule, child))) for name, child in children))


def _ready(net: nn.Module) -> nn.Module:
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def _size_pair(size) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = (int(s) for s in size)
    return h, w


def _normalizer(normalize) -> Normalize | None:
    if normalize is None or normalize == "none":
        return None
    if normalize == "imagenet":
        return Normalize(*IMAGENET_NORMALIZATION)
    if isinstance(normalize, str):
        raise VisageError(f"unknown normalisation {normalize!r}: use 'none', 'imagenet' or (mean, std)")
    mean, std = normalize
    return Normalize(mean, std)
