"""Pictures of results: detections drawn on the photo."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from PIL import ImageDraw, ImageFont

from .faces.types import Face
from .media.images import Image


def draw_faces(image: Image, faces: list[Face], labels: list[str] | None = None) -> PILImage.Image:
    """The photo with each face's box, 68 (or 5) landmarks and a label (default: its score) drawn on it."""
    canvas = PILImage.fromarray(image.pixels)
    pen = ImageDraw.Draw(canvas)
    line = max(2, round(min(image.width, image.height) / 300))
    font = ImageFont.load_default(size=max(10, 6 * line))
    for i, face in enumerate(faces):
        box = face.box
        pen.rectangle([box.left, box.top, box.right, box.bottom], outline=(0, 255, 0), width=line)
        points = face.landmarks68 if face.landmarks68 is not None else face.landmarks5
        r = max(1, line)
        for x, y in np.asarray(points):
            pen.ellipse([x - r, y - r, x + r, y + r], fill=(255, 64, 64))
        text = labels[i] if labels else f"#{i} {face.score:.2f}"
        left, top, right, bottom = pen.textbbox((box.left, box.top), text, font=font, anchor="lb")
        pen.rectangle([left - line, top - line, right + line, bottom], fill=(0, 255, 0))
        pen.text((box.left, box.top), text, fill=(0, 0, 0), font=font, anchor="lb")
    return canvas


def save_drawing(image: Image, faces: list[Face], path: str | Path, labels: list[str] | None = None) -> Path:
    """Write :func:`draw_faces` to ``path`` (format from the suffix) and return the path."""
    path = Path(path)
    draw_faces(image, faces, labels).save(path)
    return path
