"""Alignment: crop each face to an encoder's chip, rotated and scaled by its 5 landmarks."""

from __future__ import annotations

import numpy as np

from .landmarks import to_dlib_rect
from .types import Face


def dlib_chips(pixels: np.ndarray, faces: list[Face], size: int = 150, padding: float = 0.25) -> np.ndarray:
    """dlib's similarity alignment on the 5-point landmarks: (N, size, size, 3) uint8 RGB chips."""
    import dlib

    if not faces:
        return np.zeros((0, size, size, 3), dtype=np.uint8)
    shapes = dlib.full_object_detections()
    for face in faces:
        parts = dlib.points([dlib.point(int(round(x)), int(round(y))) for x, y in face.landmarks5])
        shapes.append(dlib.full_object_detection(to_dlib_rect(face.box), parts))
    chips = dlib.get_face_chips(pixels, shapes, size=size, padding=padding)
    return np.stack([np.asarray(c, dtype=np.uint8) for c in chips])
