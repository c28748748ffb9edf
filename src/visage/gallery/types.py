"""Records a gallery stores and returns: enrolled faces, people, matches and identifications."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from ..faces.types import Box


@dataclass(frozen=True, eq=False)
class FaceRecord:
    """One face to enrol: its encoding and where it came from.

    ``quality`` is the detector's confidence for the face (higher is surer); ``source`` is a label
    for the photo (usually its path); ``sha256`` identifies the photo's bytes, so a photo enrolled
    twice is noticed. ``thumbnail`` is a small JPEG of the face for people to recognise it by
    (:func:`visage.gallery.gallery.face_thumbnail`); None when there is none (enrolled before
    thumbnails were kept, or imported).
    """

    encoding: np.ndarray
    sha256: str
    source: str = ""
    box: Box | None = None
    landmarks5: np.ndarray | None = None
    quality: float = 0.0
    thumbnail: bytes | None = None


@dataclass(frozen=True, eq=False)
class StoredFace:
    """A face as stored in a gallery: the record plus its id, owner and time of enrolment.

    ``has_thumbnail`` says whether the store keeps a thumbnail for it; the JPEG itself is read on
    its own (:meth:`Gallery.thumbnail`), so that listing faces does not load every picture.
    """

    id: int
    person: str
    record: FaceRecord
    added: float
    has_thumbnail: bool = False

    def to_dict(self, with_encoding: bool = False) -> dict:
        r = self.record
        out = {"id": self.id, "person": self.person, "source": r.source, "sha256": r.sha256,
               "box": r.box.to_dict() if r.box else None, "quality": round(float(r.quality), 4),
               "added": self.added, "thumbnail": self.has_thumbnail}
        if with_encoding:
            out["encoding"] = [float(v) for v in r.encoding]
        return out


@dataclass(frozen=True)
class Person:
    """An enrolled person: a unique name and how many faces they have."""

    name: str
    faces: int
    created: float

    def to_dict(self) -> dict:
        return {"name": self.name, "faces": self.faces, "created": self.created}


@dataclass(frozen=True)
class Candidate:
    """One ranked candidate for a probe face: a person and the distance to them."""

    name: str
    distance: float
    probability: float

    def to_dict(self) -> dict:
        return {"name": self.name, "distance": round(self.distance, 6), "probability": round(self.probability, 6)}


@dataclass(frozen=True)
class Identification:
    """The answer for one probe face.

    ``name`` is the best candidate when its distance is within ``threshold``, else None (unknown).
    ``live`` is None when no liveness check ran, else its verdict; a face that is not live is
    never given a name.
    """

    box: Box | None
    name: str | None
    distance: float | None
    threshold: float
    candidates: list[Candidate] = field(default_factory=list)
    live: bool | None = None

    @property
    def known(self) -> bool:
        return self.name is not None

    def withheld(self, live: bool | None = False) -> Identification:
        """This answer with the name withheld: the face was not judged live (``live``)."""
        return replace(self, name=None, live=live)

    def to_dict(self) -> dict:
        return {"box": self.box.to_dict() if self.box else None, "name": self.name,
                "distance": None if self.distance is None else round(self.distance, 6),
                "threshold": self.threshold, "live": self.live,
                "candidates": [c.to_dict() for c in self.candidates]}


@dataclass
class EnrollReport:
    """What an enrolment did: faces added per person, and each photo skipped with the reason."""

    added: dict[str, int] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def faces_added(self) -> int:
        return sum(self.added.values())

    def merge(self, other: EnrollReport) -> None:
        for name, n in other.added.items():
            self.added[name] = self.added.get(name, 0) + n
        self.skipped.extend(other.skipped)

    def to_dict(self) -> dict:
        return {"added": self.added, "faces_added": self.faces_added,
                "skipped": [{"photo": p, "reason": r} for p, r in self.skipped]}
