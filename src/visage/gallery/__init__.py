"""Galleries of enrolled people: one-shot enrolment, identification, search at scale.

    from visage.gallery import Gallery
    with Gallery("people.db") as g:
        g.enroll("Ada", ["ada1.jpg", "ada2.jpg"])
        for face in g.identify("door-camera.jpg"):
            print(face.box, face.name, face.distance)

See docs/gallery.md.
"""

from .gallery import DEFAULT_MATCH, Gallery, default_gallery_path, open_store
from .index import ExactIndex, IvfIndex
from .types import Candidate, EnrollReport, FaceRecord, Identification, Person, StoredFace

__all__ = [
           "DEFAULT_MATCH",
           "Candidate",
           "EnrollReport",
           "ExactIndex",
           "FaceRecord",
           "Gallery",
           "Identification",
           "IvfIndex",
           "Person",
           "StoredFace",
           "default_gallery_path",
           "open_store",
]
