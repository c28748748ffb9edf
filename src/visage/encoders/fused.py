"""A fused encoder: the L2-normalised embeddings of several encoders side by side, each weighted.

Part ``i`` is divided by its length and multiplied by ``sqrt(w_i)``, so that the squared Euclidean
distance of two fused vectors is ``Σ w_i · d_i²``, the weighted sum of the parts' squared distances
between unit vectors. One distance is therefore the fused score, and everything that stores or
searches plain vectors (the gallery, its indexes, export, Milvus) works unchanged.

The shipped ``dlib+facenet`` fuses dlib's ResNet (128-d) and FaceNet (512-d). They make different
mistakes: on pairs nobody tuned on, the fused distance makes fewer errors than either alone. Its
weight was chosen by cross-validation on a calibration set of labelled bona-fide faces that the
reported pairs are not part of (``scripts/fit_calibration.py --fuse``; ``docs/encoders.md``).

Chips: each part aligns a face its own way (dlib 150×150, FaceNet 160×160), so one fused chip
holds every part's chip, each in the top-left corner of an ``S``×``S`` square (``S`` the largest
size), stacked along the channel axis: (N, S, S, 3·parts) uint8. Nothing is resampled.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..errors import InvalidArgument
from ..faces.types import Face
from ..media.images import Image
from .base import Encoder

#: Weight of dlib's distance in ``dlib+facenet`` (FaceNet gets 1 − this), by cross-validation.
DLIB_WEIGHT = 0.6


class FusedEncoder:
    """Weighted concatenation of the unit-length embeddings of ``parts`` (each an :class:`Encoder`)."""

    def __init__(self, parts: Sequence[Encoder], weights: Sequence[float], name: str | None = None):
        if len(parts) < 2 or len(parts) != len(weights):
            raise InvalidArgument("a fused encoder needs two or more encoders, each with one weight")
        if any(not math.isfinite(w) or w <= 0 for w in weights):
            raise InvalidArgument(f"fusion weights must be positive, not {list(weights)}")
        total = float(sum(weights))
        self.parts = list(parts)
        self.weights = [float(w) / total for w in weights]
        self.dim = sum(p.dim for p in self.parts)
        self.chip_size = max(p.chip_size for p in self.parts)
        self.name = name or "+".join(f"{p.name}*{w:.3g}" for p, w in zip(self.parts, self.weights))
        self._scales = [math.sqrt(w) for w in self.weights]

    def chips(self, image: Image, faces: list[Face]) -> np.ndarray:
        """(N, S, S, 3·parts) uint8: every part's chip of each face, top-left in its own channels."""
        per_part = [np.asarray(p.chips(image, faces)) for p in self.parts]
        out = np.zeros((len(faces), self.chip_size, self.chip_size, 3 * len(per_part)), np.uint8)
        for i, c in enumerate(per_part):
            out[:, :c.shape[1], :c.shape[2], 3 * i:3 * i + 3] = c
        return out

    def split_chips(self, chips: np.ndarray) -> list[np.ndarray]:
        """The parts' own chips out of fused ``chips`` (the inverse of :meth:`chips`)."""
        chips = np.asarray(chips)
        if chips.ndim != 4 or chips.shape[3] != 3 * len(self.parts):
            raise InvalidArgument(f"fused chips must be (N, S, S, {3 * len(self.parts)}), not {chips.shape}")
        return [chips[:, :p.chip_size, :p.chip_size, 3 * i:3 * i + 3] for i, p in enumerate(self.parts)]

    def encode_chips(self, chips: np.ndarray) -> np.ndarray:
        """(N, dim) float32: each part's embedding made unit length and scaled by √weight."""
        out = []
        for part, scale, part_chips in zip(self.parts, self._scales, self.split_chips(chips)):
            vectors = np.asarray(part.encode_chips(np.ascontiguousarray(part_chips)), np.float32)
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            out.append(vectors / np.maximum(norms, 1e-12) * scale)
        return np.concatenate(out, axis=1).astype(np.float32, copy=False)


class DlibFaceNetEncoder(FusedEncoder):
    """dlib's ResNet (run by PyTorch) and FaceNet, fused with the shipped weight :data:`DLIB_WEIGHT`."""

    def __init__(self, dlib_weight: float = DLIB_WEIGHT):
        from . import get_encoder

        super().__init__([get_encoder("dlib-torch"), get_encoder("facenet")], [dlib_weight, 1.0 - dlib_weight],
                         name=f"dlib+facenet-w{dlib_weight:.2f}")
