"""The real attack stills of ../shared/data/pad as training data: manifest, source groups, crops.

Every image is read, its face found and cropped exactly as ``visage liveness`` does at run time
(:func:`visage.liveness.passive.face_region`, :func:`visage.liveness.crops.context_crop`), and the
crops are cached in chunks under ``~/.cache/visage`` so that an interrupted run resumes.
"""

from __future__ import annotations

import csv
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from visage.config import visage_home  # noqa: E402  (after the path insert)

DATA = Path(os.environ.get("VISAGE_DEV_DATA", ROOT.parent / "shared" / "data"))
PAD = DATA / "pad"
SCALES = (2.7, 4.0)
CACHE = visage_home() / "liveness_pad_crops_v3"
CHUNK = 500
#: Whole sources never used for training or choosing anything: the tests measure the model on them.
TEST_SOURCES = ("nuaa_imironica", "fas_jonathansuryas-kaggle", "pyimagesearch_orig_stanholaysan")


def group_of(source: str) -> str:
    """The cross-validation group of a source: the one-person webcam sets form one group, and the
    small sources another; every large source is its own group."""
    if source.startswith("own_"):
        return "webcam_sets"
    if source in LARGE_SOURCES:
        return source
    return "small_sources"


LARGE_SOURCES = ("fas_jonathansuryas-celeba", "fas_jonathansuryas-oulu", "lccfasd_dtruong46me", "vt_thuytrang",
                 "casiafasd_howdoyoueven", "fas_jonathansuryas-axon", "vinaybr03", "neonipun_cvproject",
                 "nguyengiahy", "ydf1014_conditions") + TEST_SOURCES


def manifest() -> list[dict]:
    """The manifest's rows (path, source, label, subject...), sorted by path."""
    with open(PAD / "MANIFEST.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return sorted(rows, key=lambda r: r["path"])


def _crop_one(path: str) -> tuple[np.ndarray, bool, int]:
    import cv2

    from visage.faces.detect import detect_boxes, get_detector
    from visage.liveness.crops import context_crop
    from visage.liveness.passive import face_region
    from visage.media.images import load_image

    cv2.setNumThreads(1)
    pixels = load_image(PAD / path).pixels
    region = face_region(pixels, [b for b, _ in detect_boxes(pixels, get_detector("hog"))])
    if region is None:
        return np.zeros((len(SCALES), 80, 80, 3), np.uint8), False, -1
    return np.stack([context_crop(pixels, region.box, s) for s in SCALES]), region.whole_image, region.detected


def load_crops(workers: int = 2, progress: bool = True) -> dict[str, np.ndarray]:
    """Crops of every pad image: {path, source, group, label, subject, crops (N, scales, 80, 80, 3),
    whole_image, detected (-1: no face judged)}. Builds the missing chunks first."""
    from tqdm import tqdm

    rows = manifest()
    CACHE.mkdir(parents=True, exist_ok=True)
    chunks = [rows[i:i + CHUNK] for i in range(0, len(rows), CHUNK)]
    missing = [i for i in range(len(chunks)) if not (CACHE / f"chunk{i:03d}.npz").exists()]
    with ProcessPoolExecutor(workers) as pool, tqdm(total=sum(len(chunks[i]) for i in missing),
                                                    desc="pad crops", disable=not progress) as bar:
        for i in missing:
            out = []
            for result in pool.map(_crop_one, [r["path"] for r in chunks[i]], chunksize=16):
                out.append(result)
                bar.update()
            tmp = CACHE / f"chunk{i:03d}.tmp.npz"
            np.savez(tmp, crops=np.stack([o[0] for o in out]), whole=np.array([o[1] for o in out]),
                     detected=np.array([o[2] for o in out]), paths=np.array([r["path"] for r in chunks[i]]))
            os.replace(tmp, CACHE / f"chunk{i:03d}.npz")
    parts = [np.load(CACHE / f"chunk{i:03d}.npz") for i in range(len(chunks))]
    paths = np.concatenate([p["paths"] for p in parts])
    if list(paths) != [r["path"] for r in rows]:
        raise RuntimeError(f"{CACHE}: crop cache does not match the manifest; delete it and rerun")
    return {"path": paths, "source": np.array([r["source"] for r in rows]),
            "group": np.array([group_of(r["source"]) for r in rows]),
            "label": np.array([r["label"] for r in rows]), "subject": np.array([r["subject"] for r in rows]),
            "crops": np.concatenate([p["crops"] for p in parts]),
            "whole_image": np.concatenate([p["whole"] for p in parts]),
            "detected": np.concatenate([p["detected"] for p in parts])}


if __name__ == "__main__":
    data = load_crops()
    print(len(data["path"]), "images;", int(data["whole_image"].sum()), "judged whole;",
          int((data["detected"] < 0).sum()), "without a face")
