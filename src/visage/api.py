"""The face pipeline as a handful of functions: image → faces → chips → encodings → decisions.

Models load once per process, on first use. Every function accepts anything
:func:`visage.imageio.load_image` accepts and decodes it once.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import numpy as np

from .encoders import DEFAULT_ENCODER, get_encoder
from .errors import FaceCountError
from .faces.detect import detect_boxes, get_detector
from .faces.landmarks import locate
from .faces.types import Face, FaceEncoding
from .imageio import Image, ImageSource, load_image
from .verification import Calibration, Verification, decide, default_calibration

Which = Literal["all", "largest", "one"]


def detect(
    image: ImageSource,
    *,
    detector: str = "hog",
    min_face_size: float | None = None,
    landmarks68: bool = True,
) -> list[Face]:
    """Find every face in ``image``.

    Returns a list of :class:`Face` (box, detector score, 5-point and, unless ``landmarks68`` is
    False, 68-point landmarks), largest face first. An image without faces gives ``[]``.
    ``min_face_size`` is the smallest face wanted, in pixels; by default 5% of the shorter side,
    and at least 40 px.
    """
    img = load_image(image)
    found = detect_boxes(img.pixels, get_detector(detector), min_face_size)
    faces = [
        Face(
            box=box,
            score=score,
            landmarks5=locate(img.pixels, box, 5),
            landmarks68=locate(img.pixels, box, 68) if landmarks68 else None,
            detector=detector,
        )
        for box, score in found
    ]
    return sorted(faces, key=lambda f: f.box.area, reverse=True)


def select_faces(faces: list[Face], which: Which, name: str) -> list[Face]:
    """Keep all faces, the largest one, or insist on exactly one (``which="one"``)."""
    if which == "all":
        return faces
    if which == "largest":
        return faces[:1]
    if which == "one":
        if len(faces) != 1:
            raise FaceCountError(f"{name}: expected exactly one face, found {len(faces)}")
        return faces
    raise ValueError(f"which must be 'all', 'largest' or 'one', not {which!r}")


def encode(
    image: ImageSource,
    *,
    which: Which = "all",
    detector: str = "hog",
    encoder: str = DEFAULT_ENCODER,
    min_face_size: float | None = None,
) -> list[FaceEncoding]:
    """Detect faces in ``image`` and return one :class:`FaceEncoding` (face + f(x)) per kept face.

    ``which`` keeps ``"all"`` faces, the ``"largest"``, or requires exactly ``"one"`` (raising
    :class:`~visage.errors.FaceCountError` otherwise). No face gives ``[]`` unless ``which="one"``.
    """
    return encode_batch([image], which=which, detector=detector, encoder=encoder, min_face_size=min_face_size)[0]


def encode_batch(
    images: Iterable[ImageSource],
    *,
    which: Which = "all",
    detector: str = "hog",
    encoder: str = DEFAULT_ENCODER,
    min_face_size: float | None = None,
) -> list[list[FaceEncoding]]:
    """Like :func:`encode` for many images: returns one list of encodings per image, in order.

    The chips of all images go through the encoder together, which is faster than one by one.
    """
    enc = get_encoder(encoder)
    per_image: list[tuple[Image, list[Face]]] = []
    chips = []
    for source in images:
        img = load_image(source)
        faces = select_faces(detect(img, detector=detector, min_face_size=min_face_size, landmarks68=False),
                             which, img.name)
        per_image.append((img, faces))
        if faces:
            chips.append(enc.chips(img, faces))
    vectors = enc.encode_chips(np.concatenate(chips)) if chips else np.zeros((0, enc.dim), np.float32)
    out: list[list[FaceEncoding]] = []
    row = 0
    for _, faces in per_image:
        out.append([FaceEncoding(face, vectors[row + i], enc.name) for i, face in enumerate(faces)])
        row += len(faces)
    return out


def verify(
    a: ImageSource,
    b: ImageSource,
    *,
    threshold: float | None = None,
    calibration: Calibration | None = None,
    detector: str = "hog",
    encoder: str = DEFAULT_ENCODER,
    min_face_size: float | None = None,
    require_live: bool = False,
) -> Verification:
    """Are the largest faces in ``a`` and ``b`` the same person?

    Returns a :class:`~visage.verification.Verification` with the distance, the threshold used, the
    decision and the calibrated probability of same. Raises
    :class:`~visage.errors.FaceCountError` when either image has no face. With ``require_live``,
    both images first pass the liveness check, before any matching; an attack or missing
    evidence raises :class:`~visage.errors.SpoofError`.
    """
    images = [load_image(a), load_image(b)]
    if require_live:
        from .liveness import require_live as refuse_unless_live

        for img in images:
            refuse_unless_live(img)
    found = encode_batch(images, which="largest", detector=detector, encoder=encoder, min_face_size=min_face_size)
    for img, encodings in zip(images, found):
        if not encodings:
            raise FaceCountError(f"{img.name}: no face found")
    first, second = found[0][0], found[1][0]
    cal = calibration or default_calibration(first.encoder)
    return decide(first.encoding, second.encoding, cal, threshold)
