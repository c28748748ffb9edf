"""Galleries of enrolled people: one-shot enrolment, identification, search at scale.

    from visage.gallery import Gallery
    with Gallery("people.db") as g:
        g.enroll("Ada", ["ada1.jpg", "ada2.jpg"])
        for face in g.identify("door-camera.jpg"):
            print(face.box, face.name, face.distance)

See docs/gallery.md.
"""

from .gallery import DEFAULT_MATCH, Gallery, LivenessCheck, default_gallery_path, open_store
from .index import ExactIndex, IvfIndex
from .types import Candidate, EnrollReport, FaceRecord, Identification, Person, StoredFace

__all__ = ["Gallery", "open_store", "default_gallery_path", "DEFAULT_MATCH", "LivenessCheck", "ExactIndex",
           "IvfIndex", "Candidate", "EnrollReport", "FaceRecord", "Identification", "Person", "StoredFace"]
