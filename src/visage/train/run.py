"""``visage train`` as a function: a folder of people in, a trained model file out."""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..config import DEFAULT_DETECTOR, DEFAULT_TRAIN_ENCODER
from ..errors import VisageError
from .data import FaceCache, load_arrays, scan_people, split_people
from .nets import ConvEncoder, ProjectionHead
from .trained import chip_transform, finetune_net, save_trained
from .trainer import MODES, TrainConfig, TrainResult, TripletTrainer, checkpoint_path

log = logging.getLogger(__name__)


def _units(module: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module]]:
    """Top-level modules in forward order, with ``nn.Sequential`` containers opened up."""
    out = []
    for name, child in module.named_children():
        full = f"{prefix}{name}"
        out += _units(child, full + ".") if isinstance(child, nn.Sequential) else [(full, child)]
    return out


def freeze_all_but_last(net: nn.Module, layers: int) -> list[str]:
    """Freeze every parameter except those of the last ``layers`` units that have any.

    Units are top-level modules, with ``nn.Sequential`` containers opened (so a stage of residual
    blocks counts block by block). Returns the names of the units left trainable, e.g. FaceNet's
    ``block8``, ``bottleneck``, ``bottleneck_bn`` for ``layers=3``. ``layers <= 0`` trains all.
    """
    with_params = [(name, m) for name, m in _units(net) if any(True for _ in m.parameters())]
    if layers <= 0 or layers >= len(with_params):
        return [name for name, _ in with_params]
    for p in net.parameters():
        p.requires_grad_(False)
    for _, m in with_params[-layers:]:
        for p in m.parameters():
            p.requires_grad_(True)
    return [name for name, _ in with_params[-layers:]]


def random_flip(x: torch.Tensor) -> torch.Tensor:
    """Mirror about half of an (N, C, H, W) image batch left-right: faces are nearly symmetric."""
    flip = torch.rand(len(x), device=x.device) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def train_folder(
    data_dir: str | Path,
    output: str | Path,
    *,
    mode: str | None = None,
    encoder: str = DEFAULT_TRAIN_ENCODER,
    detector: str = DEFAULT_DETECTOR,
    config: TrainConfig | None = None,
    holdout: float = 0.25,
    embedding_dim: int | None = None,
    hidden: int = 0,
    trainable_layers: int = 3,
    resume: bool = False,
    progress: bool = True,
    cache_dir: str | Path | None = None,
) -> TrainResult:
    """Train on ``data_dir/<person>/<files>``, validate on held-out people, save the best to ``output``.

    Modes: ``head`` trains a :class:`ProjectionHead` on frozen ``encoder`` encodings of photos;
    ``finetune`` trains the last ``trainable_layers`` modules of ``encoder``'s own network on its
    face chips; ``conv`` trains a :class:`ConvEncoder` from scratch on chips (2D) or on ``.npy``
    arrays (1D signals, 2D images, 3D volumes or clips). ``mode`` defaults to ``head`` for photos
    and ``conv`` for arrays. ``holdout`` is the fraction (or number) of people kept for
    validation. A checkpoint ``<output>.ckpt`` is written after every epoch; ``resume`` continues
    from it. Returns the :class:`TrainResult` (also stored in the model file).
    """
    from ..encoders import get_encoder

    config = config or TrainConfig()
    folder = scan_people(data_dir)
    mode = mode or ("conv" if folder.kind == "arrays" else "head")
    if mode not in MODES:
        raise VisageError(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")
    if folder.kind == "arrays" and mode != "conv":
        raise VisageError(f"{data_dir}: holds .npy arrays, which only --mode conv can train on")
    labels = np.array([s.label for s in folder.samples])

    face_encoder = None
    if folder.kind == "images":
        face_encoder = get_encoder(encoder)
        cache = FaceCache(encoder, detector, cache_dir)
        x, kept = cache.many([s.path for s in folder.samples], "encoding" if mode == "head" else "chip", progress)
        labels = labels[kept]
        input_kind = "encodings" if mode == "head" else "chips"
    else:
        x = load_arrays(folder.samples)
        input_kind = "arrays"

    train_idx, val_idx = split_people(labels, holdout, config.seed)
    net: nn.Module
    if mode == "head":
        net = ProjectionHead(x.shape[1], embedding_dim or x.shape[1], hidden)
    elif mode == "finetune":
        net = finetune_net(face_encoder)
        log.info("fine-tuning %s", ", ".join(freeze_all_but_last(net, trainable_layers)))
    elif input_kind == "chips":
        net = ConvEncoder(2, 3, embedding_dim or 64)
    else:
        net = ConvEncoder(x.ndim - 2, x.shape[1], embedding_dim or 64)

    transform = chip_transform(mode, face_encoder) if input_kind == "chips" else None
    with torch.no_grad():
        probe = net.eval()(transform(x[:2]) if transform else torch.as_tensor(x[:2], dtype=torch.float32))
    people = np.array(folder.people)
    meta = {
        "kind": mode, "input": input_kind, "input_shape": list(x.shape[1:]),
        "encoder": encoder if face_encoder is not None else None,
        "encoder_name": face_encoder.name if face_encoder is not None else None,
        "detector": detector if face_encoder is not None else None,
        "net_spec": getattr(net, "spec", None), "embedding_dim": int(probe.shape[1]),
        "people": {"train": sorted(set(people[labels[train_idx]])), "validation": sorted(set(people[labels[val_idx]]))},
        "data_dir": str(data_dir),
    }
    trainer = TripletTrainer(net, x[train_idx], labels[train_idx], x[val_idx], labels[val_idx], config,
                             transform=transform, augment=random_flip if input_kind == "chips" else None,
                             checkpoint=checkpoint_path(output), meta=meta)
    result = trainer.fit(resume=resume, progress=progress)
    save_trained(output, trainer.net, {**meta, "config": asdict(config), "result": result.to_dict()})
    return result
