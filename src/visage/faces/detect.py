"""Face detectors behind one interface, run on a copy of the image scaled for the face sizes wanted.

dlib's detectors find faces down to about 80 px. Rather than upsampling every photo (slow on large
ones) we pick one working scale per image so that the smallest face asked for becomes 80 px, and
never work on more than :data:`MAX_WORKING_PIXELS`. Boxes are mapped back to full resolution.
Detections scored below a floor are dropped: each detector's own default is
:data:`visage.config.DEFAULT_MIN_SCORE`, which says how it was measured.
"""

from __future__ import annotations

import functools
import threading
from typing import Protocol

import cv2
import numpy as np

from ..config import DEFAULT_MIN_SCORE
from ..errors import VisageError
from ..models import model_path
from .landmarks import locate
from .mtcnn import MtcnnDetector
from .types import Box, Face

#: Ceiling on the pixels of the detector's working copy, whatever ``min_face_size`` asks.
MAX_WORKING_PIXELS = 8_000_000
#: Default smallest face, as a fraction of the image's shorter side (and never below 40 px).
MIN_FACE_FRACTION = 0.05
MIN_FACE_PIXELS = 40

RawDetection = tuple[tuple[float, float, float, float], float]


class Detector(Protocol):
    """Finds face boxes in an RGB uint8 array at the array's own scale."""

    name: str
    #: The smallest face, in pixels, the detector finds without upsampling.
    native_min_face: int

    def detect_raw(self, pixels: np.ndarray) -> list[RawDetection]:
        """Boxes as (left, top, right, bottom) floats with a confidence score each."""
        ...


class HogDetector:
    """dlib's HOG + linear SVM frontal face detector: fast, for roughly frontal faces."""

    name = "hog"
    native_min_face = 80

    def __init__(self, threshold: float = 0.0):
        import dlib

        self._detector = dlib.get_frontal_face_detector()
        self._threshold = threshold
        self._lock = threading.Lock()  # dlib's models keep working memory: one caller at a time

    def detect_raw(self, pixels: np.ndarray) -> list[RawDetection]:
        with self._lock:
            rects, scores, _ = self._detector.run(pixels, 0, self._threshold)
        return [((r.left(), r.top(), r.right(), r.bottom()), float(s)) for r, s in zip(rects, scores)]


class MmodDetector:
    """dlib's CNN (max-margin object detection) face detector: slower, finds turned faces too."""

    name = "mmod"
    native_min_face = 80  # trained down to 40 px, but reliable from about 80

    def __init__(self):
        import dlib

        self._detector = dlib.cnn_face_detection_model_v1(str(model_path("dlib_mmod_detector")))
        self._lock = threading.Lock()

    def detect_raw(self, pixels: np.ndarray) -> list[RawDetection]:
        with self._lock:
            found = self._detector(pixels, 0)
        return [((d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom()), float(d.confidence))
                for d in found]


DETECTORS = {"hog": HogDetector, "mmod": MmodDetector, "mtcnn": MtcnnDetector}
_lock = threading.Lock()


@functools.cache
def _cached_detector(name: str) -> Detector:
    return DETECTORS[name]()


def get_detector(name: str) -> Detector:
    """The detector called ``name`` (``hog`` or ``mmod``), loaded once per process."""
    if name not in DETECTORS:
        raise VisageError(f"unknown detector {name!r}; choose from {', '.join(DETECTORS)}")
    with _lock:
        return _cached_detector(name)


def working_scale(height: int, width: int, native_min_face: int, min_face_size: float | None = None) -> float:
    """Scale factor for the detector's copy so that faces of ``min_face_size`` px become detectable."""
    if min_face_size is None:
        min_face_size = max(MIN_FACE_PIXELS, MIN_FACE_FRACTION * min(height, width))
    scale = native_min_face / float(min_face_size)
    cap = (MAX_WORKING_PIXELS / float(height * width)) ** 0.5
    return min(scale, cap)


def detect_boxes(pixels: np.ndarray, detector: Detector, min_face_size: float | None = None) -> list[tuple[Box, float]]:
    """Run ``detector`` on a suitably scaled copy; boxes in full-resolution pixels, clipped to the image."""
    height, width = pixels.shape[:2]
    scale = working_scale(height, width, detector.native_min_face, min_face_size)
    if abs(scale - 1.0) > 1e-3:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        work = cv2.resize(pixels, size, interpolation=interpolation)
        sx, sy = size[0] / width, size[1] / height
    else:
        work, sx, sy = pixels, 1.0, 1.0
    out = []
    for (left, top, right, bottom), score in detector.detect_raw(work):
        box = Box(
            left=int(np.clip(round(left / sx), 0, width)),
            top=int(np.clip(round(top / sy), 0, height)),
            right=int(np.clip(round(right / sx), 0, width)),
            bottom=int(np.clip(round(bottom / sy), 0, height)),
        )
        if box.area > 0:
            out.append((box, score))
    return out


def min_score_for(detector: str, min_score: float | None = None) -> float:
    """The detection-score floor in force: ``min_score`` when given, else ``detector``'s default.

    dlib's detectors report only scores above 0 (and MTCNN only above O-Net's 0.7), so a floor
    below that keeps everything they report.
    """
    if min_score is not None:
        return float(min_score)
    return DEFAULT_MIN_SCORE.get(detector, float("-inf"))


def detect_faces(pixels: np.ndarray, detector: str, min_face_size: float | None = None,
                 landmarks68: bool = True, min_score: float | None = None) -> list[Face]:
    """Every face in an RGB uint8 array as a :class:`Face` with its landmarks, largest first.

    Faces scored below ``min_score`` (by default :func:`min_score_for` the detector) are dropped
    before their landmarks are placed.
    """
    floor = min_score_for(detector, min_score)
    faces = [
        Face(
            box=box,
            score=score,
            landmarks5=locate(pixels, box, 5),
            landmarks68=locate(pixels, box, 68) if landmarks68 else None,
            detector=detector,
        )
        for box, score in detect_boxes(pixels, get_detector(detector), min_face_size)
        if score >= floor
    ]
    return sorted(faces, key=lambda f: f.box.area, reverse=True)
