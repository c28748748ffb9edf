"""Facial landmarks from dlib's shape predictors (5 and 68 points), at full resolution."""

from __future__ import annotations

import functools
import threading

import numpy as np

from ..models import model_path
from .types import Box

_lock = threading.Lock()
#: dlib's shape predictors are not safe to call from two threads at once.
_call_locks = {5: threading.Lock(), 68: threading.Lock()}


@functools.cache
def _predictor(points: int):
    import dlib

    return dlib.shape_predictor(str(model_path(f"dlib_landmarks_{points}")))


def predictor(points: int):
    """The dlib shape predictor for 5 or 68 points, loaded once per process."""
    if points not in (5, 68):
        raise ValueError("landmarks come in 5 or 68 points")
    with _lock:
        return _predictor(points)


def to_dlib_rect(box: Box):
    import dlib

    return dlib.rectangle(box.left, box.top, box.right, box.bottom)


def locate(pixels: np.ndarray, box: Box, points: int) -> np.ndarray:
    """Landmarks of the face in ``box``: (points, 2) float32 (x, y)."""
    model = predictor(points)
    with _call_locks[points]:
        shape = model(pixels, to_dlib_rect(box))
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)
