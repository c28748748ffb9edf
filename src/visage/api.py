"""The face pipeline as a handful of functions: image → faces → chips → encodings → decisions.

Models load once per process, on first use. Every function accepts anything
:func:`visage.load_image` accepts and decodes it once; each stage takes the previous stage's
output (``encode(image, faces=detect(image))``), so nothing is detected twice.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

from .config import DEFAULT_DETECTOR, DEFAULT_ENCODER
from .encoders import get_encoder
from .errors import FaceCountError, InvalidArgument
from .evaluation.calibration import CalibrationSource, calibration_for
from .evaluation.verification import Verification, decide, distance
from .faces.types import Face, FaceEncoding
from .media.images import ImageSource, load_image
from .pipeline import detect, encode, encode_batch, encode_many

__all__ = ["detect", "encode", "encode_batch", "encode_many", "verify"]

#: Which faces :func:`verify` compares when a photo has several.
VerifyWhich = Literal["largest", "best"]


def verify(
    a: ImageSource,
    b: ImageSource,
    *,
    threshold: float | None = None,
    calibration: CalibrationSource | None = None,
    detector: str = DEFAULT_DETECTOR,
    encoder: str = DEFAULT_ENCODER,
    min_face_size: float | None = None,
    min_score: float | None = None,
    which: VerifyWhich = "largest",
    require_live: bool = False,
) -> Verification:
    """Are the faces in ``a`` and ``b`` the same person?

    Returns a :class:`~visage.evaluation.verification.Verification` with the distance, the
    threshold used, the decision and the calibrated probability of same. Raises
    :class:`~visage.errors.FaceCountError` when either image has no face. Each image is detected
    once (``detector``, ``min_face_size``, ``min_score`` as in :func:`detect`).

    ``which`` says which faces are compared when a photo has several: ``"largest"`` (the default)
    compares the largest face of each photo; ``"best"`` the closest pair among all faces of ``a``
    and all faces of ``b``. The result carries the boxes compared (``face_a``, ``face_b``), each
    photo's face count, and a warning for each photo with several faces naming the face used.

    With ``require_live`` the faces compared must pass the liveness check, or
    :class:`~visage.errors.SpoofError` is raised (an attack, or missing evidence such as no face).
    With ``"largest"`` they are checked before any matching; with ``"best"`` they are known only
    once every pair is measured, and are checked before any decision is returned.

    ``encoder`` is a registered name or a model file from ``visage train``; ``calibration`` (a
    Calibration, a PairCalibration or a file from ``visage calibrate``) gives the threshold and
    P(same), by default the encoder's shipped calibration. One fitted for another encoder raises
    :class:`~visage.errors.InvalidArgument` before any photo is looked at. The result names the
    encoder as given (``encoder``) and its embedding space (``embedding``).
    """
    if which not in ("largest", "best"):
        raise InvalidArgument(f"which must be 'largest' or 'best', not {which!r}")
    # The calibration is settled first: a wrong one is refused before any detection.
    cal = calibration_for(encoder, get_encoder(encoder).name, calibration)
    images = [load_image(a), load_image(b)]
    found = [detect(img, detector=detector, min_face_size=min_face_size, min_score=min_score, landmarks68=False)
             for img in images]
    if require_live:
        from .liveness import require_live as refuse_unless_live

        for img, faces in zip(images, found):
            if which == "largest" or not faces:  # the largest face is the one compared; no face is no evidence
                refuse_unless_live(img, faces=faces)
    for img, faces in zip(images, found):
        if not faces:
            raise FaceCountError(f"{img.name}: no face found")
    if which == "largest":
        first, second = (e[0] for e in encode_batch(images, faces=[f[:1] for f in found], encoder=encoder))
        used = (0, 0)
    else:
        encoded_a, encoded_b = encode_batch(images, faces=found, encoder=encoder)
        used = _closest_pair(encoded_a, encoded_b)
        first, second = encoded_a[used[0]], encoded_b[used[1]]
        if require_live:
            for img, chosen in zip(images, (first, second)):
                refuse_unless_live(img, faces=[chosen.face])
    notes = [note for img, faces, index in zip(images, found, used)
             if (note := _which_face_note(img.name, faces, index, which))]
    return replace(decide(first.encoding, second.encoding, cal, threshold), encoder=str(encoder),
                   embedding=first.encoder, face_a=first.face.box, face_b=second.face.box,
                   faces_in_a=len(found[0]), faces_in_b=len(found[1]), warnings=tuple(notes))


def _closest_pair(a: list[FaceEncoding], b: list[FaceEncoding]) -> tuple[int, int]:
    """The indices ``(i, j)`` of the closest encodings ``a[i]``, ``b[j]``, by the distance decisions use."""
    pairs = [(i, j) for i in range(len(a)) for j in range(len(b))]
    return min(pairs, key=lambda ij: distance(a[ij[0]].encoding, b[ij[1]].encoding))


def _which_face_note(name: str, faces: list[Face], index: int, which: VerifyWhich) -> str | None:
    """For a photo with several faces, the warning naming the one used (numbered from 1); else None."""
    if len(faces) < 2:
        return None
    box = faces[index].box
    how = "the largest" if which == "largest" else "the closest match to the other photo"
    return (f"{name}: {len(faces)} faces; used {how} "
            f"(face {index + 1} at {box.left},{box.top},{box.right},{box.bottom})")
