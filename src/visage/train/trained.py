"""Trained models on disk: save what :mod:`visage.train` produced, load it back, use it as an encoder.

A model file (``visage train -o model.pt``) holds the network's weights and everything needed to
rebuild it and feed it: its ``kind`` (``head``, ``finetune`` or ``conv``), the base face encoder
and detector for face models, the input shape, the training history and the held-out metrics.

>>> model = load_trained("model.pt")          # doctest: +SKIP
>>> encoder = load_trained_encoder("model.pt")  # an Encoder: chips() and encode_chips()  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import hashlib
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import VisageError
from .losses import l2_normalize
from .nets import build_net

FORMAT = "visage-trained-v1"


def finetune_net(encoder) -> nn.Module:
    """A private copy of ``encoder``'s PyTorch module (the shared encoder is left untouched)."""
    net = getattr(encoder, "net", None)
    if not isinstance(net, nn.Module):
        raise VisageError(f"encoder {encoder.name!r} has no PyTorch network to fine-tune; "
                          "use --mode head to train a projection on its frozen encodings")
    return copy.deepcopy(net)


def to_rgb_tensor(chips: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 chips → (N, 3, H, W) float32 in 0-255."""
    return torch.from_numpy(np.ascontiguousarray(chips)).permute(0, 3, 1, 2).float()


def chip_transform(kind: str, encoder) -> Callable[[np.ndarray], torch.Tensor]:
    """Turns (N, H, W, 3) uint8 chips into the network's input tensor for ``kind``.

    ``finetune`` uses the encoder's own input scaling: its ``preprocess`` method, or the
    ``standardise`` function of its module (FaceNet), or none when the network has a
    ``preprocess`` of its own and takes 0-255 RGB (dlib-torch). ``conv`` scales pixels to [-1, 1].
    """
    if kind == "finetune":
        scale = getattr(encoder, "preprocess", None) or getattr(sys.modules[type(encoder).__module__],
                                                                "standardise", None)
        if scale is not None:
            return scale
        if callable(getattr(encoder.net, "preprocess", None)):
            return to_rgb_tensor  # the network scales its 0-255 RGB input itself (dlib-torch)
        raise VisageError(f"encoder {encoder.name!r} does not say how it scales its input chips")

    def to_unit_range(chips: np.ndarray) -> torch.Tensor:
        return to_rgb_tensor(chips) / 127.5 - 1.0

    return to_unit_range


def save_trained(path: str | Path, net: nn.Module, meta: dict) -> Path:
    """Write ``net``'s weights with ``meta`` (kind, encoder, detector, input_shape, net_spec, ...)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format": FORMAT, **meta, "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()}},
               tmp)
    tmp.replace(path)
    return path


class TrainedModel:
    """A network trained by visage, in eval mode. ``embed`` takes inputs as they were trained on:

    frozen encodings (``head``), uint8 face chips (``finetune``; ``conv`` on photos) or
    channel-first arrays (``conv`` on ``.npy`` data).
    """

    def __init__(self, net: nn.Module, meta: dict, transform: Callable[[np.ndarray], torch.Tensor] | None = None):
        self.net = net.eval()
        self.meta = meta
        self.kind: str = meta["kind"]
        self._transform = transform or (lambda x: torch.as_tensor(np.asarray(x), dtype=torch.float32))

    def embed(self, x: np.ndarray, batch: int = 128) -> np.ndarray:
        """(N, D) float32 L2-normalised embeddings of ``x``."""
        out = []
        with torch.inference_mode():
            for start in range(0, len(x), batch):
                out.append(l2_normalize(self.net(self._transform(x[start:start + batch]))).numpy())
        dim = self.meta.get("embedding_dim", 0)
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, dim), np.float32)


class TrainedFaceEncoder:
    """A trained face model behind the :class:`~visage.encoders.base.Encoder` interface.

    Chips are cut by the base encoder (same geometry as in training); ``encode_chips`` runs the
    base encoder and the head (``head``) or the trained network itself (``finetune``, ``conv``).
    """

    def __init__(self, model: TrainedModel, base, digest: str):
        self.model = model
        self.base = base
        self.name = f"{base.name}+{model.kind}-{digest[:10]}"
        self.dim = int(model.meta["embedding_dim"])
        self.chip_size = int(base.chip_size)

    def chips(self, image, faces) -> np.ndarray:
        return self.base.chips(image, faces)

    def encode_chips(self, chips: np.ndarray) -> np.ndarray:
        chips = np.asarray(chips)
        if len(chips) == 0:
            return np.zeros((0, self.dim), np.float32)
        inputs = self.base.encode_chips(chips) if self.model.kind == "head" else chips
        return self.model.embed(inputs)


def _read(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise VisageError(f"{path}: no such model file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 -- unpickling can raise anything; the error names the file
        raise VisageError(f"{path}: not a readable model file ({exc})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise VisageError(f"{path}: not a model trained by visage")
    return state


def load_trained(path: str | Path) -> TrainedModel:
    """The model saved at ``path`` as a :class:`TrainedModel`. Raises VisageError naming the file."""
    from ..encoders import get_encoder

    state = _read(path)
    meta = {k: v for k, v in state.items() if k not in ("state_dict", "format")}
    encoder = get_encoder(meta["encoder"]) if meta.get("encoder") else None
    if meta["kind"] == "finetune":
        net = finetune_net(encoder)
    else:
        net = build_net(meta["net_spec"])
    try:
        net.load_state_dict(state["state_dict"])
    except RuntimeError as exc:
        raise VisageError(f"{path}: weights do not fit the network ({exc})") from None
    transform = chip_transform(meta["kind"], encoder) if meta.get("input") == "chips" else None
    return TrainedModel(net, meta, transform)


def load_trained_encoder(path: str | Path) -> TrainedFaceEncoder:
    """The face model at ``path`` as an Encoder (``.name``, ``.dim``, ``.chips``, ``.encode_chips``)."""
    from ..encoders import get_encoder

    model = load_trained(path)
    if not model.meta.get("encoder"):
        raise VisageError(f"{path}: trained on arrays, not faces; it cannot encode photos")
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return TrainedFaceEncoder(model, get_encoder(model.meta["encoder"]), digest)
