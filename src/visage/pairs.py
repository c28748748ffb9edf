"""Labelled verification pairs (``img_a``, ``img_b``, ``same`` TSV) and their distances."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .api import encode_batch
from .encoders import DEFAULT_ENCODER
from .errors import VisageError


@dataclass(frozen=True)
class Pair:
    a: Path
    b: Path
    same: bool


def load_pairs(tsv: str | Path) -> list[Pair]:
    """Read a pairs TSV with columns ``img_a``, ``img_b``, ``same`` (paths relative to the TSV)."""
    tsv = Path(tsv)
    try:
        with open(tsv, newline="") as handle:
            rows = list(csv.DictReader(handle, delimiter="\t"))
    except OSError as exc:
        raise VisageError(f"{tsv}: cannot read ({exc.strerror or exc})") from None
    if not rows or not {"img_a", "img_b", "same"} <= set(rows[0]):
        raise VisageError(f"{tsv}: expected a tab-separated header with img_a, img_b and same")
    return [Pair(tsv.parent / r["img_a"], tsv.parent / r["img_b"], r["same"].strip() in ("1", "true", "True"))
            for r in rows]


def encode_pair_images(pairs: list[Pair], encoder: str = DEFAULT_ENCODER, detector: str = "hog",
                       batch: int = 16) -> dict[Path, np.ndarray | None]:
    """The largest face's encoding for every distinct image in ``pairs`` (None where no face)."""
    paths = sorted({p.a for p in pairs} | {p.b for p in pairs})
    out: dict[Path, np.ndarray | None] = {}
    for start in tqdm(range(0, len(paths), batch), desc="encoding", unit="batch", leave=False):
        chunk = paths[start:start + batch]
        for path, found in zip(chunk, encode_batch(chunk, which="largest", detector=detector, encoder=encoder)):
            out[path] = found[0].encoding if found else None
    return out


def pair_distances(pairs: list[Pair], encodings: dict[Path, np.ndarray | None]) -> tuple[np.ndarray, np.ndarray]:
    """Distances and labels of the pairs whose two images both have a face."""
    kept = [p for p in pairs if encodings.get(p.a) is not None and encodings.get(p.b) is not None]
    distances = np.array([np.linalg.norm(encodings[p.a] - encodings[p.b]) for p in kept], dtype=np.float64)
    return distances, np.array([p.same for p in kept], dtype=bool)
