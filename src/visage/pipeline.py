"""The face pipeline's stages, each taking the previous stage's output: image → faces → chips → encodings.

``detect`` finds faces; ``encode`` turns faces into encodings and detects only when it is not
given ``faces``; ``encode_many`` runs both over many photos in batches, reporting (not raising)
the photos it had to skip. The public functions in :mod:`visage.api` are these.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from .config import DEFAULT_DETECTOR, DEFAULT_ENCODER
from .encoders import get_encoder
from .errors import FaceCountError, InvalidArgument, VisageError
from .faces.detect import detect_faces
from .faces.types import Face, FaceEncoding
from .media.images import Image, ImageSource, load_image, source_label

Which = Literal["all", "largest", "one"]
#: Photos whose chips go through the encoder together in :func:`encode_many`.
BATCH_SIZE = 16


def detect(
    image: ImageSource,
    *,
    detector: str = DEFAULT_DETECTOR,
    min_face_size: float | None = None,
    min_score: float | None = None,
    landmarks68: bool = True,
) -> list[Face]:
    """Find every face in ``image``.

    Returns a list of :class:`Face` (box, detector score, 5-point and, unless ``landmarks68`` is
    False, 68-point landmarks), largest face first. An image without faces gives ``[]``.
    ``min_face_size`` is the smallest face wanted, in pixels; by default 5% of the shorter side,
    and at least 40 px. Faces the detector scores below ``min_score`` are dropped; by default the
    detector's own floor, :data:`visage.config.DEFAULT_MIN_SCORE` (for HOG 0.15, which keeps every
    face of the dev set and drops the mission patch on skimage's astronaut).
    """
    return detect_faces(load_image(image).pixels, detector, min_face_size, landmarks68, min_score)


def select_faces(faces: list[Face], which: Which, name: str) -> list[Face]:
    """Keep all faces, the largest one, or insist on exactly one (``which="one"``)."""
    if which == "all":
        return faces
    if which == "largest":
        return faces[:1]
    if which == "one":
        problem = face_count_problem(len(faces), which)
        if problem:
            raise FaceCountError(f"{name}: {problem}")
        return faces
    raise InvalidArgument(f"which must be 'all', 'largest' or 'one', not {which!r}")


def encode(
    image: ImageSource,
    *,
    faces: Sequence[Face] | None = None,
    which: Which = "all",
    detector: str = DEFAULT_DETECTOR,
    encoder: str = DEFAULT_ENCODER,
    min_face_size: float | None = None,
    min_score: float | None = None,
) -> list[FaceEncoding]:
    """Return one :class:`FaceEncoding` (face + f(x)) per kept face of ``image``.

    ``faces`` are faces already found in this image (from :func:`detect`, largest first); without
    them the image is detected first. ``which`` keeps ``"all"`` faces, the ``"largest"``, or
    requires exactly ``"one"`` (raising :class:`~visage.errors.FaceCountError` otherwise). No face
    gives ``[]`` unless ``which="one"``. ``encoder`` is a registered name or a trained ``.pt`` file.
    ``detector``, ``min_face_size`` and ``min_score`` are :func:`detect`'s, used only without ``faces``.
    """
    return encode_batch([image], faces=None if faces is None else [faces], which=which, detector=detector,
                        encoder=encoder, min_face_size=min_face_size, min_score=min_score)[0]


def encode_batch(
    images: Iterable[ImageSource],
    *,
    faces: Sequence[Sequence[Face]] | None = None,
    which: Which = "all",
    detector: str = DEFAULT_DETECTOR,
    encoder: str = DEFAULT_ENCODER,
    min_face_size: float | None = None,
    min_score: float | None = None,
) -> list[list[FaceEncoding]]:
    """Like :func:`encode` for many images: returns one list of encodings per image, in order.

    ``faces``, when given, holds the faces already found in each image. The chips of all images go
    through the encoder together, which is faster than one by one.
    """
    loaded = [load_image(source) for source in images]
    if faces is not None and len(faces) != len(loaded):
        raise InvalidArgument(f"faces: {len(faces)} lists given for {len(loaded)} images")
    found = [list(faces[i]) if faces is not None else
             detect_faces(img.pixels, detector, min_face_size, landmarks68=False, min_score=min_score)
             for i, img in enumerate(loaded)]
    return _encode_found(loaded, [select_faces(f, which, img.name) for img, f in zip(loaded, found)], encoder)


def _encode_found(images: list[Image], faces: list[list[Face]], encoder: str) -> list[list[FaceEncoding]]:
    enc = get_encoder(encoder)
    chips = [enc.chips(img, f) for img, f in zip(images, faces) if f]
    vectors = enc.encode_chips(np.concatenate(chips)) if chips else np.zeros((0, enc.dim), np.float32)
    out: list[list[FaceEncoding]] = []
    row = 0
    for f in faces:
        out.append([FaceEncoding(face, vectors[row + i], enc.name) for i, face in enumerate(f)])
        row += len(f)
    return out


@dataclass(frozen=True)
class EncodedPhoto:
    """One photo of :func:`encode_many`: its encodings, or why it was skipped (``skipped`` not None).

    ``image`` is None when the file could not be read.
    """

    source: str
    image: Image | None
    encodings: list[FaceEncoding] = field(default_factory=list)
    skipped: str | None = None

    @property
    def ok(self) -> bool:
        return self.skipped is None


def encode_many(
    sources: Iterable[ImageSource],
    *,
    which: Which = "all",
    detector: str = DEFAULT_DETECTOR,
    encoder: str = DEFAULT_ENCODER,
    min_face_size: float | None = None,
    min_score: float | None = None,
    batch_size: int = BATCH_SIZE,
    progress: bool = False,
    desc: str = "encoding",
) -> Iterator[EncodedPhoto]:
    """Encode many photos in batches; yields one :class:`EncodedPhoto` per source, in order.

    Nothing a photo can do stops the run: an unreadable file, a photo without a face, or one with
    several faces when ``which="one"`` comes back with ``skipped`` saying why (without the name,
    which ``source`` holds). Models load once; ``progress`` shows a bar. ``detector``,
    ``min_face_size`` and ``min_score`` are :func:`detect`'s.
    """
    from tqdm import tqdm

    sources = list(sources)
    with tqdm(total=len(sources), desc=desc, unit="photo", disable=not progress, leave=False) as bar:
        for start in range(0, len(sources), batch_size):
            chunk = sources[start:start + batch_size]
            yield from _encode_chunk(chunk, which, detector, encoder, min_face_size, min_score)
            bar.update(len(chunk))


def _encode_chunk(chunk: list[ImageSource], which: Which, detector: str, encoder: str,
                  min_face_size: float | None, min_score: float | None) -> list[EncodedPhoto]:
    slots: list[EncodedPhoto | None] = []
    images: list[Image] = []
    kept: list[list[Face]] = []
    for source in chunk:
        try:
            img = load_image(source)
            faces = detect_faces(img.pixels, detector, min_face_size, landmarks68=False, min_score=min_score)
        except VisageError as exc:
            slots.append(EncodedPhoto(source_label(source), None, skipped=_reason(exc, source)))
            continue
        problem = "no face found" if not faces else face_count_problem(len(faces), which)
        if problem:
            slots.append(EncodedPhoto(img.name, img, skipped=problem))
            continue
        slots.append(None)
        images.append(img)
        kept.append(faces[:1] if which == "largest" else faces)
    encoded = iter(zip(images, _encode_found(images, kept, encoder)))
    out = []
    for slot in slots:
        if slot is None:
            img, encodings = next(encoded)
            slot = EncodedPhoto(img.name, img, encodings)
        out.append(slot)
    return out


def face_count_problem(count: int, which: Which) -> str | None:
    """Why ``count`` faces do not do for ``which`` (``"one"`` wants exactly one), or None when they do."""
    if which == "one" and count == 0:
        return "no face found"
    if which == "one" and count > 1:
        return f"{count} faces found, expected one"
    return None


def _reason(exc: VisageError, source: ImageSource) -> str:
    """The error's message without the name it starts with: the report names the photo already."""
    message, label = str(exc), source_label(source)
    return message[len(label) + 2:] if message.startswith(label + ": ") else message
