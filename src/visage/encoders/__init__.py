"""Face encoders behind one interface (:class:`visage.encoders.base.Encoder`), and their registry.

``get_encoder`` takes a registered name (``dlib``, ``facenet``, ``dlib-torch``, ``dlib+facenet``) or the path of a
model trained by ``visage train`` (a ``.pt`` file), so every stage that encodes accepts both.
"""

from __future__ import annotations

import functools
import importlib
import os
import threading
from pathlib import Path

from ..config import DEFAULT_ENCODER
from ..errors import InvalidArgument, ModelError
from .base import Encoder

#: Encoder names accepted by ``get_encoder``, mapped to "module:Class" (imported on first use).
ENCODERS = {
    "dlib": "visage.encoders.dlib_resnet:DlibResNetEncoder",
    "facenet": "visage.encoders.facenet:FaceNetEncoder",
    "dlib-torch": "visage.encoders.dlib_torch:DlibTorchEncoder",
    "dlib+facenet": "visage.encoders.fused:DlibFaceNetEncoder",
}
#: Loads a trained model file as an Encoder ("module:function"; the trainer's format, read on first use).
TRAINED_LOADER = "visage.train.trained:load_trained_encoder"
_lock = threading.RLock()  # a trained file loads its base encoder through get_encoder

__all__ = ["DEFAULT_ENCODER", "ENCODERS", "Encoder", "get_encoder"]


@functools.cache
def _load(name: str) -> Encoder:
    module_name, class_name = ENCODERS[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)()


@functools.cache
def _load_trained(path: str, modified_ns: int) -> Encoder:
    module_name, function_name = TRAINED_LOADER.split(":")
    return getattr(importlib.import_module(module_name), function_name)(path)


def is_trained_file(name: str | os.PathLike) -> bool:
    """Does ``name`` name a trained model file rather than a registered encoder?"""
    return str(name) not in ENCODERS and (str(name).endswith(".pt") or Path(name).is_file())


def get_encoder(name: str | os.PathLike = DEFAULT_ENCODER) -> Encoder:
    """The encoder called ``name``, or the trained model file at that path, loaded once per process.

    Raises :class:`~visage.errors.InvalidArgument` for an unknown name; a trained file that cannot be
    read raises :class:`~visage.errors.ModelError` naming it.
    """
    if is_trained_file(name):
        path = Path(name).resolve()
        if not path.is_file():
            raise ModelError(f"{name}: no such model file")
        with _lock:
            return _load_trained(str(path), path.stat().st_mtime_ns)
    if name not in ENCODERS:
        raise InvalidArgument(f"unknown encoder {name!r}; choose from {', '.join(ENCODERS)}, or a trained .pt file")
    with _lock:
        return _load(str(name))
