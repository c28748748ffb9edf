"""visage: face recognition, liveness, neural style transfer and ConvNet introspection, offline.

The face pipeline in a few calls::

    import visage
    faces = visage.detect("group.jpg")            # list[Face]
    encodings = visage.encode("me.jpg")           # list[FaceEncoding], f(x) per face
    result = visage.verify("me.jpg", "you.jpg")   # Verification: distance, threshold, same, probability

Submodules import lazily, so ``import visage`` stays fast.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING

# PyTorch's OpenMP threads spin while idle; between batches that steals the cores dlib's
# single-threaded detection needs. Must be set before torch is first imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

_EXPORTS = {
    "detect": "visage.api",
    "encode": "visage.api",
    "encode_batch": "visage.api",
    "encode_many": "visage.api",
    "verify": "visage.api",
    "load_image": "visage.media.images",
    "Image": "visage.media.images",
    "Face": "visage.faces.types",
    "Box": "visage.faces.types",
    "FaceEncoding": "visage.faces.types",
    "Verification": "visage.evaluation.verification",
    "Calibration": "visage.evaluation.verification",
    "VisageError": "visage.errors",
    "ImageError": "visage.errors",
    "ModelError": "visage.errors",
    "FaceCountError": "visage.errors",
    "SpoofError": "visage.errors",
    "GalleryError": "visage.errors",
    "Gallery": "visage.gallery",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from .api import detect, encode, encode_batch, encode_many, verify
    from .errors import FaceCountError, GalleryError, ImageError, ModelError, SpoofError, VisageError
    from .evaluation.verification import Calibration, Verification
    from .faces.types import Box, Face, FaceEncoding
    from .gallery import Gallery
    from .media.images import Image, load_image


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'visage' has no attribute {name!r}")
