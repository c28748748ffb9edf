"""Face encoders behind one interface (:class:`visage.encoders.base.Encoder`)."""

from __future__ import annotations

import functools
import threading

from ..errors import VisageError
from .base import Encoder

#: Encoder names accepted by ``get_encoder``, mapped to "module:Class" (imported on first use).
ENCODERS = {
    "dlib": "visage.encoders.dlib_resnet:DlibResNetEncoder",
    "facenet": "visage.encoders.facenet:FaceNetEncoder",
    "dlib-torch": "visage.encoders.dlib_torch:DlibTorchEncoder",
}
#: dlib's ResNet run by PyTorch: dlib's numbers (to 1e-6), several times faster, batched.
DEFAULT_ENCODER = "dlib-torch"
_lock = threading.Lock()


@functools.cache
def _load(name: str) -> Encoder:
    import importlib

    module_name, class_name = ENCODERS[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)()


def get_encoder(name: str = DEFAULT_ENCODER) -> Encoder:
    """The encoder called ``name``, loaded once per process."""
    if name not in ENCODERS:
        raise VisageError(f"unknown encoder {name!r}; choose from {', '.join(ENCODERS)}")
    with _lock:
        return _load(name)
