"""The main job on embedded defaults: detect faces on a sample photo, draw them, verify sample pairs.

Uses the dev set (``shared/data`` beside the source checkout, :func:`default_data_dir`) when it is
there, else photos that installed packages ship.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from .api import detect, verify
from .config import DEFAULT_DETECTOR
from .draw import save_drawing
from .evaluation.verification import Verification
from .faces.types import Face
from .media.images import Image, load_image


def default_data_dir() -> Path | None:
    """The dev set beside the project's source checkout (``<checkout>/../shared/data``), wherever
    the command runs from; None when it is not there (an installed package has no checkout)."""
    checkout = Path(__file__).resolve().parents[2]  # src/visage/demo.py -> the checkout
    data = checkout.parent / "shared" / "data"
    return data if data.is_dir() else None


@dataclass
class DemoResult:
    photo: Image
    faces: list[Face]
    drawing: Path
    verifications: list[tuple[str, str, Verification]]


def _sample_photos(data: Path | None) -> tuple[Image, list[tuple[Image, Image]]]:
    if data is not None and (data / "faces").is_dir():
        faces = data / "faces"
        obama, obama2, biden = (load_image(faces / p) for p in
                                ("facerec__obama/obama.jpg", "facerec__obama/obama2.jpg", "facerec__biden/biden.jpg"))
        return load_image(data / "detection/facerec_obama_and_biden.jpg"), [(obama, obama2), (obama, biden)]
    from skimage import data as skdata

    astronaut = load_image(skdata.astronaut(), name="astronaut (skimage)")
    relit = np.asarray(PILImage.fromarray((astronaut.pixels * 0.7).astype(np.uint8)).resize((400, 400)))
    return astronaut, [(astronaut, load_image(relit, name="astronaut, darker and smaller"))]


def run_demo(out_dir: str | Path = "visage-demo", data: str | Path | None = None, *,
             detector: str = DEFAULT_DETECTOR, min_face_size: float | None = None,
             min_score: float | None = None) -> DemoResult:
    """Detect and draw the faces of a sample photo into ``out_dir``, and verify sample pairs.

    ``detector``, ``min_face_size`` and ``min_score`` are :func:`visage.detect`'s. Returns the
    photo, its faces, the drawing's path and each pair's :class:`Verification`.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    photo, pairs = _sample_photos(Path(data) if data else None)
    faces = detect(photo, detector=detector, min_face_size=min_face_size, min_score=min_score)
    drawing = save_drawing(photo, faces, out / "detections.png")
    verifications = [(a.name, b.name, verify(a, b, detector=detector, min_face_size=min_face_size,
                                             min_score=min_score)) for a, b in pairs]
    return DemoResult(photo, faces, drawing, verifications)
