"""Dev-set encodings shared by the gallery benches, computed once and cached.

For every photo under ``<data>/faces/<source>__<identity>/`` the largest face is encoded twice:
by visage and by the face_recognition library (the peer). Both are cached in
``$VISAGE_HOME/bench/gallery_dev_<encoder>.npz``, keyed by the photos' paths and sizes.
"""

from __future__ import annotations

import hashlib
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

import visage
from _results import DEV_DATA
from visage.config import visage_home
from visage.encoders import get_encoder


@dataclass
class DevEncodings:
    """Per photo: identity label, path, visage encoding, face_recognition encoding (NaN: no face)."""

    labels: np.ndarray
    paths: np.ndarray
    visage: np.ndarray
    peer: np.ndarray
    visage_s_per_photo: float
    peer_s_per_photo: float


def load_dev_encodings(data: Path = DEV_DATA, encoder: str = "dlib") -> DevEncodings:
    paths = sorted(p for p in (data / "faces").glob("*/*") if p.is_file())
    if not paths:
        raise SystemExit(f"no dev-set photos under {data / 'faces'}")
    key = hashlib.sha256("\n".join(f"{p}:{p.stat().st_size}" for p in paths).encode()).hexdigest()[:16]
    cache = visage_home() / "bench" / f"gallery_dev_{encoder}_{key}.npz"
    if cache.exists():
        z = np.load(cache)
        return DevEncodings(z["labels"], z["paths"], z["visage"], z["peer"], float(z["visage_s"]), float(z["peer_s"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import face_recognition as fr
    dim = get_encoder(encoder).dim
    ours = np.full((len(paths), dim), np.nan, np.float32)
    peer = np.full((len(paths), 128), np.nan, np.float32)
    visage.encode(paths[0], encoder=encoder)  # load the models before timing
    t_ours = t_peer = 0.0
    for i, p in enumerate(tqdm(paths, desc="encoding dev set", unit="photo")):
        t = time.perf_counter()
        found = visage.encode(p, which="largest", encoder=encoder)
        t_ours += time.perf_counter() - t
        if found:
            ours[i] = found[0].encoding
        t = time.perf_counter()
        image = fr.load_image_file(p)
        boxes = fr.face_locations(image)
        if boxes:
            largest = max(boxes, key=lambda b: (b[2] - b[0]) * (b[1] - b[3]))
            peer[i] = fr.face_encodings(image, [largest])[0]
        t_peer += time.perf_counter() - t
    labels = np.array([p.parent.name for p in paths])
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, labels=labels, paths=np.array([str(p) for p in paths]), visage=ours, peer=peer,
             visage_s=t_ours / len(paths), peer_s=t_peer / len(paths))
    return DevEncodings(labels, np.array([str(p) for p in paths]), ours, peer, t_ours / len(paths),
                        t_peer / len(paths))
