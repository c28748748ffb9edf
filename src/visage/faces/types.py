"""Typed results shared by every stage: a face's box, score and landmarks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Box:
    """A face box: the pixel coordinates of its left, top, right and bottom edges in the image as displayed."""

    left: int
    top: int
    right: int
    bottom: int

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top

    @property
    def area(self) -> int:
        return max(self.width, 0) * max(self.height, 0)

    def to_dict(self) -> dict[str, int]:
        return {"left": self.left, "top": self.top, "right": self.right, "bottom": self.bottom}


@dataclass(frozen=True, eq=False)
class Face:
    """One detected face.

    ``landmarks5`` is (5, 2) and ``landmarks68`` (68, 2) or None, as (x, y) pixel coordinates in the
    full-resolution image. ``score`` is the detector's own confidence (higher is surer).
    """

    box: Box
    score: float
    landmarks5: np.ndarray
    landmarks68: np.ndarray | None
    detector: str

    def to_dict(self) -> dict:
        landmarks = {"5": _points(self.landmarks5)}
        if self.landmarks68 is not None:
            landmarks["68"] = _points(self.landmarks68)
        return {"box": self.box.to_dict(), "score": round(float(self.score), 4), "landmarks": landmarks}


@dataclass(frozen=True, eq=False)
class FaceEncoding:
    """A face and its embedding f(x): ``encoding`` is a float32 vector made by encoder ``encoder``."""

    face: Face
    encoding: np.ndarray
    encoder: str

    def to_dict(self) -> dict:
        return {**self.face.to_dict(), "encoder": self.encoder,
                "encoding": [round(float(v), 6) for v in self.encoding]}


def _points(points: np.ndarray) -> list[list[float]]:
    return [[round(float(x), 1), round(float(y), 1)] for x, y in points]
