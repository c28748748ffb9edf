"""Many inputs in one call: expand files and folders, run a stage over them, one record per face.

Every front end that takes many photos (the ``visage`` commands, a server) uses the same steps::

    sources = expand_sources(["photos/", "more.jpg"])     # folders → their images, recursively, sorted
    for outcome in detect_photos(sources):                # one Outcome per input, in input order
        outcome.skipped                                   # why it could not be processed, or None
        outcome.records                                   # one record per face (per pair for verify)
    summary = Summary.of(outcomes)                        # "N photos, M faces, K skipped"

An input never stops the run: an unreadable file comes back as an :class:`Outcome` with
``skipped`` set. Models load once per process; with ``workers`` > 1 the photos are shared out in
chunks to that many processes, each loading the models once, and outcomes still come in input order.
"""

from __future__ import annotations

import csv
import math
import multiprocessing
import os
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial
from itertools import repeat
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal, TypeVar

from .config import DEFAULT_DETECTOR, DEFAULT_ENCODER
from .errors import SpoofError, VisageError
from .faces.types import Box, Face, FaceEncoding
from .media.images import IMAGE_SUFFIXES, list_images, load_image, source_label
from .pipeline import BATCH_SIZE, Which, encode_many
from .wording import probability

if TYPE_CHECKING:
    from .evaluation.calibration import CalibrationSource
    from .evaluation.verification import Verification
    from .gallery import Gallery
    from .gallery.types import Identification
    from .liveness import LivenessResult

#: What became of one input, from best to worst: processed with a positive answer, a negative one
#: (verify different, identify unknown, liveness attack), not enough evidence (liveness), refused
#: by a required liveness check, or not processed at all.
Verdict = Literal["ok", "negative", "insufficient", "refused", "skipped"]
SEVERITY: tuple[Verdict, ...] = ("ok", "negative", "insufficient", "refused", "skipped")

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Settings:
    """The detection and encoding options every batch stage shares (:func:`visage.detect`'s and ``encoder``)."""

    detector: str = DEFAULT_DETECTOR
    encoder: str = DEFAULT_ENCODER
    min_face_size: float | None = None
    min_score: float | None = None


# -- inputs -----------------------------------------------------------------------------------------

def expand_sources(paths: Iterable[str | os.PathLike], *, suffixes: Collection[str] = IMAGE_SUFFIXES) -> list[Path]:
    """The files named by ``paths``, in order: a folder stands for the images in it, recursively, sorted.

    A path that is not a folder is kept as given, even when it does not exist, so that it is
    reported and skipped like any bad file. Raises :class:`VisageError` for a folder holding no
    file with one of ``suffixes``.
    """
    out: list[Path] = []
    for path in map(Path, paths):
        out.extend(list_images(path, recursive=True, suffixes=suffixes, required=True) if path.is_dir() else [path])
    return out


@dataclass(frozen=True)
class PairSpec:
    """Two photos to compare; ``same`` is the label when the pairs file has one, else None."""

    a: Path
    b: Path
    same: bool | None = None


_TRUE, _FALSE = {"1", "true", "yes", "same"}, {"0", "false", "no", "different"}


def read_pairs(tsv: str | os.PathLike) -> list[PairSpec]:
    """Read a tab-separated pairs file: ``img_a``, ``img_b`` and optionally ``same`` (1/0, true/false).

    A header row naming ``img_a`` and ``img_b`` is optional (its other columns are ignored);
    without one the columns are taken in that order. Paths are relative to the file's folder.
    Blank lines and lines starting with ``#`` are ignored. Returns the pairs in file order; raises
    :class:`VisageError` naming the file and line for a malformed row.
    """
    tsv = Path(tsv)
    try:
        with open(tsv, newline="") as handle:
            rows = [(n, row) for n, row in enumerate(csv.reader(handle, delimiter="\t"), 1)
                    if row and row[0].strip() and not row[0].startswith("#")]
    except OSError as exc:
        raise VisageError(f"{tsv}: cannot read ({exc.strerror or exc})") from None
    columns = {"img_a": 0, "img_b": 1, "same": 2}
    if rows and {"img_a", "img_b"} <= {c.strip() for c in rows[0][1]}:
        header = [c.strip() for c in rows.pop(0)[1]]
        columns = {name: header.index(name) for name in ("img_a", "img_b", "same") if name in header}
    pairs = []
    for n, row in rows:
        if len(row) <= max(columns["img_a"], columns["img_b"]):
            raise VisageError(f"{tsv}:{n}: expected two tab-separated paths, got {row!r}")
        same = None
        if "same" in columns and columns["same"] < len(row) and row[columns["same"]].strip():
            word = row[columns["same"]].strip().lower()
            if word not in _TRUE | _FALSE:
                raise VisageError(f"{tsv}:{n}: same must be 1/0 or true/false, not {word!r}")
            same = word in _TRUE
        pairs.append(PairSpec(tsv.parent / row[columns["img_a"]].strip(), tsv.parent / row[columns["img_b"]].strip(),
                              same))
    if not pairs:
        raise VisageError(f"{tsv}: holds no pairs")
    return pairs


# -- records: one per face (per pair for verify) -------------------------------------------------------

def box_text(box: Box | None) -> str:
    """The one box notation of text output: ``left,top,right,bottom`` (``-`` for no box)."""
    return "-" if box is None else f"{box.left},{box.top},{box.right},{box.bottom}"


def _box_columns(box: Box | None) -> list:
    return ["", "", "", ""] if box is None else [box.left, box.top, box.right, box.bottom]


def _fmt(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


@dataclass(frozen=True)
class DetectedFace:
    """A face found by ``detect``: ``face`` counts from 1, largest first, as a person counts."""

    CSV_COLUMNS: ClassVar[tuple[str, ...]] = ("photo", "face", "left", "top", "right", "bottom", "score")
    photo: str
    face: int
    detected: Face

    def to_dict(self) -> dict:
        """JSON-ready: photo, face, box ``{left, top, right, bottom}``, score, landmarks."""
        return {"photo": self.photo, "face": self.face, **self.detected.to_dict()}

    def csv_row(self) -> list:
        return [self.photo, self.face, *_box_columns(self.detected.box), round(float(self.detected.score), 4)]

    def text(self) -> str:
        return f"  face {self.face}  box {box_text(self.detected.box)}  score {self.detected.score:.2f}"


@dataclass(frozen=True)
class EncodedFace:
    """A face and its encoding; ``encoder`` as its user named it, ``encoding.encoder`` its embedding space."""

    CSV_COLUMNS: ClassVar[tuple[str, ...]] = ("photo", "face", "left", "top", "right", "bottom", "score",
                                              "encoder", "embedding", "encoding")
    photo: str
    face: int
    encoded: FaceEncoding
    encoder: str

    def to_dict(self) -> dict:
        """JSON-ready: photo, face, box, score, landmarks, encoder, embedding, encoding (a list of floats)."""
        return {"photo": self.photo, "face": self.face, **self.encoded.to_dict(), "encoder": self.encoder,
                "embedding": self.encoded.encoder}

    def csv_row(self) -> list:
        # The encoding is one column of space-separated numbers, so the columns do not depend on the encoder.
        return [self.photo, self.face, *_box_columns(self.encoded.face.box), round(float(self.encoded.face.score), 4),
                self.encoder, self.encoded.encoder, " ".join(f"{v:.6f}" for v in self.encoded.encoding)]

    def text(self) -> str:
        numbers = " ".join(f"{v:+.4f}" for v in self.encoded.encoding)
        return f"  face {self.face}  box {box_text(self.encoded.face.box)}  {self.encoded.encoder}\n    {numbers}"


@dataclass(frozen=True)
class IdentifiedFace:
    """A face and who it is: ``result.name`` is None for someone not enrolled (or not judged live)."""

    CSV_COLUMNS: ClassVar[tuple[str, ...]] = ("photo", "face", "left", "top", "right", "bottom", "name", "distance",
                                              "threshold", "live", "candidates")
    photo: str
    face: int
    result: Identification

    def to_dict(self) -> dict:
        """JSON-ready: photo, face, box, name (None when unknown), distance, threshold, live, candidates."""
        return {"photo": self.photo, "face": self.face, **self.result.to_dict()}

    def csv_row(self) -> list:
        r = self.result
        candidates = ";".join(f"{c.name}:{c.distance:.4f}" for c in r.candidates)
        return [self.photo, self.face, *_box_columns(r.box), r.name or "", "" if r.distance is None else
                round(r.distance, 6), r.threshold, "" if r.live is None else r.live, candidates]

    def text(self) -> str:
        r = self.result
        line = (f"  face {self.face}  box {box_text(r.box)}: {r.name or 'unknown'}  distance {_fmt(r.distance)} "
                f"(threshold {r.threshold:.4f})")
        if len(r.candidates) > 1:
            line += "\n    candidates: " + ", ".join(f"{c.name} {c.distance:.4f}" for c in r.candidates)
        return line


@dataclass(frozen=True)
class LivenessRecord:
    """The liveness verdict on the largest face of one photo or clip (``face`` None without a face box)."""

    CSV_COLUMNS: ClassVar[tuple[str, ...]] = ("photo", "face", "left", "top", "right", "bottom", "decision", "score",
                                              "threshold", "reason")
    photo: str
    face: int | None
    box: Box | None
    result: LivenessResult

    def to_dict(self) -> dict:
        """JSON-ready: photo, face, box, then the result's fields (decision, live, score, threshold, reason, evidence)."""
        return {"photo": self.photo, "face": self.face, "box": None if self.box is None else self.box.to_dict(),
                **self.result.to_dict()}

    def csv_row(self) -> list:
        r = self.result
        return [self.photo, "" if self.face is None else self.face, *_box_columns(self.box), r.decision,
                "" if r.score is None else round(r.score, 4), r.threshold, r.reason]

    def text(self) -> str:
        r = self.result
        where = f"face {self.face}  box {box_text(self.box)}: " if self.face is not None else ""
        return f"  {where}{r.decision.upper()}  score {_fmt(r.score, 3)} (live at ≥ {r.threshold})\n    {r.reason}"


@dataclass(frozen=True)
class PairRecord:
    """One verified pair: the decision, and the label from the pairs file when it had one (``expected``)."""

    CSV_COLUMNS: ClassVar[tuple[str, ...]] = ("a", "b", "same", "distance", "threshold", "probability", "expected",
                                              "a_left", "a_top", "a_right", "a_bottom",
                                              "b_left", "b_top", "b_right", "b_bottom")
    a: str
    b: str
    result: Verification
    expected: bool | None = None

    @property
    def correct(self) -> bool | None:
        """Whether the decision matches the label; None without a label."""
        return None if self.expected is None else self.expected == self.result.same

    def to_dict(self) -> dict:
        """JSON-ready: a, b, expected, correct, then the verification's fields (as ``verify --json``)."""
        return {"a": self.a, "b": self.b, "expected": self.expected, "correct": self.correct, **self.result.to_dict()}

    def csv_row(self) -> list:
        r = self.result
        return [self.a, self.b, r.same, round(r.distance, 6), r.threshold, round(r.probability, 6),
                "" if self.expected is None else self.expected, *_box_columns(r.face_a), *_box_columns(r.face_b)]

    def text(self) -> str:
        r = self.result
        verdict = "SAME" if r.same else "DIFFERENT"
        label = "" if self.expected is None else f"  [label {'same' if self.expected else 'different'}" \
                                                 f"{'' if self.correct else ', WRONG'}]"
        return (f"{self.a}  {self.b}: {verdict}  distance {r.distance:.4f} vs threshold {r.threshold:.4f} "
                f"(P(same) {probability(r.probability)}; faces at {box_text(r.face_a)} and {box_text(r.face_b)}){label}")


Record = DetectedFace | EncodedFace | IdentifiedFace | LivenessRecord | PairRecord


@dataclass(frozen=True)
class Outcome:
    """What became of one input (a photo, a clip or a pair): its records, or why it was skipped.

    ``verdict`` says how it went (:data:`Verdict`); ``skipped`` holds the reason when it is
    ``"skipped"`` or ``"refused"``. ``size`` is the photo's (width, height) when it was read.
    """

    source: str
    records: tuple[Record, ...] = ()
    verdict: Verdict = "ok"
    skipped: str | None = None
    size: tuple[int, int] | None = None
    #: Extra per-input facts a front end may show (e.g. the encoder used).
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Summary:
    """Counts over a run: inputs, records, inputs skipped, and how many of each verdict."""

    inputs: int
    faces: int
    verdicts: dict[Verdict, int]
    noun: str = "photo"

    @classmethod
    def of(cls, outcomes: Iterable[Outcome], noun: str = "photo") -> Summary:
        """Count ``outcomes``; ``noun`` names an input (``photo``, ``pair``)."""
        outcomes = list(outcomes)
        verdicts = {v: sum(o.verdict == v for o in outcomes) for v in SEVERITY}
        return cls(len(outcomes), sum(len(o.records) for o in outcomes), verdicts, noun)

    @property
    def skipped(self) -> int:
        return self.verdicts["skipped"]

    @property
    def worst(self) -> Verdict:
        """The worst verdict of the run (``"ok"`` for an empty run): what a single exit status reports."""
        return max((v for v in SEVERITY if self.verdicts.get(v)), key=SEVERITY.index, default="ok")

    def text(self) -> str:
        """``N photos, M faces, K skipped``, then the other verdicts that occurred (pairs: same/different)."""
        if self.noun == "pair":
            parts = [_count(self.inputs, "pair"), f"{self.verdicts['ok']} same", f"{self.verdicts['negative']} different"]
        else:
            parts = [_count(self.inputs, self.noun), _count(self.faces, "face")]
        parts.append(f"{self.skipped} skipped")
        extra: dict[Verdict, str] = {"refused": "refused", "insufficient": "with insufficient evidence"}
        parts += [f"{self.verdicts[v]} {words}" for v, words in extra.items() if self.verdicts[v]]
        return ", ".join(parts)


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


# -- the work, in one process or in several -------------------------------------------------------------

@dataclass(frozen=True)
class _Photo:
    """One photo after a stage ran on it, light enough to cross processes (no pixels)."""

    source: str
    sha256: str | None = None
    size: tuple[int, int] | None = None
    faces: tuple[Face, ...] = ()
    encodings: tuple[FaceEncoding, ...] = ()
    skipped: str | None = None
    refused: str | None = None
    liveness: LivenessResult | None = None


def _load_models(settings: Settings, stage: str, threads: int) -> None:
    """Worker initializer: set torch's thread count and load the stage's models once, before the first chunk."""
    from .faces.detect import get_detector

    if stage != "detect":
        import torch

        torch.set_num_threads(threads)
    get_detector(settings.detector)
    if stage == "encode":
        from .encoders import get_encoder

        get_encoder(settings.encoder)
    elif stage == "liveness":
        from .liveness.passive import load_model

        load_model()


def _map_chunks(task: Callable[[Settings, list[T]], list[R]], items: Sequence[T], settings: Settings, stage: str,
                workers: int, progress: bool, desc: str) -> Iterator[R]:
    """``task`` over ``items`` in chunks, in this process or in ``workers`` processes; yields in item order."""
    from tqdm import tqdm

    # The chunks depend on the number of items only: the encoder's numbers depend (in the last digit)
    # on which photos share a batch, so any number of workers gives exactly the same output.
    size = max(1, min(BATCH_SIZE, math.ceil(len(items) / 4)))
    chunks = [list(items[i:i + size]) for i in range(0, len(items), size)]
    with tqdm(total=len(items), desc=desc, unit="photo", disable=not progress, leave=False) as bar:
        if workers <= 1 or len(chunks) == 1:
            for chunk in chunks:
                yield from task(settings, chunk)
                bar.update(len(chunk))
            return
        # Each worker computes with as many threads as this process would: torch's sums depend (in the
        # last digit) on the thread count, and any number of workers must give exactly the same numbers.
        threads = _torch_threads()
        # spawn, not fork: a forked copy of a process that has run torch's thread pool can hang.
        with ProcessPoolExecutor(min(workers, len(chunks)), mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_load_models, initargs=(settings, stage, threads)) as pool:
            for chunk, results in zip(chunks, pool.map(task, repeat(settings), chunks)):
                yield from results
                bar.update(len(chunk))


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def _detect_task(settings: Settings, chunk: list[Path]) -> list[_Photo]:
    from .faces.detect import detect_faces

    out = []
    for source in chunk:
        try:
            img = load_image(source)
            faces = detect_faces(img.pixels, settings.detector, settings.min_face_size, landmarks68=True,
                                 min_score=settings.min_score)
        except VisageError as exc:
            out.append(_Photo(str(source), skipped=_reason(exc, source)))
            continue
        out.append(_Photo(img.name, img.sha256, (img.width, img.height), tuple(faces)))
    return out


def _encode_task(settings: Settings, chunk: list[Path], which: Which = "all", require_live: bool = False
                 ) -> list[_Photo]:
    out = []
    for photo in encode_many(chunk, which=which, detector=settings.detector, encoder=settings.encoder,
                             min_face_size=settings.min_face_size, min_score=settings.min_score):
        if photo.image is None or (photo.skipped and which == "one"):
            out.append(_Photo(photo.source, skipped=photo.skipped))
            continue
        # Otherwise the only skip encode_many reports is a photo without a face: a result, not a failure.
        refused = None
        if require_live:
            from .liveness import require_live as refuse_unless_live

            try:
                refuse_unless_live(photo.image, faces=[e.face for e in photo.encodings])
            except SpoofError as exc:
                refused = str(exc)
        img = photo.image
        out.append(_Photo(photo.source, img.sha256, (img.width, img.height), tuple(e.face for e in photo.encodings),
                          tuple(photo.encodings), refused=refused))
    return out


def _liveness_task(settings: Settings, chunk: list[Path], challenge: tuple[str, ...] | None = None) -> list[_Photo]:
    from . import liveness
    from .faces.detect import detect_faces
    from .media.video import is_video

    out = []
    for source in chunk:
        try:
            if is_video(source):
                result = liveness.check(source, challenge=challenge, detector=settings.detector,
                                        min_face_size=settings.min_face_size, min_score=settings.min_score)
                out.append(_Photo(str(source), liveness=result))
                continue
            img = load_image(source)
            faces = detect_faces(img.pixels, settings.detector, settings.min_face_size, landmarks68=False,
                                 min_score=settings.min_score)
            # Detected here, not inside check, so that the record can say which face was judged.
            result = liveness.check(img, faces=faces, challenge=challenge)
        except VisageError as exc:
            out.append(_Photo(str(source), skipped=_reason(exc, source)))
            continue
        out.append(_Photo(img.name, img.sha256, (img.width, img.height), tuple(faces[:1]), liveness=result))
    return out


def _reason(exc: VisageError, source: object) -> str:
    """The error's message without the name it starts with: the report names the input already."""
    message, label = str(exc), source_label(source)  # type: ignore[arg-type]
    return message[len(label) + 2:] if message.startswith(label + ": ") else message


def _skipped(photo: _Photo) -> Outcome | None:
    if photo.skipped is not None:
        return Outcome(photo.source, verdict="skipped", skipped=photo.skipped)
    if photo.refused is not None:
        return Outcome(photo.source, verdict="refused", skipped=photo.refused, size=photo.size)
    return None


# -- the stages -------------------------------------------------------------------------------------------

def detect_photos(sources: Sequence[Path], settings: Settings = Settings(), *, workers: int = 1,
                  progress: bool = False) -> Iterator[Outcome]:
    """Find the faces of every photo; yields one :class:`Outcome` per source with a :class:`DetectedFace` each."""
    for photo in _map_chunks(_detect_task, sources, settings, "detect", workers, progress, "detecting"):
        yield _skipped(photo) or Outcome(photo.source, tuple(DetectedFace(photo.source, i, f)
                                                             for i, f in enumerate(photo.faces, 1)), size=photo.size)


def encode_photos(sources: Sequence[Path], settings: Settings = Settings(), *, which: Which = "all",
                  workers: int = 1, progress: bool = False) -> Iterator[Outcome]:
    """Encode the faces of every photo; yields one :class:`Outcome` per source with an :class:`EncodedFace` each.

    ``which="one"`` skips a photo without exactly one face; otherwise a photo without a face is a
    result with no records.
    """
    task = partial(_encode_task, which=which)
    for photo in _map_chunks(task, sources, settings, "encode", workers, progress, "encoding"):
        yield _skipped(photo) or Outcome(photo.source, tuple(EncodedFace(photo.source, i, e, settings.encoder)
                                                             for i, e in enumerate(photo.encodings, 1)),
                                         size=photo.size)


def identify_photos(gallery: Gallery, sources: Sequence[Path], settings: Settings = Settings(), *, top: int = 5,
                    threshold: float | None = None, match: str | None = None, require_live: bool = False,
                    workers: int = 1, progress: bool = False) -> Iterator[Outcome]:
    """Say who each face of every photo is; yields one :class:`Outcome` per source with an :class:`IdentifiedFace` each.

    The same answers as :meth:`Gallery.identify` photo by photo (and written to its audit log), but
    the photos are encoded in batches with ``settings``' detection options; ``settings.encoder`` is
    ignored for the gallery's own. A photo's verdict is ``"negative"`` when none of its faces is
    named. With ``require_live`` a photo whose largest face is not judged live is ``"refused"``
    before any matching, and only that judged face may be named.
    """
    from .gallery import DEFAULT_MATCH

    gallery.check_encoder()
    gallery.calibration()  # a missing or foreign calibration is refused before any detection
    settings = replace(settings, encoder=gallery.encoder_key)
    task = partial(_encode_task, require_live=require_live)
    for photo in _map_chunks(task, sources, settings, "encode", workers, progress, "identifying"):
        skipped = _skipped(photo)
        if skipped is not None:
            yield skipped
            continue
        results = gallery.name_faces(photo.encodings, photo=photo.source, sha256=photo.sha256 or "", top=top,
                                     threshold=threshold, match=match or DEFAULT_MATCH,  # type: ignore[arg-type]
                                     judged_live=require_live)
        records = tuple(IdentifiedFace(photo.source, i, r) for i, r in enumerate(results, 1))
        yield Outcome(photo.source, records, "ok" if any(r.known for r in results) else "negative", size=photo.size)


def liveness_inputs(sources: Sequence[Path], settings: Settings = Settings(), *,
                    challenge: Sequence[str] | None = None, workers: int = 1, progress: bool = False
                    ) -> Iterator[Outcome]:
    """The liveness check on every photo or clip; yields one :class:`Outcome` per source with one :class:`LivenessRecord`.

    The verdict is ``"ok"`` for live, ``"negative"`` for an attack and ``"insufficient"`` without
    enough evidence (no face, too few frames).
    """
    task = partial(_liveness_task, challenge=tuple(challenge) if challenge else None)
    for photo in _map_chunks(task, sources, settings, "liveness", workers, progress, "liveness"):
        skipped = _skipped(photo)
        if skipped is not None or photo.liveness is None:
            yield skipped or Outcome(photo.source, verdict="skipped", skipped="no result")
            continue
        result = photo.liveness
        box = photo.faces[0].box if photo.faces else None
        verdict: Verdict = {True: "ok", False: "negative", None: "insufficient"}[result.live]  # type: ignore[assignment]
        yield Outcome(photo.source, (LivenessRecord(photo.source, 1 if box else None, box, result),), verdict,
                      size=photo.size)


def verify_pairs(pairs: Sequence[PairSpec], settings: Settings = Settings(), *, threshold: float | None = None,
                 calibration: CalibrationSource | None = None, which: Literal["largest", "best"] = "largest",
                 workers: int = 1, progress: bool = False) -> Iterator[Outcome]:
    """Verify every pair; yields one :class:`Outcome` per pair, in order, with one :class:`PairRecord`.

    Each distinct photo is encoded once (all its faces, so that the result counts them and warns,
    as :func:`visage.verify` does, which face was used). ``which`` is :func:`visage.verify`'s. The verdict is
    ``"ok"`` for same and ``"negative"`` for different; a pair with a photo that cannot be read or
    has no face is skipped, naming the photo.
    """
    from .api import _closest_pair, _which_face_note
    from .encoders import get_encoder
    from .evaluation.calibration import calibration_for
    from .evaluation.verification import decide

    cal = calibration_for(settings.encoder, get_encoder(settings.encoder).name, calibration)
    photos = list(dict.fromkeys(p for pair in pairs for p in (pair.a, pair.b)))
    encoded = dict(zip(photos, _map_chunks(_encode_task, photos, settings, "encode", workers, progress, "encoding")))
    for pair in pairs:
        a, b = encoded[pair.a], encoded[pair.b]
        label = f"{a.source}  {b.source}"
        problem = next(((p.source, p.skipped or "no face found") for p in (a, b) if p.skipped or not p.encodings),
                       None)
        if problem is not None:
            yield Outcome(label, verdict="skipped", skipped=f"{problem[0]}: {problem[1]}")
            continue
        i, j = _closest_pair(list(a.encodings), list(b.encodings)) if which == "best" else (0, 0)
        first, second = a.encodings[i], b.encodings[j]
        notes = [note for p, index in ((a, i), (b, j))
                 if (note := _which_face_note(p.source, list(p.faces), index, which))]
        result = replace(decide(first.encoding, second.encoding, cal, threshold), encoder=str(settings.encoder),
                         embedding=first.encoder, face_a=first.face.box, face_b=second.face.box,
                         faces_in_a=len(a.faces), faces_in_b=len(b.faces), warnings=tuple(notes))
        yield Outcome(label, (PairRecord(a.source, b.source, result, pair.same),), "ok" if result.same else "negative")
