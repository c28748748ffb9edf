"""The Encoder interface: aligned face chips in, one embedding f(x) per chip out."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from ..faces.types import Face
from ..media.images import Image


@runtime_checkable
class Encoder(Protocol):
    """Maps faces to embeddings. Implementations load their weights once, in ``__init__``."""

    #: Stable identifier stored with every embedding, e.g. ``"dlib-resnet-v1"``.
    name: str
    #: Length of one embedding.
    dim: int
    #: Side of one aligned chip, in pixels.
    chip_size: int

    def chips(self, image: Image, faces: list[Face]) -> np.ndarray:
        """Aligned crops for ``faces``: (N, size, size, 3) uint8 RGB, in the encoder's own geometry."""
        ...

    def encode_chips(self, chips: np.ndarray) -> np.ndarray:
        """Embeddings of aligned chips: (N, dim) float32, one row per chip."""
        ...
