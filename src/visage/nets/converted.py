"""Weights converted once from a registry model file into a PyTorch state dict, then cached."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch

from ..config import visage_home
from ..models import MODELS, model_path

StateDict = dict[str, torch.Tensor]


def converted_path(model: str, converter_version: int) -> Path:
    """The cache file: its name carries the source's sha256 and the converter's version, so a
    different source file or converter gets an entry of its own."""
    sha = MODELS[model].sha256[:16]
    return visage_home() / "converted" / f"{model}-{sha}-c{converter_version}.pt"


def converted_state(model: str, converter_version: int, convert: Callable[[Path], StateDict]) -> StateDict:
    """The state dict ``convert`` makes from registry model ``model``, cached under ``visage_home()``.

    The source file is always checked (``model_path``); a torn cache file is rebuilt, and a
    read-only home only costs a conversion per process.
    """
    source = model_path(model)
    cached = converted_path(model, converter_version)
    if cached.is_file():
        try:
            return torch.load(cached, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001, S110 -- a torn or foreign cache file is rebuilt below
            pass
    state = convert(source)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(f"{cached.name}.{os.getpid()}.tmp")
        torch.save(state, tmp)
        os.replace(tmp, cached)
    except OSError:
        pass
    return state
