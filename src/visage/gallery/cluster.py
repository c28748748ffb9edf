"""Group the faces of an unlabelled photo collection by person, report it, and enrol named groups.

Faces are clustered by average-linkage agglomeration with the encoder's calibrated threshold (its
shipped calibration, or one given from ``visage calibrate``) as the cut: two groups merge while
their faces are, on average, as close as a same-person pair.
:func:`write_report` writes ``clusters.json`` (the groups with their encodings, so enrolling
them needs no re-encoding), ``contact_sheet.png`` (one row of faces per group) and ``report.html``.
"""

from __future__ import annotations

import functools
import html
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..config import DEFAULT_DETECTOR, DEFAULT_ENCODER
from ..encoders import get_encoder
from ..errors import GalleryError
from ..faces.types import Box
from ..media.images import list_images, load_image
from .store import encoder_key_for
from .types import EnrollReport, FaceRecord

if TYPE_CHECKING:
    from ..evaluation.calibration import CalibrationSource

FORMAT = "visage-clusters"
THUMB = 96


@dataclass
class ClusterFace:
    """One face found in the collection."""

    photo: str
    record: FaceRecord


@dataclass
class Cluster:
    """A group of faces believed to be one person; ``name`` is filled in by a person, later."""

    id: int
    members: list[int]
    name: str | None = None


@dataclass
class ClusterResult:
    """Faces found, their clusters (largest first), photos skipped, and the encoder used."""

    faces: list[ClusterFace]
    clusters: list[Cluster]
    #: The embedding space (the encoder's ``.name``) and its length.
    encoder: str
    dim: int
    threshold: float
    skipped: list[tuple[str, str]] = field(default_factory=list)
    #: How to load the encoder again (:func:`visage.gallery.store.encoder_key_for`), so that a
    #: gallery the clusters are enrolled into records it.
    encoder_key: str = ""

    @property
    def face_count(self) -> int:
        return len(self.faces)


def collection_images(folder: Path) -> list[Path]:
    """Every image file under ``folder``, recursively, sorted (the report folder excluded)."""
    return [p for p in list_images(folder, recursive=True) if "visage-clusters" not in p.parts]


def cluster_encodings(encodings: np.ndarray, threshold: float) -> list[list[int]]:
    """Indices of ``encodings`` grouped by person, largest group first (ties: first face first)."""
    n = len(encodings)
    if n == 0:
        return []
    if n == 1:
        return [[0]]
    from sklearn.cluster import AgglomerativeClustering

    labels = AgglomerativeClustering(n_clusters=None, distance_threshold=threshold, linkage="average",
                                     metric="euclidean").fit_predict(np.asarray(encodings, np.float64))
    groups: dict[int, list[int]] = {}
    for i, label in enumerate(labels):
        groups.setdefault(int(label), []).append(i)
    return sorted(groups.values(), key=lambda g: (-len(g), g[0]))


def cluster_folder(folder: str | os.PathLike, *, encoder: str | os.PathLike = DEFAULT_ENCODER,
                   threshold: float | None = None, calibration: CalibrationSource | None = None,
                   detector: str = DEFAULT_DETECTOR, progress: bool = False, batch: int = 16) -> ClusterResult:
    """Find every face under ``folder`` and cluster them. Returns a :class:`ClusterResult`;
    unreadable photos and photos without faces are listed in ``skipped``.

    ``encoder`` is a registered name or a trained ``.pt`` file. The cut is ``threshold``, else the
    threshold of ``calibration`` (checked to be fitted for ``encoder``), else of the shipped one.
    """
    from ..evaluation.calibration import calibration_for
    from ..evaluation.verification import chosen_threshold
    from ..pipeline import encode_many

    folder = Path(folder)
    if not folder.is_dir():
        raise GalleryError(f"{folder}: not a folder")
    paths = collection_images(folder)
    if not paths:
        raise GalleryError(f"{folder}: no image files found")
    enc = get_encoder(encoder)
    t = chosen_threshold(threshold, calibration_for(encoder, enc.name, calibration).threshold)
    faces: list[ClusterFace] = []
    skipped: list[tuple[str, str]] = []
    for photo in encode_many(paths, detector=detector, encoder=str(encoder), batch_size=batch, progress=progress,
                             desc="finding faces"):
        if photo.skipped is not None or photo.image is None:
            skipped.append((photo.source, photo.skipped or "the file could not be read"))
            continue
        for e in photo.encodings:
            faces.append(ClusterFace(photo.source, FaceRecord(e.encoding, photo.image.sha256, photo.source,
                                                              e.face.box, e.face.landmarks5, float(e.face.score))))
    groups = cluster_encodings(np.stack([f.record.encoding for f in faces]) if faces else np.zeros((0, enc.dim)), t)
    clusters = [Cluster(i + 1, g) for i, g in enumerate(groups)]
    return ClusterResult(faces, clusters, enc.name, enc.dim, t, skipped, encoder_key_for(encoder))


def name_clusters(result: ClusterResult, gallery) -> int:
    """Name each cluster after the enrolled person most of its faces are identified as.

    Every face of a cluster is searched in ``gallery`` (a :class:`visage.gallery.Gallery`, at its
    open-set threshold); a cluster gets a name when more than half of its faces are named that
    person. The gallery must hold the clusters' kind of encodings. Returns how many were named.
    """
    from collections import Counter

    bound = gallery.store.encoder()
    if bound is None:
        raise GalleryError(f"{gallery.location}: nobody is enrolled, so no cluster can be named")
    if bound[0] != result.encoder:
        raise GalleryError(f"{gallery.location} holds {bound[0]} encodings and the clusters are {result.encoder}; "
                           f"cluster with --encoder {gallery.stored_encoder_key}")
    named = 0
    for cluster in result.clusters:
        encodings = np.stack([result.faces[m].record.encoding for m in cluster.members])
        votes = Counter(r.name for r in gallery.search(encodings, top=1) if r.name)
        if votes:
            name, count = votes.most_common(1)[0]
            if count * 2 > len(cluster.members):
                cluster.name, named = name, named + 1
    return named


@functools.lru_cache(maxsize=8)
def _pixels(photo: str) -> np.ndarray:
    # Faces of one group photo are cropped one after another: decode it once.
    return load_image(photo).pixels


def _thumbnail(photo: str, box: Box | None):
    from PIL import Image as PILImage

    pixels = _pixels(photo)
    if box is not None:
        pad = int(0.15 * max(box.width, box.height))
        top, bottom = max(box.top - pad, 0), min(box.bottom + pad, pixels.shape[0])
        left, right = max(box.left - pad, 0), min(box.right + pad, pixels.shape[1])
        pixels = pixels[top:bottom, left:right]
    return PILImage.fromarray(pixels).resize((THUMB, THUMB))


def write_report(result: ClusterResult, out: str | os.PathLike, *, min_size: int = 1,
                 per_row: int = 12) -> dict[str, Path]:
    """Write ``clusters.json``, ``contact_sheet.png``, ``report.html`` and face crops into ``out``.
    Returns their paths by kind."""
    from PIL import Image as PILImage
    from PIL import ImageDraw

    out = Path(out)
    (out / "faces").mkdir(parents=True, exist_ok=True)
    shown = [c for c in result.clusters if len(c.members) >= min_size]
    label_w = 110
    sheet = PILImage.new("RGB", (label_w + per_row * (THUMB + 4), max(1, len(shown)) * (THUMB + 8)), "white")
    draw = ImageDraw.Draw(sheet)
    rows_html = []
    for r, cluster in enumerate(shown):
        y = r * (THUMB + 8) + 4
        label = f"cluster {cluster.id}" + (f"\n{cluster.name}" if cluster.name else "")
        draw.text((6, y + THUMB // 2 - 12), f"{label}\n{len(cluster.members)} face(s)", fill="black")
        cells = []
        for j, m in enumerate(cluster.members):
            face = result.faces[m]
            thumb = _thumbnail(face.photo, face.record.box)
            crop_name = f"faces/c{cluster.id:03d}_{j:03d}.jpg"
            thumb.save(out / crop_name, quality=90)
            if j < per_row:
                sheet.paste(thumb, (label_w + j * (THUMB + 4), y))
            cells.append(f'<img src="{crop_name}" title="{html.escape(face.photo)}" width="{THUMB}">')
        name = f"<br>{html.escape(cluster.name)}" if cluster.name else ""
        rows_html.append(f"<tr><th>cluster {cluster.id}{name}<br>{len(cluster.members)} face(s)</th>"
                         f"<td>{''.join(cells)}</td></tr>")
    sheet.save(out / "contact_sheet.png")
    (out / "report.html").write_text(
        "<!doctype html><meta charset='utf-8'><title>visage clusters</title>"
        "<style>body{font-family:sans-serif}th{text-align:left;padding-right:1em;vertical-align:top}"
        "img{margin:2px}</style>"
        f"<h1>{len(result.clusters)} clusters, {result.face_count} faces</h1>"
        f"<p>Threshold {result.threshold:.4f} ({html.escape(result.encoder)}). Name a cluster in "
        "clusters.json, or run <code>visage enroll --clusters clusters.json --name ID=NAME</code>.</p>"
        f"<table>{''.join(rows_html)}</table>")
    manifest = {
        "format": FORMAT, "encoder": result.encoder, "encoder_key": result.encoder_key, "dim": result.dim,
        "threshold": result.threshold,
        "clusters": [{"id": c.id, "name": c.name, "faces": [
            {"photo": result.faces[m].photo, "sha256": result.faces[m].record.sha256,
             "box": record_box.to_dict() if (record_box := result.faces[m].record.box) else None,
             "landmarks5": np.asarray(result.faces[m].record.landmarks5).tolist()
             if result.faces[m].record.landmarks5 is not None else None,
             "quality": result.faces[m].record.quality,
             "encoding": [float(v) for v in result.faces[m].record.encoding]} for m in c.members]}
            for c in result.clusters],
        "skipped": [{"photo": p, "reason": r} for p, r in result.skipped]}
    (out / "clusters.json").write_text(json.dumps(manifest))
    return {"report": out / "report.html", "contact_sheet": out / "contact_sheet.png",
            "clusters": out / "clusters.json"}


def enroll_clusters(gallery, path: Path, names: dict[int, str] | None = None) -> EnrollReport:
    """Enrol every named cluster of a ``clusters.json`` (names from the file, overridden by ``names``,
    cluster id → name). Two clusters given one name become one person. Returns the report."""
    try:
        manifest = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise GalleryError(f"{path}: no such file") from None
    except (OSError, ValueError) as exc:
        raise GalleryError(f"{path}: not a clusters.json ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise GalleryError(f"{path}: not a clusters.json written by `visage cluster`")
    names = dict(names or {})
    known = {c["id"] for c in manifest["clusters"]}
    unknown = sorted(set(names) - known)
    if unknown:
        raise GalleryError(f"{path}: no cluster with id {unknown[0]}")
    report = EnrollReport()
    for c in manifest["clusters"]:
        name = names.get(c["id"]) or c.get("name")
        if not name:
            continue
        records = [FaceRecord(np.asarray(f["encoding"], np.float32), f["sha256"], f["photo"],
                              Box(**f["box"]) if f.get("box") else None,
                              None if f.get("landmarks5") is None else np.asarray(f["landmarks5"], np.float32),
                              float(f.get("quality", 0.0))) for f in c["faces"]]
        report.merge(gallery.add(name, records, encoder_name=manifest["encoder"], dim=int(manifest["dim"]),
                                 encoder_key=manifest.get("encoder_key") or None))
    if not report.added and not report.skipped:
        raise GalleryError(f"{path}: no cluster has a name; name them in the file or with --name ID=NAME")
    return report
