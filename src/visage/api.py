"""The face pipeline as a handful of functions: image → faces → chips → encodings → decisions.

Models load once per process, on first use. Every function accepts anything
:func:`visage.load_image` accepts and decodes it once; each stage takes the previous stage's
output (``encode(image, faces=detect(image))``), so nothing is detected twice.
"""

from __future__ import annotations

from .config import DEFAULT_DETECTOR, DEFAULT_ENCODER
from .errors import FaceCountError
from .evaluation.verification import Calibration, Verification, decide, default_calibration
from .media.images import ImageSource, load_image
from .pipeline import detect, encode, encode_batch, encode_many

__all__ = ["detect", "encode", "encode_batch", "encode_many", "verify"]


def verify(
    a: ImageSource,
    b: ImageSource,
    *,
    threshold: float | None = None,
    calibration: Calibration | None = None,
    detector: str = DEFAULT_DETECTOR,
    encoder: str = DEFAULT_ENCODER,
    min_face_size: float | None = None,
    require_live: bool = False,
) -> Verification:
    """Are the largest faces in ``a`` and ``b`` the same person?

    Returns a :class:`~visage.evaluation.verification.Verification` with the distance, the
    threshold used, the decision and the calibrated probability of same. Raises
    :class:`~visage.errors.FaceCountError` when either image has no face. With ``require_live``,
    the largest face of each image first passes the liveness check, before any matching; an attack
    or missing evidence raises :class:`~visage.errors.SpoofError`. Each image is detected once.
    """
    images = [load_image(a), load_image(b)]
    found = [detect(img, detector=detector, min_face_size=min_face_size, landmarks68=False) for img in images]
    if require_live:
        from .liveness import require_live as refuse_unless_live

        for img, faces in zip(images, found):
            refuse_unless_live(img, faces=faces)
    for img, faces in zip(images, found):
        if not faces:
            raise FaceCountError(f"{img.name}: no face found")
    first, second = (e[0] for e in encode_batch(images, faces=found, which="largest", encoder=encoder))
    cal = calibration or default_calibration(first.encoder)
    return decide(first.encoding, second.encoding, cal, threshold)
