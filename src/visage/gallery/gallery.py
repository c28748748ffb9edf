"""The :class:`Gallery`: enrol people from photos, identify faces, manage who is enrolled.

A gallery is a backend (:mod:`.store` SQLite by default, :mod:`.milvus` for a Milvus server) plus a
search index. Which backend is configuration only: the location string picks it
(see :func:`open_store`). A gallery remembers the encoder that filled it, so it is used without
naming that encoder again (:attr:`Gallery.encoder_key`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Self

import numpy as np

from ..config import DEFAULT_DETECTOR, DEFAULT_ENCODER, default_gallery_path
from ..encoders import get_encoder
from ..errors import FaceCountError, GalleryError, ImageError, ModelError, VisageError
from ..faces.types import Box, Face, FaceEncoding
from ..media.images import Image, ImageSource, list_images, load_image, source_label
from ..pipeline import detect, encode, encode_many
from .index import ExactIndex, Index, IvfIndex, Match
from .store import LEGACY_ENCODER_KEYS, Cursor, SQLiteStore, Store, encoder_key_for
from .store import _lookup_name as _stored_name
from .types import Candidate, EnrollReport, FaceRecord, Identification, Person, StoredFace

if TYPE_CHECKING:
    from ..encoders import Encoder
    from ..evaluation.calibration import CalibrationSource
    from ..evaluation.verification import Calibration

#: From this many faces on, ``index="auto"`` switches from exact search to the IVF index.
AUTO_IVF_FACES = 200_000
#: From this many faces on, ``index="ivf"`` stops searching exactly and trains its cells.
IVF_TRAIN_FACES = 20_000
#: Matching rule chosen by measurement on the dev set (bench/bench_gallery_accuracy.py, docs/gallery.md).
DEFAULT_MATCH: Match = "nearest"
#: A face nearer than this fraction of the 1:1 threshold to another person's stored face is that
#: same face again (a re-saved or resized copy of one photo measured up to 0.12 of 0.78 with
#: dlib+facenet; different people on the dev set were never nearer than 0.68).
SAME_FACE_FRACTION = 0.2
#: Photos encoded together in one call during enrolment.
ENCODE_BATCH = 16
#: Side in pixels of the square JPEG kept with each enrolled face, for people to recognise it by.
THUMBNAIL_SIDE = 96


def face_thumbnail(pixels: np.ndarray, box: Box, side: int = THUMBNAIL_SIDE) -> bytes:
    """A ``side``×``side`` JPEG of the face in ``box`` of the RGB ``pixels``, with some hair and chin
    around it; the square is moved (and shrunk if need be) to stay inside the image."""
    import io

    from PIL import Image as PILImage

    height, width = pixels.shape[:2]
    half = min(0.65 * max(box.right - box.left, box.bottom - box.top), width / 2, height / 2)
    cx = min(max((box.left + box.right) / 2, half), width - half)
    cy = min(max((box.top + box.bottom) / 2, half), height - half)
    crop = PILImage.fromarray(pixels).crop((round(cx - half), round(cy - half), round(cx + half), round(cy + half)))
    out = io.BytesIO()
    crop.resize((side, side), PILImage.Resampling.LANCZOS).save(out, "JPEG", quality=85)
    return out.getvalue()

def _refuse_unless_live(img: Image, faces: list[Face]) -> None:
    """Raise SpoofError unless the largest of ``faces`` passes the liveness check (imported only when asked)."""
    from ..liveness import require_live

    require_live(img, faces=faces)


def open_store(location: str | os.PathLike | None = None, *, create: bool = True) -> Store:
    """The backend for ``location``.

    - a file path (default :func:`default_gallery_path`): SQLite;
    - ``milvus-lite:PATH``: Milvus Lite, a local Milvus in one file;
    - ``milvus://HOST:PORT`` or ``milvus+https://HOST:PORT``: a Milvus server or cluster
      (token from ``$VISAGE_MILVUS_TOKEN``, database from ``?db=NAME``).

    With ``create=False`` a missing SQLite file is an error instead of a new, empty gallery.
    """
    text = str(location) if location is not None else str(default_gallery_path())
    if text.startswith(("milvus-lite:", "milvus://", "milvus+https://", "milvus+http://")):
        from .milvus import MilvusStore

        return MilvusStore(text)
    return SQLiteStore(text, create=create)


class _LocalSearch:
    """A local index that follows a store's changes (added and removed faces, renames).

    The index starts from the store's snapshot when there is a usable one (:mod:`.snapshot`), and
    is saved as one after a refresh that took in many faces at once.
    """

    def __init__(self, store: SQLiteStore, kind: str, dim: int, make_index: Callable[[], Index]):
        self.store, self.kind, self.dim, self.make_index = store, kind, dim, make_index
        self.index: Index | None = None
        self.cursor = Cursor()
        self.names: dict[int, str] = {}
        self.from_snapshot = False

    def refresh(self) -> Index:
        """Take in the store's changes since the last refresh; returns the index, now current."""
        from . import snapshot

        if self.index is None:
            loaded = snapshot.load(self.store, self.kind, self.dim)
            if loaded is not None:
                self.index, self.cursor = loaded
                self.from_snapshot = True
            else:
                self.index = self.make_index()
        index = self.index
        changes = self.store.changes(self.cursor)
        if changes.cursor.generation == self.cursor.generation:
            return index
        if len(changes.removed):
            index.remove(changes.removed)
        if len(changes.face_ids):
            index.add(changes.face_ids, changes.person_ids, changes.vectors)
        self.names = self.store.names()
        self.cursor = changes.cursor
        if len(changes.face_ids) >= snapshot.SNAPSHOT_MIN_FACES:
            snapshot.save(self.store, index, self.kind, self.cursor)
        return index

    def search(self, queries: np.ndarray, k: int, match: Match) -> list[list[tuple[str, float]]]:
        index = self.refresh()
        return [[(self.names[pid], d) for pid, d in hits] for hits in index.search(queries, k, match)]


def _described(label: str, embedding: str, dim: int) -> str:
    """``dlib-torch (dlib-resnet-v1, 128-d)``; the embedding space once when it is the label."""
    return f"{label} ({dim}-d)" if label == embedding else f"{label} ({embedding}, {dim}-d)"


class Gallery:
    """Enrolled people and their face encodings, and identification against them.

    ``location`` picks the backend (:func:`open_store`). ``encoder`` is a key of
    :data:`visage.encoders.ENCODERS` or a model file from ``visage train``; None (the default) uses
    the encoder that filled the gallery, and :data:`~visage.config.DEFAULT_ENCODER` for an empty one.
    A gallery refuses encodings from another encoder than the one that filled it (``dlib`` and
    ``dlib-torch`` are one). ``calibration`` (a Calibration, a PairCalibration or a file written by
    ``visage calibrate``) gives the thresholds and P(same), its open-set threshold for
    :meth:`identify`; by default the encoder's shipped calibration. ``index`` is ``"exact"``,
    ``"ivf"`` (approximate, exact below 20,000 faces) or ``"auto"`` (exact below
    :data:`AUTO_IVF_FACES` faces, IVF above). ``create=False`` refuses a missing gallery file
    rather than starting one.
    """

    def __init__(self, location: str | os.PathLike | Store | None = None, *, encoder: str | os.PathLike | None = None,
                 calibration: CalibrationSource | None = None, index: str = "auto",
                 detector: str = DEFAULT_DETECTOR, create: bool = True):
        #: The encoder asked for, as its user named it; None: the gallery's own.
        self.requested_encoder = None if encoder is None else str(encoder)
        self.calibration_source = calibration
        self.detector = detector
        # A store object is used as given (e.g. the service's encrypted store); a location is opened.
        self.store: Store = (open_store(location, create=create)
                             if location is None or isinstance(location, (str, os.PathLike)) else location)
        self.location = self.store.location
        self._index_kind = index
        self._search = None
        self._encoder: Encoder | None = None
        self._bound: tuple[str, int] | None = None
        self._recorded_key: str | None = None
        self._calibration: Calibration | None = None

    # -- context manager -------------------------------------------------------------------------
    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.store.close()

    # -- encoder ---------------------------------------------------------------------------------
    @property
    def stored_encoder_key(self) -> str | None:
        """The encoder that filled the gallery, as ``--encoder`` names it: its recorded key, or for a
        gallery made before keys were recorded the registry key of its embedding space (the space's
        own name when no registered encoder makes it). None while the gallery is empty."""
        bound = self._bound_encoder()
        if bound is None:
            return None
        return self._recorded_encoder_key() or LEGACY_ENCODER_KEYS.get(bound[0], bound[0])

    @property
    def encoder_key(self) -> str:
        """The encoder this gallery encodes with, as its user names it (``dlib+facenet``, a ``.pt`` path):
        the one asked for, else the one that filled the gallery, else DEFAULT_ENCODER while it is empty.

        Raises :class:`GalleryError` for a gallery filled by a trained model from before galleries
        recorded their model file, when no encoder is asked for.
        """
        if self.requested_encoder is not None:
            return self.requested_encoder
        bound = self._bound_encoder()
        if bound is None:
            return DEFAULT_ENCODER
        key = self._recorded_encoder_key() or LEGACY_ENCODER_KEYS.get(bound[0])
        if key is None:
            raise GalleryError(f"{self.location}: holds {bound[0]} encodings ({bound[1]}-d) and, made by an older "
                               "visage, does not record the model file that made them; pass --encoder with "
                               "that model's .pt file")
        return key

    @property
    def encoder(self) -> Encoder:
        """The encoder object (loaded on first use)."""
        if self._encoder is None:
            key = self.encoder_key
            try:
                self._encoder = get_encoder(key)
            except ModelError as exc:
                if self.requested_encoder is not None:
                    raise
                raise ModelError(f"{exc}; it is the model that filled {self.location}: put it back, or pass "
                                 "--encoder with a copy of it") from None
        return self._encoder

    def _bound_encoder(self) -> tuple[str, int] | None:
        """(encoder name, dim) the store holds; remembered once set, since it never changes after."""
        if self._bound is None:
            self._bound = self.store.encoder()
        return self._bound

    def _recorded_encoder_key(self) -> str | None:
        """The store's record of how to load its encoder; remembered once set, like the encoder."""
        if self._recorded_key is None:
            self._recorded_key = self.store.encoder_key()
        return self._recorded_key

    def calibration(self) -> Calibration:
        """What this gallery decides with: the calibration it was given, checked to be fitted for its
        encoder (:func:`visage.evaluation.calibration.calibration_for`), else the encoder's shipped one."""
        from ..evaluation.calibration import calibration_for

        if self._calibration is None:
            bound = self._bound_encoder()
            label = self.requested_encoder or self.stored_encoder_key or DEFAULT_ENCODER
            self._calibration = calibration_for(label, bound[0] if bound else self.encoder.name,
                                                self.calibration_source)
        return self._calibration

    def check_encoder(self) -> None:
        """Raise :class:`GalleryError` unless this gallery's encoder makes the kind of encodings it holds.

        Loads the encoder first, so that a bad model file is refused before any photo is read.
        Returns nothing: an empty gallery takes any encoder.
        """
        encoder = self.encoder
        bound = self._bound_encoder()
        if bound is None or bound == (encoder.name, encoder.dim):
            return
        stored = self.stored_encoder_key or bound[0]
        now = _described(self.encoder_key, self.encoder.name, self.encoder.dim)
        if self.requested_encoder is None or encoder_key_for(self.requested_encoder) == self._recorded_encoder_key():
            raise GalleryError(f"{self.location}: holds {bound[0]} encodings ({bound[1]}-d), but its encoder "
                               f"{now} has changed since it filled the gallery; restore the model (or the visage version) "
                               "that made it, or enrol everyone again in a new gallery")
        raise GalleryError(f"{self.location}: holds the encodings of {_described(stored, *bound)}, not of {now}; "
                           "leave out --encoder (the gallery uses its own), or use another --gallery")

    # -- enrolment -------------------------------------------------------------------------------
    def add(self, name: str, records: Sequence[FaceRecord], *, encoder_name: str | None = None,
            dim: int | None = None, encoder_key: str | None = None) -> EnrollReport:
        """Store precomputed faces for ``name`` in one transaction.

        Returns an :class:`EnrollReport`; faces already stored (same photo and box) are skipped.
        ``encoder_name``/``dim`` (the embedding space) default to this gallery's encoder, and
        ``encoder_key`` (how to load it, recorded by a new gallery) goes with them.
        """
        if encoder_name is None:
            encoder_name, encoder_key = self.encoder.name, encoder_key_for(self.encoder_key)
        dim = dim or (len(records[0].encoding) if records else self.encoder.dim)
        report = EnrollReport()
        records, taken = self._split_faces_of_others(name, list(records), dim)
        report.skipped.extend(taken)
        result = self.store.add(name, records, encoder_name, dim, encoder_key)
        if result.face_ids:
            report.added[name.strip()] = len(result.face_ids)
        for rec, owner in result.duplicates:
            report.skipped.append((rec.source, f"already enrolled (as {owner})"))
        return report

    def _split_faces_of_others(self, name: str, records: list[FaceRecord], dim: int
                               ) -> tuple[list[FaceRecord], list[tuple[str, str]]]:
        """The records to store, and (source, reason) for those that are another person's face.

        One photo re-saved in another format or size encodes within a few hundredths of itself, so
        a face that close to someone else's stored face is that face again, not a new person. The
        limit is a fraction (:data:`SAME_FACE_FRACTION`) of the 1:1 threshold; without a
        calibration (a trained model not yet calibrated) the check is skipped.
        """
        bound = self._bound_encoder()
        if not records or bound is None or bound[1] != dim:
            return records, []
        try:
            limit = SAME_FACE_FRACTION * self.calibration().threshold
        except VisageError:
            return records, []
        nearest = self._searcher().search(np.stack([r.encoding for r in records]).astype(np.float32), 1, "nearest")
        keep, taken = [], []
        for record, hits in zip(records, nearest):
            owner, distance = hits[0] if hits else (None, np.inf)
            if owner is not None and owner != _stored_name(name) and distance <= limit:
                taken.append((record.source, f"this face is already enrolled as {owner} (distance {distance:.3f})"))
            else:
                keep.append(record)
        return keep, taken

    def enroll(self, name: str, photos: Iterable[ImageSource]) -> EnrollReport:
        """Enrol ``name`` from photos with exactly one face each; one transaction for the person.

        Unreadable photos, photos without a face or with several, and photos already enrolled are
        skipped and listed in the returned :class:`EnrollReport`; none of them is fatal.
        """
        return self.enroll_many([(name, list(photos))])

    def enroll_folder(self, folder: str | os.PathLike, *, progress: bool = False,
                      on_person: Callable[[str, EnrollReport], None] | None = None) -> EnrollReport:
        """Enrol one person per sub-folder of ``folder`` (the sub-folder's name is the person's).

        ``on_person`` is called after each person is committed. Returns the combined report.
        """
        root = Path(folder)
        if not root.is_dir():
            raise GalleryError(f"{root}: not a folder")
        people = [(d.name, list_images(d)) for d in sorted(root.iterdir()) if d.is_dir()]
        if not people:
            raise GalleryError(f"{root}: has no sub-folders (one per person expected)")
        return self.enroll_many(people, progress=progress, on_person=on_person)

    def enroll_many(self, people: Iterable[tuple[str, Sequence[ImageSource]]], *, progress: bool = False,
                    on_person: Callable[[str, EnrollReport], None] | None = None) -> EnrollReport:
        """Enrol several people; each is committed on its own as soon as their photos are encoded."""
        people = list(people)
        self.check_encoder()
        total = EnrollReport()
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=sum(len(p) for _, p in people), unit="photo", desc="enrolling")
        try:
            for name, photos in people:
                records, report = self._encode_photos(list(photos), bar)
                if records:
                    report.merge(self.add(name, records))
                elif not report.skipped:
                    report.skipped.append((name, "no photos"))
                total.merge(report)
                if on_person is not None:
                    on_person(name, report)
        finally:
            if bar is not None:
                bar.close()
        return total

    def _encode_photos(self, photos: list[ImageSource], bar) -> tuple[list[FaceRecord], EnrollReport]:
        report = EnrollReport()
        images: list[Image] = []
        for photo in photos:
            try:
                images.append(load_image(photo))
            except ImageError as exc:
                report.skipped.append((source_label(photo), str(exc)))
                if bar is not None:
                    bar.update(1)
        # A photo already in the gallery is not worth encoding again.
        owners = self.store.owners(sorted({img.sha256 for img in images}))
        fresh = []
        seen: set[str] = set()
        for img in images:
            if img.sha256 in owners or img.sha256 in seen:
                why = f"already enrolled (as {owners[img.sha256]})" if img.sha256 in owners else "same photo twice"
                report.skipped.append((img.name, why))
                if bar is not None:
                    bar.update(1)
            else:
                seen.add(img.sha256)
                fresh.append(img)
        records: list[FaceRecord] = []
        for encoded in encode_many(fresh, which="one", detector=self.detector, encoder=self.encoder_key,
                                   batch_size=ENCODE_BATCH):
            if encoded.skipped is not None or encoded.image is None:
                report.skipped.append((encoded.source, encoded.skipped or "the file could not be read"))
            else:
                e = encoded.encodings[0]
                records.append(FaceRecord(e.encoding, encoded.image.sha256, encoded.source, e.face.box,
                                          e.face.landmarks5, float(e.face.score),
                                          face_thumbnail(encoded.image.pixels, e.face.box)))
            if bar is not None:
                bar.update(1)
        return records, report

    # -- identification --------------------------------------------------------------------------
    def _searcher(self):
        if self._search is None:
            backend_search = getattr(self.store, "searcher", None)
            if backend_search is not None:
                self._search = backend_search()
            else:
                bound = self._bound_encoder()
                dim = bound[1] if bound else self.encoder.dim
                # The IVF index keeps the float32 encodings in a file beside the gallery, never in a temp
                # folder (often RAM); a gallery encrypted at rest keeps them in memory only, never in plaintext.
                from .snapshot import snapshot_dir

                plain = snapshot_dir(self.store) is not None
                spill = {"spill_to_disk": plain, "spill_dir": self.store.path.parent if plain else None}
                kinds = {"exact": lambda: ExactIndex(dim),
                         "ivf": lambda: IvfIndex(dim, train_size=IVF_TRAIN_FACES, **spill),
                         "auto": lambda: IvfIndex(dim, train_size=AUTO_IVF_FACES, **spill)}
                if self._index_kind not in kinds:
                    raise GalleryError(f"index must be 'exact', 'ivf' or 'auto', not {self._index_kind!r}")
                self._search = _LocalSearch(self.store, self._index_kind, dim, kinds[self._index_kind])
        return self._search

    def threshold(self) -> float:
        """The identification threshold for the people enrolled now.

        It tightens as the gallery grows (:meth:`Calibration.open_set_threshold_for`), so that about
        1% of strangers are accepted whatever the number of people; a calibration with a fixed
        open-set threshold gives that one.
        """
        return self.calibration().open_set_threshold_for(self._people_enrolled())

    def _people_enrolled(self) -> int:
        names = getattr(self._searcher(), "names", None)  # a local index holds them after its refresh
        return len(names) if isinstance(names, dict) and names else len(self.store.names())

    def search(self, encodings: np.ndarray, *, top: int = 5, threshold: float | None = None,
               match: Match = DEFAULT_MATCH) -> list[Identification]:
        """Identify precomputed encodings, (n, dim). Returns one :class:`Identification` per row
        (``box`` None), with up to ``top`` candidates nearest first."""
        encodings = np.asarray(encodings, np.float32)
        if encodings.ndim == 1:
            encodings = encodings[None, :]
        bound = self._bound_encoder()
        if bound is not None and encodings.shape[1] != bound[1]:
            raise GalleryError(f"probe encodings have {encodings.shape[1]} values, the gallery holds {bound[1]}")
        calibration = self.calibration()
        out = []
        hits_per_row = self._searcher().search(encodings, max(top, 1), match) if bound else [[] for _ in encodings]
        from ..evaluation.verification import chosen_threshold

        t = chosen_threshold(threshold, self.threshold())
        for hits in hits_per_row:
            candidates = [Candidate(n, d, float(calibration.probability(d))) for n, d in hits[:top]]
            if not hits:
                out.append(Identification(None, None, None, t, candidates))
                continue
            name, distance = hits[0]
            out.append(Identification(None, name if distance <= t else None, distance, t, candidates))
        return out

    def identify(self, image: ImageSource, *, top: int = 5, threshold: float | None = None,
                 match: Match = DEFAULT_MATCH, require_live: bool = False, audit: bool = True) -> list[Identification]:
        """Find every face in ``image`` and say who each is.

        Returns one :class:`Identification` per face, largest first: ``name`` is the nearest
        enrolled person when within ``threshold`` (by default the open-set threshold of
        :meth:`calibration`), else None.
        The call is written to the audit log unless ``audit`` is False. With ``require_live``, the
        largest face must first pass the liveness check (:func:`visage.liveness.require_live`): an
        attack or missing evidence raises :class:`~visage.errors.SpoofError` before any matching,
        and only that judged face (``live`` True) may be named; the others (``live`` None) are not.
        The image is detected once.
        """
        self.check_encoder()
        self.calibration()  # a missing or foreign calibration is refused before any detection
        img = load_image(image)
        faces = detect(img, detector=self.detector, landmarks68=False)
        if require_live:
            _refuse_unless_live(img, faces)
        found = encode(img, faces=faces, encoder=self.encoder_key)
        return self.name_faces(found, photo=img.name, sha256=img.sha256, top=top, threshold=threshold, match=match,
                               judged_live=require_live, audit=audit)

    def name_faces(self, found: Sequence[FaceEncoding], *, photo: str, sha256: str, top: int = 5,
                   threshold: float | None = None, match: Match = DEFAULT_MATCH, judged_live: bool = False,
                   audit: bool = True) -> list[Identification]:
        """Say who each already-encoded face of one photo is: the matching half of :meth:`identify`.

        ``found`` are the photo's faces and encodings, largest first (from :func:`visage.encode`).
        Returns one :class:`Identification` per face. ``judged_live`` says the largest face passed a
        liveness check: then only it may be named (``live`` True) and the others are withheld. The
        answer is written to the audit log under ``photo`` and ``sha256`` unless ``audit`` is False.
        """
        results: list[Identification] = []
        if found:
            matches = self.search(np.stack([f.encoding for f in found]), top=top, threshold=threshold, match=match)
            results = [replace(m, box=enc.face.box) for enc, m in zip(found, matches)]
            if judged_live:
                results = [replace(results[0], live=True)] + [r.withheld(None) for r in results[1:]]
        if audit:
            self.store.log("identify", sha256, photo, {"faces": [
                {"box": r.box.to_dict() if r.box else None, "name": r.name,
                 "distance": None if r.distance is None else round(r.distance, 6), "live": r.live}
                for r in results]})
        return results

    def verify(self, name: str, image: ImageSource, *, threshold: float | None = None,
               require_live: bool = False, audit: bool = True) -> Identification:
        """Is the largest face in ``image`` the enrolled person ``name``? (1:1, e.g. a claimed identity)

        Returns an :class:`Identification` whose ``name`` is ``name`` when :meth:`identify` would
        name that face ``name``: the claimed person is the nearest one and within the threshold
        (:meth:`threshold` by default), else None. So a claim and a search never disagree on one
        photo. ``distance`` is to the claimed person's nearest face, and ``candidates`` holds the
        claimed person and, when someone else is nearer, that person first. ``require_live``
        refuses an attack first, as in :meth:`identify`.
        """
        self.check_encoder()
        calibration = self.calibration()
        faces = self.store.faces(name)
        img = load_image(image)
        found_faces = detect(img, detector=self.detector, landmarks68=False)
        if require_live:
            _refuse_unless_live(img, found_faces)
        found = encode(img, faces=found_faces, which="largest", encoder=self.encoder_key)
        if not found:
            raise FaceCountError(f"{img.name}: no face found")
        stored = np.stack([f.record.encoding for f in faces]).astype(np.float64)
        d = float(np.min(np.linalg.norm(stored - found[0].encoding.astype(np.float64), axis=1)))
        nearest = self.search(found[0].encoding, top=1, threshold=threshold)[0]
        claimed = Candidate(name, d, float(calibration.probability(d)))
        ahead = [c for c in nearest.candidates if c.name != name and c.distance < d]
        result = Identification(found[0].face.box, name if nearest.name == name else None, d, nearest.threshold,
                                [*ahead, claimed])
        if audit:
            self.store.log("verify", img.sha256, img.name, {"claim": name, "accepted": result.known,
                                                            "distance": round(d, 6)})
        return result

    # -- people ----------------------------------------------------------------------------------
    def people(self) -> list[Person]:
        """Everyone enrolled, by name."""
        return self.store.people()

    def faces(self, name: str) -> list[StoredFace]:
        """The stored faces of ``name`` (raises :class:`GalleryError` for an unknown name)."""
        return self.store.faces(name)

    def face_count(self) -> int:
        return sum(p.faces for p in self.store.people())

    def rename(self, old: str, new: str) -> None:
        self.store.rename(old, new)

    def remove(self, name: str) -> int:
        """Forget ``name`` and their faces; returns how many faces were removed."""
        return self.store.remove(name)

    def remove_face(self, face_id: int) -> tuple[str, int]:
        """Forget one stored face (ids from :meth:`faces`); returns its owner's name and how many faces
        they have left. Removing a person's last face removes the person (:class:`FaceNotFound` for
        an unknown id)."""
        return self.store.remove_face(face_id)

    def thumbnail(self, face_id: int) -> bytes | None:
        """The small JPEG kept with a stored face, or None for a face enrolled before thumbnails
        were kept (:class:`FaceNotFound` for an unknown id)."""
        return self.store.thumbnail(face_id)

    def audit(self, limit: int = 100) -> list[dict]:
        """The latest identify and verify calls, newest first."""
        return self.store.audit(limit)

    # -- portability -----------------------------------------------------------------------------
    def export(self, path: str | os.PathLike) -> int:
        """Write every person and face (with encodings and the encoder's name) to a portable file.
        Returns the number of faces written."""
        from .portable import export_gallery

        return export_gallery(self, Path(path))

    def import_file(self, path: str | os.PathLike) -> EnrollReport:
        """Merge a file made by :meth:`export` into this gallery (people with the same name are merged;
        faces already present are skipped). Returns the report."""
        from .portable import import_gallery

        return import_gallery(self, Path(path))
