"""A portable gallery file: a zip holding ``gallery.json`` (people, faces, encoder) and ``encodings.npy``.

The encoder is recorded as its embedding space (``encoder``, ``dim``) and, when the gallery knows
it, how to load it again (``encoder_key``: a registry key or a model file's path).

Any program can read it: the JSON lists faces in the order of the rows of the float32 array.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import time
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .. import __version__
from ..errors import GalleryError
from ..faces.types import Box
from .types import EnrollReport, FaceRecord

if TYPE_CHECKING:
    from .gallery import Gallery

FORMAT = "visage-gallery"
FORMAT_VERSION = 1


def export_gallery(gallery: Gallery, path: Path) -> int:
    """Write ``gallery`` to ``path`` (atomically: a half-written file never has the final name).
    Returns the number of faces written."""
    bound = gallery.store.encoder()
    faces, vectors = [], []
    for f in gallery.store.iter_faces():
        r = f.record
        faces.append({"person": f.person, "sha256": r.sha256, "source": r.source,
                      "box": r.box.to_dict() if r.box else None,
                      "landmarks5": None if r.landmarks5 is None else np.asarray(r.landmarks5).tolist(),
                      "quality": r.quality, "added": f.added})
        vectors.append(r.encoding)
    manifest = {"format": FORMAT, "version": FORMAT_VERSION, "visage": __version__, "exported": time.time(),
                "encoder": bound[0] if bound else None, "dim": bound[1] if bound else None,
                "encoder_key": gallery.store.encoder_key(),
                "people": [p.to_dict() for p in gallery.people()], "faces": faces}
    dim = bound[1] if bound else 0
    array = np.stack(vectors).astype(np.float32) if vectors else np.zeros((0, dim), np.float32)
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".part")
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("gallery.json", json.dumps(manifest))
            z.writestr("encodings.npy", buffer.getvalue())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return len(faces)


def read_export(path: Path) -> tuple[dict, np.ndarray]:
    """The manifest and the (n, dim) encodings of an exported file; raises GalleryError naming it."""
    try:
        with zipfile.ZipFile(path) as z:
            manifest = json.loads(z.read("gallery.json"))
            array = np.load(io.BytesIO(z.read("encodings.npy")), allow_pickle=False)
    except FileNotFoundError:
        raise GalleryError(f"{path}: no such file") from None
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise GalleryError(f"{path}: not a visage gallery export ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise GalleryError(f"{path}: not a visage gallery export")
    if manifest.get("version", 0) > FORMAT_VERSION:
        raise GalleryError(f"{path}: made by a newer visage (format {manifest['version']})")
    faces = manifest.get("faces", [])
    if array.dtype != np.float32 or array.ndim != 2 or len(array) != len(faces) or (
            faces and array.shape[1] != manifest.get("dim")):
        raise GalleryError(f"{path}: damaged export (encodings do not match the face list)")
    return manifest, array


def import_gallery(gallery: Gallery, path: Path) -> EnrollReport:
    """Merge an export into ``gallery``: one transaction per person. Returns the report."""
    manifest, array = read_export(path)
    report = EnrollReport()
    if not manifest["faces"]:
        return report
    encoder, dim = manifest["encoder"], int(manifest["dim"])
    bound = gallery.store.encoder()
    if bound is not None and bound != (encoder, dim):
        raise GalleryError(f"{path}: holds {encoder} encodings ({dim}-d); {gallery.location} holds "
                           f"{bound[0]} ({bound[1]}-d); refusing to mix")
    by_person: dict[str, list[FaceRecord]] = {}
    for face, vector in zip(manifest["faces"], array):
        by_person.setdefault(face["person"], []).append(FaceRecord(
            encoding=vector, sha256=face["sha256"], source=face.get("source", ""),
            box=Box(**face["box"]) if face.get("box") else None,
            landmarks5=None if face.get("landmarks5") is None else np.asarray(face["landmarks5"], np.float32),
            quality=float(face.get("quality", 0.0))))
    for name, records in by_person.items():
        report.merge(gallery.add(name, records, encoder_name=encoder, dim=dim,
                                 encoder_key=manifest.get("encoder_key")))
    return report
