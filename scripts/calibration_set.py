"""The calibration set: bona-fide faces of ``../shared/data/pad/real`` with a person label each.

    .venv/bin/python scripts/calibration_set.py      # encode (once; cached) and print a summary

Kept: the sources that name their subject (CelebA-Spoof, OULU-NPU, CASIA-FASD, NUAA, ...), and the
one-person webcam sets (``own_*``), whose person is the source itself. Sources with many
unlabelled people (LCC-FASD and the rest) are left out. The dev set's photos and pairs are not in
it, so thresholds fitted here can be reported on the dev pairs.

Each photo's largest face is encoded by dlib's ResNet and by FaceNet (on the same detected face); both
unit-length parts, and dlib's raw encodings, are cached under ``$VISAGE_HOME/cache`` so that any
fusion weight can be tried without encoding again. :func:`dev_set` does the same for the dev photos.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from visage.config import visage_home
from visage.pipeline import encode_batch, encode_many

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
PAD = DATA / "pad"
CACHE_FORMAT = 3
#: Photos whose chips go through FaceNet together.
BATCH = 32


@dataclass(frozen=True)
class EncodedSet:
    """Per kept photo: unit-length dlib (N, 128) and FaceNet (N, 512) parts, dlib's raw encoding,
    the person, the source, the path and the face box's shorter side in pixels."""

    dlib: np.ndarray
    facenet: np.ndarray
    #: dlib's encodings as the encoder gives them (not unit length), for dlib's own calibration.
    dlib_raw: np.ndarray
    person: np.ndarray
    source: np.ndarray
    path: np.ndarray
    face_px: np.ndarray

    def fused(self, dlib_weight: float) -> np.ndarray:
        """The fused vectors for ``dlib_weight``, as :class:`visage.encoders.fused.FusedEncoder` makes them."""
        return np.concatenate([self.dlib * np.sqrt(dlib_weight), self.facenet * np.sqrt(1 - dlib_weight)], axis=1)

    def subset(self, rows: np.ndarray) -> EncodedSet:
        return EncodedSet(**{k: getattr(self, k)[rows] for k in EncodedSet.__dataclass_fields__})


def labelled_photos(pad: Path = PAD) -> list[tuple[Path, str, str]]:
    """(path, person, source) of every kept bona-fide photo, in manifest order."""
    out = []
    with open(pad / "MANIFEST.tsv", newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            if row["label"] != "real":
                continue
            person = row["subject"] or (row["source"] if row["source"].startswith("own_") else "")
            if person:
                out.append((pad / row["path"], person, row["source"]))
    return out


def dev_photos(data: Path = DATA) -> list[tuple[Path, str, str]]:
    """(path, person, source) of every dev-set photo (``faces/<source>__<person>/``)."""
    return [(p, p.parent.name, p.parent.name.split("__")[0])
            for p in sorted((data / "faces").glob("*/*")) if p.is_file()]


def encode_photos(photos: list[tuple[Path, str, str]], root: Path, progress: bool = True) -> EncodedSet:
    """Encode (or read from the cache) the largest face of each photo; photos without a face are left out."""
    digest = hashlib.sha256("\n".join(str(p) for p, _, _ in photos).encode()).hexdigest()[:12]
    cache = visage_home() / "cache" / f"calibration_set-v{CACHE_FORMAT}-{digest}.npz"
    if cache.is_file():
        data = np.load(cache, allow_pickle=False)
        return EncodedSet(**{k: data[k] for k in EncodedSet.__dataclass_fields__})
    dlib_rows, facenet_rows, keep, sizes = [], [], [], []
    encoded = list(encode_many([p for p, _, _ in photos], which="largest", encoder="dlib-torch", progress=progress,
                               desc="dlib"))
    found = [(i, photo) for i, photo in enumerate(encoded) if photo.ok and photo.image is not None]
    for start in range(0, len(found), BATCH):
        chunk = found[start:start + BATCH]
        facenet = encode_batch([photo.image for _, photo in chunk], faces=[[photo.encodings[0].face] for _, photo in chunk],
                               encoder="facenet")
        for (i, photo), other in zip(chunk, facenet):
            face = photo.encodings[0].face
            dlib_rows.append(photo.encodings[0].encoding)
            facenet_rows.append(other[0].encoding)
            keep.append(i)
            sizes.append(min(face.box.width, face.box.bottom - face.box.top))
    dlib_raw = np.stack(dlib_rows).astype(np.float32)
    unit = [v / np.linalg.norm(v, axis=1, keepdims=True) for v in (dlib_raw, np.stack(facenet_rows))]
    out = EncodedSet(dlib=unit[0].astype(np.float32), facenet=unit[1].astype(np.float32), dlib_raw=dlib_raw,
                     person=np.array([photos[i][1] for i in keep]), source=np.array([photos[i][2] for i in keep]),
                     path=np.array([str(photos[i][0].relative_to(root)) for i in keep]),
                     face_px=np.array(sizes, np.int32))
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **{k: getattr(out, k) for k in EncodedSet.__dataclass_fields__})
    return out


def calibration_set(pad: Path = PAD, progress: bool = True) -> EncodedSet:
    """The encoded calibration set (see the module's docstring)."""
    return encode_photos(labelled_photos(pad), pad, progress)


def dev_set(data: Path = DATA, progress: bool = True) -> EncodedSet:
    """The encoded dev-set photos, for reporting (never for fitting)."""
    return encode_photos(dev_photos(data), data, progress)


if __name__ == "__main__":
    for name, encoded in (("calibration set", calibration_set()), ("dev set", dev_set())):
        people, counts = np.unique(encoded.person, return_counts=True)
        print(f"{name}: {len(encoded.person)} faces of {len(people)} people from {len(np.unique(encoded.source))} "
              f"sources; {int((counts * (counts - 1) // 2).sum())} same-person pairs")
